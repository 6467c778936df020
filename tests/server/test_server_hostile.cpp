// Hostile HTTP (issue 12): oversize heads, multi-range, bodies before authentication, body-less POSTs, bad
// Content-Length / Transfer-Encoding / Content-Encoding, chunked bodies over the limit, a second server on a taken
// port. Raw sockets on 127.0.0.1, every read bounded by a timeout.
#include <arpa/inet.h>
#include <gmock/gmock.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>

#include <chrono>

#include "../test_util.h"
#include "server_fixture.h"

using namespace nuance;
using namespace nuance::server;
using namespace nuance::server::test;
using ::testing::HasSubstr;
using ::testing::Not;

namespace {

using Clock = std::chrono::steady_clock;

double since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

// A raw HTTP connection: send bytes, read what comes back until a whole response (or EOF, or the timeout).
class Raw {
public:
    explicit Raw(int port) {
        fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_port = htons((uint16_t)port);
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        ok_ = ::connect(fd_, (sockaddr*)&a, sizeof a) == 0;
    }
    ~Raw() { ::close(fd_); }
    bool ok() const { return ok_; }
    // Sends all of `s` (false when the server closed first: it may answer before reading everything).
    bool send(const std::string& s) {
        size_t done = 0;
        while (done < s.size()) {
            pollfd p{fd_, POLLOUT, 0};
            if (::poll(&p, 1, 5000) <= 0) return false;
            const ssize_t n = ::send(fd_, s.data() + done, s.size() - done, MSG_NOSIGNAL);
            if (n <= 0) return false;
            done += (size_t)n;
        }
        return true;
    }
    // Everything until one full response (Content-Length known) or EOF, at most `timeout_s`.
    std::string response(double timeout_s = 10) {
        const auto t0 = Clock::now();
        while (since(t0) < timeout_s) {
            if (complete()) break;
            pollfd p{fd_, POLLIN, 0};
            if (::poll(&p, 1, 100) <= 0) continue;
            char buf[65536];
            const ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
            if (n <= 0) {
                eof_ = true;
                break;
            }
            in_.append(buf, (size_t)n);
        }
        std::string r = in_.substr(0, response_end());
        in_.erase(0, r.size());
        return r;
    }
    // True when the server closed the connection within `timeout_s`.
    bool closed(double timeout_s = 5) {
        if (eof_) return true;
        const auto t0 = Clock::now();
        while (since(t0) < timeout_s) {
            pollfd p{fd_, POLLIN, 0};
            if (::poll(&p, 1, 100) <= 0) continue;
            char buf[65536];
            const ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
            if (n <= 0) return true;
        }
        return false;
    }

private:
    size_t response_end() const {
        const size_t h = in_.find("\r\n\r\n");
        if (h == std::string::npos) return in_.size();
        std::string head = in_.substr(0, h);
        for (char& c : head) c = (char)std::tolower((unsigned char)c);
        const size_t cl = head.find("content-length: ");
        if (cl == std::string::npos) return in_.size();
        const size_t len = std::stoul(head.substr(cl + 16));
        return std::min(in_.size(), h + 4 + len);
    }
    bool complete() const { return has_full_body(); }
    bool has_full_body() const {
        const size_t h = in_.find("\r\n\r\n");
        if (h == std::string::npos) return false;
        std::string head = in_.substr(0, h);
        for (char& c : head) c = (char)std::tolower((unsigned char)c);
        const size_t cl = head.find("content-length: ");
        if (cl == std::string::npos) return false;
        return in_.size() >= h + 4 + std::stoul(head.substr(cl + 16));
    }
    int fd_ = -1;
    bool ok_ = false, eof_ = false;
    std::string in_;
};

int status_of(const std::string& resp) {
    if (resp.rfind("HTTP/1.1 ", 0) != 0 || resp.size() < 12) return 0;
    return std::stoi(resp.substr(9, 3));
}

std::string body_of(const std::string& resp) {
    const size_t h = resp.find("\r\n\r\n");
    return h == std::string::npos ? std::string() : resp.substr(h + 4);
}

// The "detail" of a JSON error answer ("" when the body is not one).
std::string detail_of(const std::string& resp) {
    const json j = json::parse(body_of(resp), nullptr, false);
    if (!j.is_object() || !j.contains("detail") || !j.contains("error")) return "(not a JSON error: " + body_of(resp).substr(0, 200) + ")";
    return j["detail"].get<std::string>();
}

std::string get(const std::string& path, const std::string& headers = "") {
    return "GET " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\n" + headers + "\r\n";
}

}  // namespace

