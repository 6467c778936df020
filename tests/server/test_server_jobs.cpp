// HTTP server: the native job API and its event stream, cancellation (native and A1111), the bounded queue,
// concurrent clients, model switching, and shutting down with work in flight.
#include <gmock/gmock.h>

#include <atomic>
#include <chrono>

#include "server_fixture.h"

using namespace nuance;
using namespace nuance::server;
using namespace nuance::server::test;
using ::testing::HasSubstr;
using Clock = std::chrono::steady_clock;

namespace {

const char* kJson = "application/json";

json tiny_job(int steps = 2, int64_t seed = 21) {
    return {{"prompt", "a red apple"}, {"steps", steps}, {"width", 64}, {"height", 64}, {"seed", seed}};
}

std::string submit(httplib::Client& c, const json& body) {
    auto r = c.Post("/api/v1/jobs", body.dump(), kJson);
    EXPECT_TRUE(r);
    if (!r) return "";
    EXPECT_EQ(r->status, 202) << r->body;
    return body_json(r).value("id", std::string());
}

json job_status(httplib::Client& c, const std::string& id, const std::string& query = "?images=0") {
    auto r = c.Get(("/api/v1/jobs/" + id + query).c_str());
    if (!r || r->status != 200) return json();
    return body_json(r);
}

// Polls until pred(status) or the timeout; returns the last status.
template <class Pred>
json wait_for(httplib::Client& c, const std::string& id, Pred pred, double timeout_s = 60) {
    const auto t0 = Clock::now();
    json st;
    while (std::chrono::duration<double>(Clock::now() - t0).count() < timeout_s) {
        st = job_status(c, id);
        if (!st.is_null() && pred(st)) return st;
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    ADD_FAILURE() << "timed out waiting on job " << id << ": " << st.dump();
    return st;
}

bool finished(const json& st) {
    const std::string s = st.value("status", "");
    return s == "done" || s == "failed" || s == "cancelled";
}

}  // namespace

TEST(ServerJobs, SubmitPollFetchAndErrors) {
    TestServer ts;
    auto c = ts.client();
    json req = tiny_job(3, 21);
    req["batch_count"] = 2;
    req["sampler"] = "dpmpp_2m";
    req["model"] = "sub/other";
    req["negative_prompt"] = "blurry";
    auto r = c->Post("/api/v1/jobs", req.dump(), kJson);
    ASSERT_TRUE(r);
    ASSERT_EQ(r->status, 202) << r->body;
    const json acc = body_json(r);
    const std::string id = acc["id"];
    EXPECT_THAT(id, ::testing::MatchesRegex("[0-9a-f]{20}"));
    EXPECT_EQ(r->get_header_value("Location"), "/api/v1/jobs/" + id);
    EXPECT_EQ(acc["events_url"], "/api/v1/jobs/" + id + "/events");
    EXPECT_EQ(acc["model"], "sub/other.safetensors");
    EXPECT_EQ(acc["seed"], 21);

    wait_for(*c, id, finished);
    const json st = job_status(*c, id, "");
    EXPECT_EQ(st["status"], "done") << st.dump().substr(0, 500);
    EXPECT_EQ(st["step"], 3);
    EXPECT_EQ(st["total"], 3);
    EXPECT_DOUBLE_EQ(st["progress"].get<double>(), 1.0);
    EXPECT_TRUE(st["error"].is_null());
    EXPECT_TRUE(st["queue_position"].is_null());
    ASSERT_EQ(st["images"].size(), 2u);
    for (int i = 0; i < 2; ++i) {
        PngText text;
        const Image img = decode_b64_png(st["images"][i]["b64_json"], &text);
        EXPECT_EQ(img.width, 64);
        EXPECT_EQ(st["images"][i]["seed"], 21 + i);
        EXPECT_EQ(param(text, "parameters"), st["images"][i]["infotext"].get<std::string>());
        EXPECT_THAT(param(text, "parameters"), HasSubstr("Sampler: DPM++ 2M"));
    }
    ASSERT_TRUE(st["preview"].is_string());
    const Image preview = decode_b64_png(st["preview"]);
    EXPECT_EQ(preview.width, 64);  // 8x8 latents, nearest-upscaled
    const json light = job_status(*c, id, "?images=0&preview=0");
    EXPECT_FALSE(light.contains("images"));
    EXPECT_FALSE(light.contains("preview"));
    EXPECT_EQ(light["images_done"], 2);

    r = c->Get("/api/v1/jobs");
    ASSERT_TRUE(r);
    bool listed = false;
    const json jobs = body_json(r)["jobs"];
    for (const auto& j : jobs) listed = listed || j["id"] == id;
    EXPECT_TRUE(listed);

    r = c->Delete(("/api/v1/jobs/" + id).c_str());
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 409);
    EXPECT_THAT(error_message(r), HasSubstr("already done"));
    for (const char* path : {"/api/v1/jobs/ffffffff", "/api/v1/jobs/not-hex", "/api/v1/jobs/ffff/events"}) {
        r = c->Get(path);
        ASSERT_TRUE(r);
        EXPECT_EQ(r->status, 404) << path;
        error_message(r);
    }
    r = c->Delete("/api/v1/jobs/ffffffff");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 404);

    struct Bad {
        json patch;
        int status;
        std::string message;
    };
    for (const Bad& b : std::vector<Bad>{
             {{{"stepz", 3}}, 400, "unknown field 'stepz'"},
             {{{"steps", "3"}}, 400, "field 'steps' must be an integer"},
             {{{"rng", "quantum"}}, 400, "quantum"},
             {{{"sampler", "Euler b"}}, 400, "Euler b"},
             {{{"init_image", "Zm9v"}}, 400, "not a PNG or JPEG"},
             {{{"batch_count", 17}}, 400, "batch_count"},
             {{{"model", "nope"}}, 404, "not found"},
             {{{"model", "sub/../../etc"}}, 400, "not a model name"},
             {{{"width", 4096}, {"height", 4096}}, 400, "2048"},
         }) {
        json q = tiny_job();
        q.merge_patch(b.patch);
        r = c->Post("/api/v1/jobs", q.dump(), kJson);
        ASSERT_TRUE(r);
        EXPECT_EQ(r->status, b.status) << b.patch.dump();
        EXPECT_THAT(error_message(r), HasSubstr(b.message)) << b.patch.dump();
    }
    // A model that fails to load fails its job (500 in the status), and the server carries on.
    json q = tiny_job();
    q["model"] = "broken.safetensors";
    const std::string bad = submit(*c, q);
    const json failed = wait_for(*c, bad, finished);
    EXPECT_EQ(failed["status"], "failed");
    EXPECT_EQ(failed["error"]["status"], 500);
    EXPECT_THAT(failed["error"]["message"].get<std::string>(), HasSubstr("cannot load model 'broken.safetensors'"));
    EXPECT_EQ(wait_for(*c, submit(*c, tiny_job()), finished)["status"], "done");
}

