// A bounded load test on loopback: 16 clients, 640 mixed requests (cheap GETs, bad requests, job submissions and
// polls, tiny synchronous generations, cancels). Asserts that every request gets a well-formed answer with an
// expected status, that the server survives, and that its memory is stable; prints the figures.
#include <gmock/gmock.h>
#include <malloc.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <fstream>
#include <map>
#include <mutex>
#include <random>
#include <set>

#include "server_fixture.h"

using namespace nuance;
using namespace nuance::server;
using namespace nuance::server::test;
using Clock = std::chrono::steady_clock;

namespace {

const char* kJson = "application/json";

// Resident set size of this process, bytes (/proc/self/statm: pages).
size_t rss_bytes() {
    std::ifstream f("/proc/self/statm");
    size_t pages_total = 0, pages_resident = 0;
    f >> pages_total >> pages_resident;
    return pages_resident * (size_t)sysconf(_SC_PAGESIZE);
}

struct Tally {
    std::mutex mu;
    std::map<std::string, std::map<int, int>> status;  // kind -> HTTP status -> count
    std::vector<double> get_ms, all_ms;
    std::vector<std::string> problems;
    std::vector<std::string> job_ids;
    int requests = 0, transport_errors = 0;

    void add(const std::string& kind, int st, double ms, bool get) {
        std::lock_guard<std::mutex> lock(mu);
        ++requests;
        ++status[kind][st];
        all_ms.push_back(ms);
        if (get) get_ms.push_back(ms);
    }
    void problem(const std::string& p) {
        std::lock_guard<std::mutex> lock(mu);
        if (problems.size() < 20) problems.push_back(p);
    }
};

double percentile(std::vector<double> v, double q) {
    if (v.empty()) return 0;
    std::sort(v.begin(), v.end());
    return v[std::min(v.size() - 1, (size_t)(q * (double)(v.size() - 1) + 0.5))];
}

// One request of kind `k` (chosen by the request index), checked for an expected status and a JSON body.
void one_request(httplib::Client& c, int i, Tally& t, std::mt19937& rng) {
    const int k = i % 20;
    std::string kind;
    std::set<int> ok;
    bool get = false, expect_json = true;
    const auto t0 = Clock::now();
    httplib::Result r = [&]() -> httplib::Result {
        switch (k) {
            case 0: kind = "GET /sdapi/v1/progress"; ok = {200}; get = true; return c.Get("/sdapi/v1/progress");
            case 1: kind = "GET /sdapi/v1/sd-models"; ok = {200}; get = true; return c.Get("/sdapi/v1/sd-models");
            case 2: kind = "GET /sdapi/v1/samplers"; ok = {200}; get = true; return c.Get("/sdapi/v1/samplers");
            case 3: kind = "GET /api/v1/info"; ok = {200}; get = true; return c.Get("/api/v1/info");
            case 4: kind = "GET /v1/models"; ok = {200}; get = true; return c.Get("/v1/models");
            case 5: kind = "GET /sdapi/v1/options"; ok = {200}; get = true; return c.Get("/sdapi/v1/options");
            case 6: kind = "GET /"; ok = {200}; get = true; expect_json = false; return c.Get("/");
            case 7: kind = "GET /api/v1/jobs"; ok = {200}; get = true; return c.Get("/api/v1/jobs");
            case 8: kind = "GET /health"; ok = {200}; get = true; return c.Get("/health");
            case 9: kind = "GET unknown route"; ok = {404}; get = true; return c.Get("/sdapi/v1/nothing-here");
            case 10: kind = "POST bad JSON"; ok = {400}; return c.Post("/sdapi/v1/txt2img", "{\"prompt\": [", kJson);
            case 11:
                kind = "POST traversal model";
                ok = {400};
                return c.Post("/api/v1/jobs", R"({"prompt":"x","model":"../../etc/passwd"})", kJson);
            case 12:
                kind = "POST wrong type";
                ok = {400};
                return c.Post("/v1/images/generations", R"({"prompt":"x","n":"many"})", kJson);
            case 13:
            case 14: {
                kind = "POST /api/v1/jobs";
                ok = {202, 429};
                json j = {{"prompt", "load test"}, {"steps", 1 + (int)(rng() % 2)}, {"width", 64}, {"height", 64},
                          {"seed", (int)(rng() % 1000)}};
                auto res = c.Post("/api/v1/jobs", j.dump(), kJson);
                if (res && res->status == 202) {
                    std::lock_guard<std::mutex> lock(t.mu);
                    t.job_ids.push_back(body_json(res)["id"]);
                }
                return res;
            }
            case 15:
            case 16: {
                kind = "GET /api/v1/jobs/{id}";
                ok = {200, 404};
                get = true;
                std::string id = "0123456789abcdef0123";
                {
                    std::lock_guard<std::mutex> lock(t.mu);
                    if (!t.job_ids.empty()) id = t.job_ids[rng() % t.job_ids.size()];
                }
                return c.Get(("/api/v1/jobs/" + id + "?images=0").c_str());
            }
            case 17: {
                kind = "DELETE /api/v1/jobs/{id}";
                ok = {200, 404, 409};
                std::string id = "0123456789abcdef0123";
                {
                    std::lock_guard<std::mutex> lock(t.mu);
                    if (!t.job_ids.empty() && rng() % 4 == 0) id = t.job_ids[rng() % t.job_ids.size()];
                }
                return c.Delete(("/api/v1/jobs/" + id).c_str());
            }
            case 18: {
                kind = "POST /sdapi/v1/txt2img";
                ok = {200, 429};
                json j = {{"prompt", "load"}, {"steps", 1}, {"width", 64}, {"height", 64}, {"seed", i}};
                return c.Post("/sdapi/v1/txt2img", j.dump(), kJson);
            }
            default: kind = "GET /sdapi/v1/schedulers"; ok = {200}; get = true; return c.Get("/sdapi/v1/schedulers");
        }
    }();
    const double ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
    if (!r) {
        std::lock_guard<std::mutex> lock(t.mu);
        ++t.transport_errors;
        ++t.requests;
        if (t.problems.size() < 20) t.problems.push_back(kind + ": " + httplib::to_string(r.error()));
        return;
    }
    t.add(kind, r->status, ms, get);
    if (!ok.count(r->status)) t.problem(str(kind, ": status ", r->status, " ", r->body.substr(0, 200)));
    if (expect_json) {
        const json j = json::parse(r->body, nullptr, false);
        if (j.is_discarded()) t.problem(kind + ": body is not JSON: " + r->body.substr(0, 100));
        else if (r->status >= 400 && !(j.contains("error") && j["error"].contains("message") && j.contains("detail")))
            t.problem(kind + ": error body without error.message/detail: " + r->body.substr(0, 200));
        else if (r->get_header_value("Content-Type") != "application/json")
            t.problem(kind + ": content type " + r->get_header_value("Content-Type"));
    }
}

void run_phase(TestServer& ts, int clients, int per_client, Tally& t, int seed) {
    std::vector<std::thread> th;
    for (int ci = 0; ci < clients; ++ci) {
        th.emplace_back([&, ci] {
            auto c = ts.client(60);
            c->set_keep_alive(ci % 2 == 0);  // half the clients reuse connections, half open one per request
            std::mt19937 rng(seed * 1000 + ci);
            for (int n = 0; n < per_client; ++n) one_request(*c, ci * 7 + n * 3, t, rng);
        });
    }
    for (auto& x : th) x.join();
}

void drain(TestServer& ts) {
    const auto t0 = Clock::now();
    while (std::chrono::duration<double>(Clock::now() - t0).count() < 120) {
        const auto s = ts.server().queue().stats();
        if (s.queued == 0 && s.running == 0) return;
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    ADD_FAILURE() << "the queue did not drain";
}

}  // namespace

TEST(ServerLoad, SixteenClientsMixedRequests) {
    ServerOptions o = test_options();
    o.queue.max_queued = 16;
    o.queue.history = 64;
    TestServer ts(o);
    constexpr int kClients = 16, kPerClient = 40;

    // Warm-up: load the model, fill caches, let the allocator settle.
    Tally warm;
    run_phase(ts, kClients, 10, warm, 1);
    drain(ts);
    malloc_trim(0);
    const size_t rss_before = rss_bytes();

    Tally t;
    const auto t0 = Clock::now();
    run_phase(ts, kClients, kPerClient, t, 2);
    const double load_s = std::chrono::duration<double>(Clock::now() - t0).count();
    drain(ts);
    // Second round, to see whether memory keeps growing with traffic.
    malloc_trim(0);
    const size_t rss_mid = rss_bytes();
    Tally t2;
    run_phase(ts, kClients, kPerClient, t2, 3);
    drain(ts);
    malloc_trim(0);
    const size_t rss_after = rss_bytes();

    const auto stats = ts.server().queue().stats();
    int gens = 0, rejected = 0;
    for (const auto& [kind, m] : t.status) {
        if (kind == "POST /api/v1/jobs" || kind == "POST /sdapi/v1/txt2img") {
            gens += m.count(200) ? m.at(200) : 0;
            gens += m.count(202) ? m.at(202) : 0;
            rejected += m.count(429) ? m.at(429) : 0;
        }
    }
    std::printf("[load] %d clients, %d requests in %.2f s (%.0f req/s), %d transport errors\n", kClients, t.requests,
                load_s, t.requests / load_s, t.transport_errors);
    std::printf("[load] GET latency ms: p50 %.2f, p95 %.2f, p99 %.2f, max %.2f (%zu GETs)\n", percentile(t.get_ms, 0.5),
                percentile(t.get_ms, 0.95), percentile(t.get_ms, 0.99), percentile(t.get_ms, 1.0), t.get_ms.size());
    std::printf("[load] generations accepted %d, rejected with 429: %d; queue totals done %llu, failed %llu, "
                "cancelled %llu\n",
                gens, rejected, (unsigned long long)stats.done, (unsigned long long)stats.failed,
                (unsigned long long)stats.cancelled);
    for (const auto& [kind, m] : t.status) {
        std::string s;
        for (const auto& [code, n] : m) s += str(" ", code, "x", n);
        std::printf("[load]   %-28s%s\n", kind.c_str(), s.c_str());
    }
    std::printf("[load] RSS: %.1f MiB after warm-up, %.1f MiB after %d requests, %.1f MiB after %d more\n",
                rss_before / 1048576.0, rss_mid / 1048576.0, t.requests, rss_after / 1048576.0, t2.requests);

    EXPECT_GE(t.requests, 500);
    EXPECT_EQ(t.transport_errors, 0);
    EXPECT_EQ(t2.transport_errors, 0);
    for (const auto& p : t.problems) ADD_FAILURE() << p;
    for (const auto& p : t2.problems) ADD_FAILURE() << p;
    EXPECT_GT(gens, 0);
    EXPECT_EQ(stats.failed, 0u);
    // Stable memory: the second round of the same traffic does not grow the process by more than 32 MiB
    // (finished jobs are capped by `history`; their images are 64x64).
    EXPECT_LT((double)rss_after - (double)rss_mid, 32.0 * 1048576) << "RSS grew from " << rss_mid << " to " << rss_after;
    EXPECT_LT((double)rss_after - (double)rss_before, 64.0 * 1048576);
    // Still serving.
    auto c = ts.client();
    auto r = c->Post("/sdapi/v1/txt2img", json({{"prompt", "after"}, {"steps", 1}, {"width", 64}, {"height", 64}}).dump(), kJson);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 200);
}