TEST(ServerHostile, RequestHeadsAreBounded) {
    TestServer ts;
    {  // 100 headers (Host + 99): fine.
        std::string h;
        for (int i = 0; i < 99; ++i) h += "X-H" + std::to_string(i) + ": v\r\n";
        Raw r(ts.port());
        ASSERT_TRUE(r.send(get("/health", h)));
        EXPECT_EQ(status_of(r.response()), 200);
    }
    {  // 5,000 headers (the issue sent 500,000): 431 after the 101st, and the connection closes.
        std::string h;
        for (int i = 0; i < 5000; ++i) h += "X-H" + std::to_string(i) + ": v\r\n";
        Raw r(ts.port());
        r.send(get("/health", h));
        const std::string resp = r.response();
        EXPECT_EQ(status_of(resp), 431) << resp.substr(0, 300);
        EXPECT_EQ(detail_of(resp), "the request has more than 100 header lines");
        EXPECT_THAT(resp, HasSubstr("Connection: close"));
        EXPECT_TRUE(r.closed());
    }
    {  // Header bytes: 10 lines of 7,000 bytes (each under httplib's 8 KiB line limit) = 70 KB > 64 KiB.
        std::string h;
        for (int i = 0; i < 10; ++i) h += "X-Big" + std::to_string(i) + ": " + std::string(7000, 'a') + "\r\n";
        Raw r(ts.port());
        r.send(get("/health", h));
        const std::string resp = r.response();
        EXPECT_EQ(status_of(resp), 431);
        EXPECT_EQ(detail_of(resp), "the request headers are over 65536 bytes");
    }
    {  // A request line that never ends.
        Raw r(ts.port());
        r.send("GET /" + std::string(100000, 'a'));
        const std::string resp = r.response();
        EXPECT_EQ(status_of(resp), 414);
        EXPECT_EQ(detail_of(resp), "the request line is over 65536 bytes");
    }
    {  // Garbage request line: a JSON 400, the server stays up.
        Raw r(ts.port());
        r.send("HELLO\r\n\r\n");
        const std::string resp = r.response();
        EXPECT_EQ(status_of(resp), 400);
        EXPECT_THAT(detail_of(resp), HasSubstr("malformed request"));
    }
    auto c = ts.client();
    auto h = c->Get("/health");
    ASSERT_TRUE(h);
    EXPECT_EQ(h->status, 200);
}

TEST(ServerHostile, MultiRangeIsIgnored) {
    TestServer ts;
    Raw plain(ts.port());
    plain.send(get("/"));
    const std::string page = body_of(plain.response());
    ASSERT_GT(page.size(), 1000u);
    // The issue's request: 2,700 ranges on the public page (31 MB back). Now: the page, once, 200.
    std::string ranges = "Range: bytes=0-";
    for (int i = 1; i < 2700; ++i) ranges += ",0-";
    Raw r(ts.port());
    r.send(get("/", ranges + "\r\n"));
    const std::string resp = r.response();
    EXPECT_EQ(status_of(resp), 200);
    EXPECT_EQ(body_of(resp).size(), page.size());
    // Two ranges: also the whole page.
    Raw two(ts.port());
    two.send(get("/", "Range: bytes=0-9,20-29\r\n"));
    const std::string resp2 = two.response();
    EXPECT_EQ(status_of(resp2), 200);
    EXPECT_EQ(body_of(resp2), page);
    // One range still works.
    Raw one(ts.port());
    one.send(get("/", "Range: bytes=0-9\r\n"));
    const std::string resp1 = one.response();
    EXPECT_EQ(status_of(resp1), 206);
    EXPECT_EQ(body_of(resp1), page.substr(0, 10));
}

