#include "http_conn.h"

#include <arpa/inet.h>
#include <malloc.h>
#include <netdb.h>
#include <poll.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <vector>

#include "core/error.h"

namespace nuance::server {

namespace {

thread_local ConnState* t_conn = nullptr;

using Clock = std::chrono::steady_clock;

int ms_left(Clock::time_point deadline) {
    const auto d = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    return d <= 0 ? 0 : (int)std::min<int64_t>(d, 1 << 30);
}

bool ieq(const std::string& a, const char* b) {
    const size_t n = std::strlen(b);
    if (a.size() != n) return false;
    for (size_t i = 0; i < n; ++i)
        if (std::tolower((unsigned char)a[i]) != std::tolower((unsigned char)b[i])) return false;
    return true;
}

// Shows a client-sent value in a message: at most 40 bytes, control bytes as '?'.
std::string shown(const std::string& v) {
    std::string s = v.substr(0, 40);
    for (char& c : s)
        if ((unsigned char)c < 0x20 || c == 0x7f) c = '?';
    return v.size() > 40 ? s + "..." : s;
}

void get_ip_and_port(const sockaddr_storage& a, socklen_t len, std::string& ip, int& port) {
    char host[NI_MAXHOST] = {0};
    if (getnameinfo((const sockaddr*)&a, len, host, sizeof host, nullptr, 0, NI_NUMERICHOST) == 0) ip = host;
    if (a.ss_family == AF_INET) port = ntohs(((const sockaddr_in*)&a)->sin_port);
    if (a.ss_family == AF_INET6) port = ntohs(((const sockaddr_in6*)&a)->sin6_port);
}

// A socket stream that reads each request head whole into its buffer before handing out a byte of it, and counts
// body bytes. Reads and waits are cut into slices so a stopping server is noticed within ~100 ms.
class ConnStream : public httplib::Stream {
public:
    ConnStream(socket_t sock, const HttpLimits& lim, const std::atomic<socket_t>& listener, ConnState& st)
        : sock_(sock), lim_(lim), listener_(listener), st_(st) {
        buf_.resize(lim.max_head_bytes + 4096);
    }

    // Starts a request: the next read loads its head. false: the peer closed, the server stops, or a limit was hit
    // (then st.reject_status says which).
    bool begin_request() {
        if (in_head_ && head_ready_) off_ = head_end_;  // httplib stopped inside the last head (a bad header line)
        head_ready_ = false;
        in_head_ = true;
        st_.body_bytes = 0;
        return load_head();
    }

    bool has_buffered() const { return off_ < end_; }

    // Waits until bytes are buffered or the socket is readable: false on timeout, a closed peer is "readable".
    bool wait_readable(int timeout_ms) const {
        if (has_buffered()) return true;
        const auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
        for (;;) {
            if (listener_ == INVALID_SOCKET) return false;
            pollfd p{sock_, POLLIN, 0};
            const int r = ::poll(&p, 1, std::min(100, ms_left(deadline)));
            if (r > 0) return true;
            if (r < 0 && errno != EINTR) return false;
            if (ms_left(deadline) == 0) return false;
        }
    }

    bool is_readable() const override {
        if (in_head_) return wait_readable(lim_.read_timeout_ms);
        if (wait_readable(std::min(lim_.read_timeout_ms, body_ms_left()))) return true;
        if (body_late()) body_too_slow();
        return false;
    }

    // Time left for the body (HttpLimits::body_timeout_ms): the deadline counts from the end of the head and
    // grows with the announced length (or, chunked, with the bytes received).
    int body_ms_left() const {
        const uint64_t length = std::max<uint64_t>(st_.body_length, st_.body_bytes);
        return ms_left(head_done_ + std::chrono::milliseconds(body_deadline_ms(lim_, length)));
    }

    // wait_readable(body_ms_left()) gave up: its own deadline is the body's, up to the millisecond it rounds off.
    bool body_late() const { return body_ms_left() <= 2; }

    // The body missed its deadline: 408 (the JSON answer comes from the server's error handler), then close.
    ssize_t body_too_slow() const {  // st_ is the connection's state, not this stream's
        st_.reject(408, str("the request body did not arrive within ",
                            body_deadline_ms(lim_, std::max<uint64_t>(st_.body_length, st_.body_bytes)),
                            " ms (bodies must arrive at ", lim_.body_min_bytes_per_s, " bytes/s or faster)"));
        return -1;
    }