TEST(ServerJobs, FinishedJobsAreForgottenBeyondTheHistoryLimits) {
    for (const bool by_bytes : {false, true}) {
        ServerOptions o = test_options();
        o.queue.history = by_bytes ? 100 : 2;
        o.queue.history_bytes = by_bytes ? 1 : (512u << 20);  // 1 byte: only the newest job stays
        TestServer ts(o);
        auto c = ts.client();
        std::vector<std::string> ids;
        for (int i = 0; i < 3; ++i) {
            ids.push_back(submit(*c, tiny_job(1, i)));
            wait_for(*c, ids.back(), finished);
        }
        EXPECT_TRUE(job_status(*c, ids[0]).is_null()) << "oldest job forgotten (by_bytes " << by_bytes << ")";
        EXPECT_EQ(job_status(*c, ids[1]).is_null(), by_bytes);
        EXPECT_EQ(job_status(*c, ids[2])["status"], "done");
        auto r = c->Get(("/api/v1/jobs/" + ids[0]).c_str());
        ASSERT_TRUE(r);
        EXPECT_EQ(r->status, 404);
        EXPECT_THAT(error_message(r), HasSubstr("kept for a while only"));
    }
}

TEST(ServerJobs, EventStream) {
    TestServer ts;
    auto c = ts.client();
    const std::string id = submit(*c, tiny_job(6, 5));
    std::string text;
    auto r = c->Get(("/api/v1/jobs/" + id + "/events").c_str(), [&](const char* data, size_t n) {
        text.append(data, n);
        return true;  // the server ends the stream after "end"
    });
    ASSERT_TRUE(r) << httplib::to_string(r.error());
    EXPECT_EQ(r->status, 200);
    EXPECT_THAT(r->get_header_value("Content-Type"), HasSubstr("text/event-stream"));
    // Parse "event: X\nid: N\ndata: {...}\n\n" blocks.
    std::vector<std::pair<std::string, json>> events;
    size_t pos = 0;
    while (true) {
        const size_t end = text.find("\n\n", pos);
        if (end == std::string::npos) break;
        const std::string block = text.substr(pos, end - pos);
        pos = end + 2;
        if (block.rfind(":", 0) == 0) continue;  // keep-alive comment
        const size_t e = block.find("event: "), d = block.find("data: ");
        ASSERT_NE(e, std::string::npos) << block;
        ASSERT_NE(d, std::string::npos) << block;
        const std::string name = block.substr(e + 7, block.find('\n', e) - e - 7);
        const json data = json::parse(block.substr(d + 6), nullptr, false);
        ASSERT_FALSE(data.is_discarded()) << block;
        events.emplace_back(name, data);
    }
    ASSERT_GE(events.size(), 2u) << text.substr(0, 1000);
    EXPECT_EQ(events.back().first, "end");
    EXPECT_EQ(events.back().second["status"], "done");
    ASSERT_EQ(events.back().second["images"].size(), 1u);
    EXPECT_EQ(decode_b64_png(events.back().second["images"][0]["b64_json"]).width, 64);
    int progress = 0, previews = 0, last_step = -1;
    for (size_t i = 0; i + 1 < events.size(); ++i) {
        EXPECT_EQ(events[i].first, "progress");
        const json& d = events[i].second;
        EXPECT_EQ(d["id"], id);
        if (d["status"] == "running") {
            ++progress;
            EXPECT_GE(d["step"].get<int>(), last_step);
            last_step = d["step"];
        }
        if (d.contains("preview")) {
            ++previews;
            EXPECT_GT(decode_b64_png(d["preview"]).width, 0);
        }
    }
    EXPECT_GE(progress, 1);
    EXPECT_GE(previews, 1);

    // A finished job's stream is just its "end" event.
    text.clear();
    r = c->Get(("/api/v1/jobs/" + id + "/events").c_str(), [&](const char* data, size_t n) {
        text.append(data, n);
        return true;
    });
    ASSERT_TRUE(r);
    EXPECT_EQ(text.rfind("event: end", 0), 0u) << text.substr(0, 200);
}