TEST(ServerHostile, AuthenticatesBeforeReadingTheBody) {
    ServerOptions o = test_options();
    o.api_key = "k3y";
    TestServer ts(o);
    const std::string head = "POST /sdapi/v1/txt2img HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                             "Content-Length: 4000000\r\n";
    {  // The head only: the 401 comes at once (the 4 MB body is never sent), then the connection closes.
        Raw r(ts.port());
        const auto t0 = Clock::now();
        r.send(head + "\r\n");
        const std::string resp = r.response(5);
        EXPECT_LT(since(t0), 3.0);
        EXPECT_EQ(status_of(resp), 401) << resp.substr(0, 200);
        EXPECT_THAT(detail_of(resp), HasSubstr("missing or wrong API key"));
        EXPECT_THAT(resp, HasSubstr("Connection: close"));
        EXPECT_TRUE(r.closed());
    }
    {  // Expect: 100-continue: no "100 Continue" (which would invite the body), the 401 right away.
        Raw r(ts.port());
        r.send(head + "Expect: 100-continue\r\n\r\n");
        const std::string resp = r.response(5);
        EXPECT_EQ(status_of(resp), 401) << resp.substr(0, 200);
        EXPECT_THAT(resp, Not(HasSubstr("100 Continue")));
    }
    {  // With the key, Expect: 100-continue gets its 100 and the body is read.
        Raw r(ts.port());
        const std::string body = R"({"prompt": "x", "steps": 0})";
        r.send("POST /sdapi/v1/txt2img HTTP/1.1\r\nHost: 127.0.0.1\r\nX-API-Key: k3y\r\nExpect: 100-continue\r\n"
               "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n");
        std::string first = r.response(1);  // "100 Continue" has no Content-Length: read for 1 s
        EXPECT_THAT(first, HasSubstr("100 Continue"));
        r.send(body);
        const std::string resp = first.find("\r\n\r\n") + 4 < first.size() ? first : r.response(5);
        EXPECT_THAT(resp + r.response(1), HasSubstr("field 'steps' must be in 1..150, got 0"));
    }
}