    bool is_writable() const override {
        pollfd p{sock_, POLLOUT, 0};
        const auto deadline = Clock::now() + std::chrono::milliseconds(lim_.write_timeout_ms);
        for (;;) {
            const int r = ::poll(&p, 1, std::min(100, ms_left(deadline)));
            if (r > 0) return (p.revents & (POLLERR | POLLHUP | POLLNVAL)) == 0;
            if ((r < 0 && errno != EINTR) || ms_left(deadline) == 0 || listener_ == INVALID_SOCKET) return false;
        }
    }

    ssize_t read(char* ptr, size_t size) override {
        if (size == 0) return 0;
        if (in_head_) {
            if (!head_ready_ && !load_head()) return -1;
            // Hand out the head only (the line reader asks for one byte at a time).
            const size_t n = std::min(size, head_end_ - off_);
            std::memcpy(ptr, buf_.data() + off_, n);
            off_ += n;
            if (off_ == head_end_) in_head_ = false;
            return (ssize_t)n;
        }
        // Body (or whatever follows): counted against the limit.
        const size_t cap = lim_.max_body_bytes + (64u << 10);
        if (st_.body_bytes >= cap) {
            st_.reject(413, str("the request body is over this server's limit of ", lim_.max_body_bytes,
                                " bytes (--max-body-mb)"));
            return -1;
        }
        size = std::min(size, cap - st_.body_bytes);
        ssize_t n;
        if (off_ < end_) {
            n = (ssize_t)std::min(size, end_ - off_);
            std::memcpy(ptr, buf_.data() + off_, (size_t)n);
            off_ += (size_t)n;
        } else {
            const int left = body_ms_left();
            if (left == 0) return body_too_slow();
            if (!wait_readable(std::min(lim_.read_timeout_ms, left))) return body_late() ? body_too_slow() : -1;
            n = ::recv(sock_, ptr, size, 0);
            if (n < 0 && errno == EINTR) n = ::recv(sock_, ptr, size, 0);
            if (n <= 0) return n;
        }
        st_.body_bytes += (size_t)n;
        return n;
    }

    ssize_t write(const char* ptr, size_t size) override {
        if (!is_writable()) return -1;
        ssize_t n;
        do n = ::send(sock_, ptr, size, MSG_NOSIGNAL);
        while (n < 0 && errno == EINTR);
        return n;
    }

    void get_remote_ip_and_port(std::string& ip, int& port) const override {
        sockaddr_storage a{};
        socklen_t len = sizeof a;
        if (getpeername(sock_, (sockaddr*)&a, &len) == 0) get_ip_and_port(a, len, ip, port);
    }
    void get_local_ip_and_port(std::string& ip, int& port) const override {
        sockaddr_storage a{};
        socklen_t len = sizeof a;
        if (getsockname(sock_, (sockaddr*)&a, &len) == 0) get_ip_and_port(a, len, ip, port);
    }
    socket_t socket() const override { return sock_; }

private:
    // Reads until the buffer holds a whole head (request line, header lines, the empty line). Lines end with
    // "\n"; the head ends at the first line after the request line that is exactly "\r\n" (httplib's rule).
    bool load_head() {
        if (head_ready_) return true;
        if (off_ > 0) {  // keep-alive / pipelining: move what is left of the previous read to the front
            std::memmove(buf_.data(), buf_.data() + off_, end_ - off_);
            end_ -= off_;
            off_ = 0;
        }
        const auto deadline = Clock::now() + std::chrono::milliseconds(lim_.head_timeout_ms);
        size_t scan = 0, line_start = 0, lines = 0;
        for (;;) {
            for (; scan < end_; ++scan) {
                if (buf_[scan] != '\n') continue;
                const size_t len = scan + 1 - line_start;
                if (lines > 0 && len == 2 && buf_[line_start] == '\r') {
                    head_end_ = sanitize(scan + 1);
                    head_ready_ = true;
                    head_done_ = Clock::now();
                    return true;
                }
                ++lines;
                line_start = scan + 1;
                if (lines > lim_.max_header_lines + 1) {
                    st_.reject(431, str("the request has more than ", lim_.max_header_lines, " header lines"));
                    return false;
                }
            }
            if (end_ >= lim_.max_head_bytes) {
                if (lines == 0)
                    st_.reject(414, str("the request line is over ", lim_.max_head_bytes, " bytes"));
                else
                    st_.reject(431, str("the request headers are over ", lim_.max_head_bytes, " bytes"));
                return false;
            }
            if (listener_ == INVALID_SOCKET) return false;
            pollfd p{sock_, POLLIN, 0};
            const int left = ms_left(deadline);
            if (left == 0) {
                if (end_ > 0) st_.reject(408, str("the request head did not arrive within ", lim_.head_timeout_ms / 1000, " s"));
                return false;
            }
            const int r = ::poll(&p, 1, std::min(100, left));
            if (r < 0 && errno != EINTR) return false;
            if (r <= 0) continue;
            const ssize_t n = ::recv(sock_, buf_.data() + end_, lim_.max_head_bytes - end_, 0);
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) {
                if (end_ > 0 && n == 0) st_.close = true;  // a partial head, then EOF: nothing to answer
                return false;
            }
            end_ += (size_t)n;
        }
    }