TEST(ServerJobs, CancelRunningAndQueuedJobs) {
    ServerOptions o = test_options();
    o.queue.max_models = 1;
    TestServer ts(o);
    auto c = ts.client();
    const std::string a = submit(*c, tiny_job(150, 1));
    wait_for(*c, a, [](const json& s) { return s["status"] == "running" && s["step"].get<int>() >= 1; });
    const std::string b = submit(*c, tiny_job(2, 2));
    json sb = job_status(*c, b);
    EXPECT_EQ(sb["status"], "queued");
    EXPECT_EQ(sb["queue_position"], 0);
    auto r = c->Delete(("/api/v1/jobs/" + b).c_str());
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 200);
    EXPECT_EQ(body_json(r)["status"], "cancelled");
    EXPECT_EQ(job_status(*c, b)["status"], "cancelled");

    const auto t0 = Clock::now();
    r = c->Delete(("/api/v1/jobs/" + a).c_str());
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 200);
    const json sa = wait_for(*c, a, finished, 30);
    EXPECT_EQ(sa["status"], "cancelled");
    EXPECT_LT(sa["step"].get<int>(), 150);
    EXPECT_LT(std::chrono::duration<double>(Clock::now() - t0).count(), 10.0) << "cancel takes effect within a step";
    r = c->Delete(("/api/v1/jobs/" + a).c_str());
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 409);
    // Still serving.
    EXPECT_EQ(wait_for(*c, submit(*c, tiny_job()), finished)["status"], "done");
    const auto st = ts.server().queue().stats();
    EXPECT_EQ(st.cancelled, 2u);
}