TEST(ServerHostile, BodylessPostsAnswerAtOnce) {
    TestServer ts;
    for (const char* path : {"/sdapi/v1/interrupt", "/sdapi/v1/skip", "/sdapi/v1/refresh-checkpoints"}) {
        Raw r(ts.port());
        const auto t0 = Clock::now();
        r.send(std::string("POST ") + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");  // curl -X POST: no Content-Length
        const std::string resp = r.response(10);
        EXPECT_LT(since(t0), 3.0) << path;
        EXPECT_EQ(status_of(resp), 200) << path << ": " << resp.substr(0, 300);
    }
    // A body-less POST to a route that needs a body: 400 at once, naming the problem.
    Raw r(ts.port());
    r.send("POST /sdapi/v1/txt2img HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    const std::string resp = r.response(10);
    EXPECT_EQ(status_of(resp), 400);
    EXPECT_EQ(detail_of(resp), "the request body is empty: expected a JSON object");
}

TEST(ServerHostile, BodylessInterruptCancelsTheRunningJob) {
    TestServer ts;
    auto c = ts.client();
    auto r = c->Post("/api/v1/jobs", R"({"prompt": "x", "steps": 150, "width": 64, "height": 64})", "application/json");
    ASSERT_TRUE(r);
    ASSERT_EQ(r->status, 202);
    const std::string id = body_json(r)["id"];
    const auto t0 = Clock::now();
    std::string state;
    while (since(t0) < 60) {
        state = body_json(c->Get("/api/v1/jobs/" + id + "?preview=0"))["status"];
        if (state == "running") break;
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    ASSERT_EQ(state, "running");
    Raw raw(ts.port());
    raw.send("POST /sdapi/v1/interrupt HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    const std::string resp = raw.response(10);
    ASSERT_EQ(status_of(resp), 200) << resp;
    EXPECT_EQ(json::parse(body_of(resp))["interrupted"], 1);
    const auto t1 = Clock::now();
    while (since(t1) < 30 && state != "cancelled" && state != "done") {
        state = body_json(c->Get("/api/v1/jobs/" + id + "?preview=0"))["status"];
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    EXPECT_EQ(state, "cancelled");
}

TEST(ServerHostile, BadBodyFramingIsRefusedAtOnce) {
    TestServer ts;  // 4 MiB body limit
    struct Case {
        std::string headers;
        int status;
        std::string message;
    };
    const std::string post = "POST /sdapi/v1/txt2img HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n";
    const std::vector<Case> cases = {
        {"Content-Length: -5\r\n", 400, "Content-Length '-5' is not a byte count"},
        {"Content-Length: abc\r\n", 400, "Content-Length 'abc' is not a byte count"},
        {"Content-Length: 99999999999999999999999\r\n", 400, "Content-Length '99999999999999999999999' is not a byte count"},
        {"Content-Length: 1000000000000\r\n", 413,
         "the request body is 1000000000000 bytes, over this server's limit of 4194304 bytes (--max-body-mb)"},
        {"Content-Length: 5\r\nContent-Length: 6\r\n", 400, "the request has several different Content-Length headers"},
        {"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n", 400, "the request has both Transfer-Encoding and Content-Length"},
        {"Transfer-Encoding: gzip\r\n", 501, "Transfer-Encoding 'gzip' is not supported (only 'chunked')"},
        {"Content-Length: 5\r\nContent-Encoding: gzip\r\n", 415,
         "Content-Encoding 'gzip' is not supported: send the body uncompressed"},
    };
    for (const Case& k : cases) {
        Raw r(ts.port());
        const auto t0 = Clock::now();
        r.send(post + k.headers + "\r\n");
        const std::string resp = r.response(5);
        EXPECT_LT(since(t0), 3.0) << k.headers;
        EXPECT_EQ(status_of(resp), k.status) << k.headers << resp.substr(0, 300);
        EXPECT_EQ(detail_of(resp), k.message) << k.headers;
    }
    {  // A GET with a body.
        Raw r(ts.port());
        r.send(get("/health", "Content-Length: 3\r\n") + "abc");
        const std::string resp = r.response(5);
        EXPECT_EQ(status_of(resp), 400);
        EXPECT_EQ(detail_of(resp), "a GET request cannot have a body");
    }
    {  // A chunked body over the limit: 413 once the limit is passed (httplib alone reads chunked bodies unbounded).
        Raw r(ts.port());
        r.send(post + "Transfer-Encoding: chunked\r\n\r\n");
        const std::string chunk = "10000\r\n" + std::string(0x10000, ' ') + "\r\n";
        for (int i = 0; i < 80 && r.send(chunk); ++i) {
        }
        const std::string resp = r.response(10);
        EXPECT_EQ(status_of(resp), 413) << resp.substr(0, 300);
        EXPECT_EQ(detail_of(resp), "the request body is over this server's limit of 4194304 bytes (--max-body-mb)");
    }
    {  // A chunked body under the limit is read.
        Raw r(ts.port());
        const std::string body = R"({"prompt": "x", "steps": 0})";
        char len[16];
        std::snprintf(len, sizeof len, "%zx", body.size());
        r.send(post + "Transfer-Encoding: chunked\r\n\r\n" + len + "\r\n" + body + "\r\n0\r\n\r\n");
        const std::string resp = r.response(10);
        EXPECT_EQ(status_of(resp), 400);
        EXPECT_EQ(detail_of(resp), "field 'steps' must be in 1..150, got 0");
    }
    auto c = ts.client();
    auto h = c->Get("/health");
    ASSERT_TRUE(h);
    EXPECT_EQ(h->status, 200);
}

TEST(ServerHostile, SecondServerOnATakenPortFails) {
    TestServer first;
    ServerOptions o = test_options();
    o.port = first.port();
    Server second(o);
    EXPECT_EQ(nuance::test::error_of([&] { second.bind(); }),
              str("cannot listen on 127.0.0.1:", first.port(), ": address in use (is another server running there?)"));
    // The CLI: exit 1, one line naming host:port.
    const nuance::test::CliRun r = nuance::test::run_cli("serve --port " + std::to_string(first.port()) +
                                                         " --models-dir " + models_dir().string());
    EXPECT_EQ(r.code, 1) << r.out;
    EXPECT_THAT(r.out, HasSubstr(str("cannot listen on 127.0.0.1:", first.port(), ": address in use")));
    EXPECT_EQ(std::count(r.out.begin(), r.out.end(), '\n'), 1) << r.out;
}

TEST(ServerHostile, ErrorsDoNotEchoLargeInput) {
    TestServer ts;
    auto c = ts.client();
    // An unterminated 1 MB string: nlohmann's message quotes the last token; the answer stays small.
    auto r = c->Post("/sdapi/v1/txt2img", "{\"prompt\": \"" + std::string(1 << 20, 'a'), "application/json");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 400);
    EXPECT_THAT(error_message(r), HasSubstr("invalid JSON: "));
    EXPECT_LT(r->body.size(), 2000u);
}

namespace {

// Sends `piece` every 0.3 s (slowloris) until the server answers or closes, at most `max_s`; returns the answer.
std::string trickle(Raw& r, const std::string& piece, double max_s) {
    std::string got;
    const auto t0 = Clock::now();
    while (since(t0) < max_s && got.find("\r\n\r\n") == std::string::npos) {
        if (!r.send(piece)) break;
        got += r.response(0.3);
    }
    return got + r.response(got.find("\r\n\r\n") == std::string::npos ? 5 : 1);
}

ServerOptions slow_client_options() {
    ServerOptions o = test_options();
    o.http.head_timeout_ms = 1500;
    o.http.body_timeout_ms = 1500;
    o.http.body_min_bytes_per_s = 1u << 20;  // the 1,000-byte body below gets the 1.5 s minimum
    return o;
}

}  // namespace

TEST(ServerHostile, TricklingBodyGets408WithinTheBodyDeadline) {
    TestServer ts(slow_client_options());
    {  // Content-Length: a byte every 0.3 s, each well inside the 30 s read timeout.
        Raw r(ts.port());
        const auto t0 = Clock::now();
        ASSERT_TRUE(r.send("POST /sdapi/v1/txt2img HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                           "Content-Length: 1000\r\n\r\n"));
        const std::string resp = trickle(r, "{", 10);
        EXPECT_LT(since(t0), 6.0);
        EXPECT_EQ(status_of(resp), 408) << resp.substr(0, 300);
        EXPECT_EQ(detail_of(resp),
                  "the request body did not arrive within 1500 ms (bodies must arrive at 1048576 bytes/s or faster)");
        EXPECT_TRUE(r.closed());
    }
    {  // Chunked: one 1-byte chunk every 0.3 s.
        Raw r(ts.port());
        const auto t0 = Clock::now();
        ASSERT_TRUE(r.send("POST /sdapi/v1/txt2img HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                           "Transfer-Encoding: chunked\r\n\r\n"));
        const std::string resp = trickle(r, "1\r\n \r\n", 10);
        EXPECT_LT(since(t0), 6.0);
        EXPECT_EQ(status_of(resp), 408) << resp.substr(0, 300);
        EXPECT_THAT(detail_of(resp), HasSubstr("the request body did not arrive within 1500 ms"));
        EXPECT_TRUE(r.closed());
    }
    auto c = ts.client();
    auto h = c->Get("/health");
    ASSERT_TRUE(h);
    EXPECT_EQ(h->status, 200);
}

TEST(ServerHostile, TricklingHeadGets408WithinTheHeadDeadline) {
    TestServer ts(slow_client_options());
    Raw r(ts.port());
    const auto t0 = Clock::now();
    ASSERT_TRUE(r.send("GET /health HTTP/1.1\r\n"));
    const std::string resp = trickle(r, "X", 10);
    EXPECT_LT(since(t0), 6.0);
    EXPECT_EQ(status_of(resp), 408) << resp.substr(0, 300);
    EXPECT_EQ(detail_of(resp), "the request head did not arrive within 1 s");
    EXPECT_TRUE(r.closed());
}

TEST(ServerHostile, BodyDeadlineGrowsWithTheLengthAtTheMinimumRate) {
    const HttpLimits lim;  // defaults: 60 s, then 64 KiB/s
    EXPECT_EQ(body_deadline_ms(lim, 0), 60000);
    EXPECT_EQ(body_deadline_ms(lim, 1000), 60000);
    EXPECT_EQ(body_deadline_ms(lim, 64u << 20), 1024000);                       // 64 MiB at 64 KiB/s
    EXPECT_GE(body_deadline_ms(lim, UINT64_MAX), (int64_t(1) << 40) * 1000);  // capped, no overflow
    EXPECT_LT(body_deadline_ms(lim, UINT64_MAX), ((int64_t(1) << 40) + 1) * 1000);
    HttpLimits zero = lim;
    zero.body_min_bytes_per_s = 0;  // treated as 1 byte/s, never a division by zero
    EXPECT_EQ(body_deadline_ms(zero, 120), 120000);
}