    // Drops Range headers that ask for more than one range (or are long): httplib would answer each range with a
    // copy of the content (31 MB for a 12 KB page) and parses them with a recursive regex. Returns the new head end.
    size_t sanitize(size_t head_end) {
        size_t line = 0;
        while (line < head_end) {
            const char* nl = (const char*)std::memchr(buf_.data() + line, '\n', head_end - line);
            const size_t next = nl ? (size_t)(nl - buf_.data()) + 1 : head_end;
            const size_t len = next - line;
            bool drop = false;
            if (line > 0 && len > 6 && strncasecmp(buf_.data() + line, "range:", 6) == 0) {
                drop = len > 200 || std::memchr(buf_.data() + line, ',', len) != nullptr;
            }
            if (drop) {
                std::memmove(buf_.data() + line, buf_.data() + next, end_ - next);
                end_ -= len;
                head_end -= len;
                st_.dropped_range = true;
            } else {
                line = next;
            }
        }
        return head_end;
    }

    socket_t sock_;
    const HttpLimits& lim_;
    const std::atomic<socket_t>& listener_;
    ConnState& st_;
    std::vector<char> buf_;
    size_t off_ = 0, end_ = 0;  // unread bytes: buf_[off_, end_)
    size_t head_end_ = 0;
    bool head_ready_ = false, in_head_ = true;
    Clock::time_point head_done_ = Clock::now();  // when the current request's head was complete
};

bool write_all(socket_t s, const std::string& data) {
    size_t done = 0;
    while (done < data.size()) {
        pollfd p{s, POLLOUT, 0};
        if (::poll(&p, 1, 5000) <= 0) return false;
        const ssize_t n = ::send(s, data.data() + done, data.size() - done, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return false;
        done += (size_t)n;
    }
    return true;
}

}  // namespace

ConnState* current_connection() { return t_conn; }

int64_t body_deadline_ms(const HttpLimits& lim, uint64_t length) {
    const uint64_t rate = std::clamp<uint64_t>(lim.body_min_bytes_per_s, 1, uint64_t(1) << 40);
    const uint64_t by_rate = std::min<uint64_t>(length / rate, uint64_t(1) << 40) * 1000 + (length % rate) * 1000 / rate;
    return std::max<int64_t>(std::max(lim.body_timeout_ms, 0), (int64_t)by_rate);
}

const char* http_reason(int status) {
    switch (status) {
        case 400: return "Bad Request";
        case 401: return "Unauthorized";
        case 408: return "Request Timeout";
        case 413: return "Payload Too Large";
        case 414: return "URI Too Long";
        case 415: return "Unsupported Media Type";
        case 431: return "Request Header Fields Too Large";
        case 501: return "Not Implemented";
        default: return "Error";
    }
}

void HttpServer::raise_backlog(int n) {
    const socket_t s = svr_sock_;
    if (s != INVALID_SOCKET) ::listen(s, n);
}

// Framing: the body's length must be known from the head (RFC 9112 §6.3), within the limit, and not compressed
// (inflating has no limit in httplib). A body-less POST (curl -X POST) has length 0, not "until the peer closes".
void HttpServer::check_framing(httplib::Request& req, ConnState& st) const {
    const bool body_method = req.method == "POST" || req.method == "PUT" || req.method == "PATCH" ||
                             req.method == "DELETE" || req.method == "PRI";
    const size_t n_cl = req.get_header_value_count("Content-Length");
    const bool has_te = req.has_header("Transfer-Encoding");
    std::string cl = req.get_header_value("Content-Length");
    for (size_t i = 1; i < n_cl; ++i)
        if (req.get_header_value("Content-Length", i) != cl)
            return st.reject(400, "the request has several different Content-Length headers");
    if (has_te && n_cl > 0) return st.reject(400, "the request has both Transfer-Encoding and Content-Length");
    if (has_te) {
        const std::string te = req.get_header_value("Transfer-Encoding");
        if (req.get_header_value_count("Transfer-Encoding") != 1 || !ieq(te, "chunked"))
            return st.reject(501, str("Transfer-Encoding '", shown(te), "' is not supported (only 'chunked')"));
    }
    uint64_t len = 0;
    if (n_cl > 0) {
        bool ok = !cl.empty() && cl.size() <= 20;
        for (char ch : cl) {
            if (!ok) break;
            ok = ch >= '0' && ch <= '9' && !__builtin_mul_overflow(len, (uint64_t)10, &len) &&
                 !__builtin_add_overflow(len, (uint64_t)(ch - '0'), &len);
        }
        if (!ok) return st.reject(400, str("Content-Length '", shown(cl), "' is not a byte count"));
        st.body_length = len;
        if (len > limits.max_body_bytes) {
            st.drain_bytes = (size_t)std::min<uint64_t>(len, 2 * (uint64_t)limits.max_body_bytes);
            return st.reject(413, str("the request body is ", len, " bytes, over this server's limit of ",
                                      limits.max_body_bytes, " bytes (--max-body-mb)"));
        }
    }
    if (!body_method && (len > 0 || has_te))
        return st.reject(400, str("a ", shown(req.method), " request cannot have a body"));
    if (req.has_header("Content-Encoding")) {
        const std::string ce = req.get_header_value("Content-Encoding");
        if (!ieq(ce, "identity"))
            return st.reject(415, str("Content-Encoding '", shown(ce), "' is not supported: send the body uncompressed"));
    }
    if (body_method && n_cl == 0 && !has_te) req.set_header("Content-Length", "0");
}

bool HttpServer::process_and_close_socket(socket_t sock) {
    ConnState st;
    t_conn = &st;
    ConnStream strm(sock, limits, svr_sock_, st);
    bool ret = false;
    for (size_t left = std::max<size_t>(limits.keep_alive_max, 1); left > 0; --left) {
        if (svr_sock_ == INVALID_SOCKET || !strm.wait_readable(limits.keep_alive_timeout_ms)) break;
        st = ConnState{};
        if (!strm.begin_request()) {
            if (st.reject_status != 0) {  // over a head limit: answer here (httplib never saw the request)
                const std::string body = error_body ? error_body(st.reject_status, st.reject_message) : st.reject_message;
                write_all(sock, str("HTTP/1.1 ", st.reject_status, " ", http_reason(st.reject_status),
                                    "\r\nContent-Type: application/json\r\nContent-Length: ", body.size(),
                                    "\r\nConnection: close\r\n\r\n", body));
            }
            break;
        }
        bool closed = false;
        ret = process_request(strm, left == 1, closed, [this, &st](httplib::Request& req) {
            if (st.dropped_range) req.ranges.clear();
            check_framing(req, st);
            if (st.reject_status == 0 && check_request) check_request(req, st);
            if (st.reject_status != 0) {
                // Answer without reading the body: no "100 Continue", nothing left to read, then close.
                req.headers.erase("Expect");
                req.headers.erase("Transfer-Encoding");
                req.headers.erase("Content-Length");
                req.set_header("Content-Length", "0");
                req.headers.erase("Connection");
                req.set_header("Connection", "close");
            }
        });
        if (st.body_bytes >= limits.trim_after_body_bytes) malloc_trim(0);
        if (!ret || closed || st.close) break;
    }
    if (st.close && st.reject_status != 0) {
        // Lingering close: stop sending, read (and drop) a bounded amount of the refused body so the client's
        // kernel does not reset the connection before the client read the answer.
        ::shutdown(sock, SHUT_WR);
        std::vector<char> sink(16384);
        size_t drained = 0;
        const auto deadline = Clock::now() + std::chrono::milliseconds(limits.drain_timeout_ms);
        const size_t limit = std::max(st.drain_bytes, limits.drain_bytes);
        while (drained < limit && ms_left(deadline) > 0) {
            pollfd p{sock, POLLIN, 0};
            if (::poll(&p, 1, std::min(100, ms_left(deadline))) <= 0) continue;
            const ssize_t n = ::recv(sock, sink.data(), sink.size(), 0);
            if (n <= 0) break;
            drained += (size_t)n;
        }
    }
    t_conn = nullptr;
    ::shutdown(sock, SHUT_RDWR);
    ::close(sock);
    return ret;
}

}  // namespace nuance::server