TEST(ServerJobs, A1111ProgressPreviewAndInterrupt) {
    TestServer ts;
    auto c = ts.client();
    auto r = c->Get("/sdapi/v1/progress");
    ASSERT_TRUE(r);
    json idle = body_json(r);
    EXPECT_EQ(idle["progress"], 0.0);
    EXPECT_TRUE(idle["current_image"].is_null());
    EXPECT_EQ(idle["state"]["job_count"], 0);

    Reply gen;
    std::thread t([&] {
        auto c2 = ts.client();
        json req = {{"prompt", "x"}, {"steps", 150}, {"width", 64}, {"height", 64}, {"seed", 3}};
        gen = reply(c2->Post("/sdapi/v1/txt2img", req.dump(), kJson));
    });
    json p;
    const auto t0 = Clock::now();
    while (std::chrono::duration<double>(Clock::now() - t0).count() < 60) {
        r = c->Get("/sdapi/v1/progress");
        ASSERT_TRUE(r);
        p = body_json(r);
        if (p["state"]["sampling_step"].get<int>() >= 2 && p["current_image"].is_string()) break;
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    EXPECT_EQ(p["state"]["sampling_steps"], 150);
    EXPECT_EQ(p["state"]["job_count"], 1);
    EXPECT_GT(p["progress"].get<double>(), 0.0);
    EXPECT_LT(p["progress"].get<double>(), 1.0);
    EXPECT_GT(p["eta_relative"].get<double>(), 0.0);
    EXPECT_THAT(p["textinfo"].get<std::string>(), HasSubstr("Sampling step"));
    ASSERT_TRUE(p["current_image"].is_string());
    EXPECT_EQ(decode_b64_png(p["current_image"]).width, 64);
    r = c->Get("/sdapi/v1/progress?skip_current_image=true");
    ASSERT_TRUE(r);
    EXPECT_TRUE(body_json(r)["current_image"].is_null());

    r = c->Post("/sdapi/v1/interrupt", "", kJson);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 200);
    EXPECT_EQ(body_json(r)["interrupted"], 1);
    t.join();
    ASSERT_TRUE(gen.ok);
    EXPECT_EQ(gen.status, 200) << gen.body;  // A1111 answers an interrupt with what was finished
    const json j = body_json(gen);
    EXPECT_TRUE(j["images"].empty());
    EXPECT_EQ(json::parse(j["info"].get<std::string>())["interrupted"], true);
    r = c->Get("/sdapi/v1/progress");
    EXPECT_EQ(body_json(r)["state"]["job_count"], 0);
    r = c->Post("/sdapi/v1/interrupt", "", kJson);  // nothing running: fine
    ASSERT_TRUE(r);
    EXPECT_EQ(body_json(r)["interrupted"], 0);
}

TEST(ServerJobs, FullQueueAnswers429) {
    ServerOptions o = test_options();
    o.queue.max_queued = 1;
    o.queue.max_models = 1;
    TestServer ts(o);
    auto c = ts.client();
    const std::string a = submit(*c, tiny_job(150, 1));
    wait_for(*c, a, [](const json& s) { return s["status"] == "running"; });
    const std::string b = submit(*c, tiny_job(2, 2));
    for (const char* path : {"/api/v1/jobs", "/sdapi/v1/txt2img", "/v1/images/generations"}) {
        json body = tiny_job(2, 3);
        if (std::string(path) == "/v1/images/generations") body = {{"prompt", "x"}, {"size", "64x64"}};
        auto r = c->Post(path, body.dump(), kJson);
        ASSERT_TRUE(r);
        EXPECT_EQ(r->status, 429) << path;
        EXPECT_EQ(r->get_header_value("Retry-After"), "1");
        EXPECT_THAT(error_message(r), HasSubstr("queue is full (1 jobs waiting, limit 1)"));
    }
    // Cheap routes still answer while the queue is full.
    auto r = c->Get("/sdapi/v1/progress");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 200);
    c->Delete(("/api/v1/jobs/" + a).c_str());
    c->Delete(("/api/v1/jobs/" + b).c_str());
    wait_for(*c, a, finished);
    EXPECT_EQ(wait_for(*c, submit(*c, tiny_job()), finished)["status"], "done");
}

TEST(ServerJobs, ConcurrentClientsOnTwoModels) {
    for (size_t max_models : {2u, 1u}) {
        ServerOptions o = test_options();
        o.queue.max_models = max_models;
        TestServer ts(o);
        constexpr int kClients = 6;
        std::vector<Reply> res(kClients);
        std::vector<std::thread> th;
        for (int i = 0; i < kClients; ++i) {
            th.emplace_back([&, i] {
                auto c = ts.client();
                json req = {{"prompt", "a red apple"}, {"steps", 2}, {"width", 64}, {"height", 64}, {"seed", 40 + i / 2},
                            {"override_settings", {{"sd_model_checkpoint", i % 2 ? "sub/other" : "tiny"}}}};
                res[i] = reply(c->Post("/sdapi/v1/txt2img", req.dump(), kJson));
            });
        }
        for (auto& t : th) t.join();
        std::vector<Image> imgs;
        for (int i = 0; i < kClients; ++i) {
            ASSERT_TRUE(res[i].ok) << i;
            ASSERT_EQ(res[i].status, 200) << res[i].body;
            const json info = json::parse(body_json(res[i])["info"].get<std::string>());
            EXPECT_EQ(info["seed"], 40 + i / 2);
            EXPECT_EQ(info["sd_model_name"], i % 2 ? "sub/other" : "tiny");
            imgs.push_back(decode_b64_png(body_json(res[i])["images"][0]));
        }
        // Same weights and seed on both models: same pixels, whichever worker ran them and in which order.
        for (int i = 0; i < kClients; i += 2) EXPECT_EQ(imgs[i].pixels, imgs[i + 1].pixels) << i;
        EXPECT_LE(ts.server().queue().stats().loaded.size(), max_models);
        EXPECT_EQ(ts.server().queue().stats().done, (uint64_t)kClients);
    }
}

TEST(ServerJobs, StopsWithWorkInFlight) {
    auto ts = std::make_unique<TestServer>();
    auto c = ts->client();
    const std::string a = submit(*c, tiny_job(150, 1));
    submit(*c, tiny_job(150, 2));
    wait_for(*c, a, [](const json& s) { return s["status"] == "running"; });
    Reply sync;
    auto c2 = ts->client();  // made here: the thread must not touch `ts` while it is reset
    std::thread t([&] { sync = reply(c2->Post("/sdapi/v1/txt2img", tiny_job(150, 3).dump(), kJson)); });
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    const auto t0 = Clock::now();
    ts.reset();  // stop(): cancels, drains, joins
    t.join();
    EXPECT_LT(std::chrono::duration<double>(Clock::now() - t0).count(), 15.0);
    if (sync.ok) EXPECT_TRUE(sync.status == 200 || sync.status == 503) << sync.status;
}
