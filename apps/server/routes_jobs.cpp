// Native asynchronous API:
//   POST   /api/v1/jobs              -> 202 {id, status, queue_position, poll_url, events_url}
//   GET    /api/v1/jobs              -> {jobs: [...]} (recent and pending, without images)
//   GET    /api/v1/jobs/{id}         -> status, progress, preview (?preview=0 omits), images when done (?images=0 omits)
//   DELETE /api/v1/jobs/{id}         -> cancels a queued or running job (409 when already finished)
//   GET    /api/v1/jobs/{id}/events  -> server-sent events: "progress" while it runs, then one "end"
//   GET    /api/v1/info              -> models (with their defaults), samplers, schedules, the default model's
//                                       defaults, limits, queue state
//   GET    /health
#include <chrono>

#include "base64.h"
#include "http_util.h"
#include "samplers/registry.h"

namespace nuance::server {

namespace {

json status_json(const JobStatus& st, bool with_preview, bool with_images) {
    json j = {{"id", st.id},
              {"status", job_state_name(st.state)},
              {"model", st.model},
              {"kind", st.kind},
              {"created", st.created},
              {"queue_position", st.queue_position >= 0 ? json(st.queue_position) : json(nullptr)},
              {"step", st.step},
              {"total", st.total},
              {"image", st.image},
              {"images_total", st.images},
              {"images_done", st.results.size()},
              {"progress", st.progress},
              {"elapsed", st.elapsed_s},
              {"eta", st.eta_s >= 0 ? json(st.eta_s) : json(nullptr)},
              {"seed", st.seed},
              {"error", st.state == JobState::Failed
                            ? json{{"status", st.error_status}, {"message", st.error_message}}
                            : json(nullptr)}};
    if (with_preview) j["preview"] = st.preview_png ? json(base64_encode(*st.preview_png)) : json(nullptr);
    if (with_images) {
        json imgs = json::array();
        for (size_t i = 0; i < st.results.size(); ++i) {
            const JobImage& im = *st.results[i];
            imgs.push_back({{"index", i}, {"seed", im.seed}, {"width", im.width}, {"height", im.height},
                            {"infotext", im.infotext}, {"b64_json", png_b64(im)},
                            {"saved_as", im.saved_as.empty() ? json(nullptr) : json(im.saved_as)}});
        }
        j["images"] = imgs;
    }
    return j;
}

bool param_off(const httplib::Request& req, const char* key) {
    const std::string v = req.get_param_value(key);
    return v == "0" || v == "false";
}

std::string sse(const char* event, uint64_t id, const json& data) {
    return str("event: ", event, "\nid: ", id, "\ndata: ", data.dump(-1, ' ', false, json::error_handler_t::replace), "\n\n");
}

}  // namespace

void add_job_routes(ServerContext& c) {
    httplib::Server& s = c.http;
    s.Post("/api/v1/jobs", guarded([&c](const httplib::Request& req, httplib::Response& res) {
        const ParsedRequest pr = parse_native(parse_json_object(req.body), c.opt.limits);
        JobRequest jr;
        jr.model = pr.model ? c.store.resolve(*pr.model) : c.store.default_model();
        jr.params = pr.params;
        jr.kind = pr.params.init_image ? "img2img" : "txt2img";
        const std::string id = c.queue.submit(std::move(jr));
        const auto st = c.queue.status(id);
        res.set_header("Location", "/api/v1/jobs/" + id);
        send_json(res, 202, {{"id", id},
                             {"status", st ? job_state_name(st->state) : "queued"},
                             {"queue_position", st && st->queue_position >= 0 ? json(st->queue_position) : json(nullptr)},
                             {"seed", pr.params.seed},
                             {"model", st ? st->model : std::string()},
                             {"created", st ? st->created : 0.0},
                             {"poll_url", "/api/v1/jobs/" + id},
                             {"events_url", "/api/v1/jobs/" + id + "/events"}});
    }));
    s.Get("/api/v1/jobs", guarded([&c](const httplib::Request&, httplib::Response& res) {
        json jobs = json::array();
        for (const auto& st : c.queue.list()) jobs.push_back(status_json(st, false, false));
        send_json(res, 200, {{"jobs", jobs}});
    }));
    s.Get(R"(/api/v1/jobs/([0-9a-f]{1,64}))", guarded([&c](const httplib::Request& req, httplib::Response& res) {
        const auto st = c.queue.status(req.matches[1]);
        if (!st) return send_error(res, 404, str("no job '", req.matches[1].str(), "' (finished jobs are kept for a while only)"));
        send_json(res, 200, status_json(*st, !param_off(req, "preview"), !param_off(req, "images")));
    }));
    s.Delete(R"(/api/v1/jobs/([0-9a-f]{1,64}))", guarded([&c](const httplib::Request& req, httplib::Response& res) {
        const std::string id = req.matches[1];
        switch (c.queue.cancel(id)) {
            case JobQueue::CancelResult::NotFound: return send_error(res, 404, str("no job '", id, "'"));
            case JobQueue::CancelResult::AlreadyFinished: {
                const auto st = c.queue.status(id);
                return send_error(res, 409, str("job '", id, "' is already ", st ? job_state_name(st->state) : "finished"));
            }
            case JobQueue::CancelResult::Cancelled: break;
        }
        const auto st = c.queue.status(id);
        send_json(res, 200, {{"id", id}, {"status", st ? job_state_name(st->state) : "cancelled"}, {"cancel_requested", true}});
    }));
    s.Get(R"(/api/v1/jobs/([0-9a-f]{1,64})/events)", guarded([&c](const httplib::Request& req, httplib::Response& res) {
        const std::string id = req.matches[1];
        if (!c.queue.status(id)) return send_error(res, 404, str("no job '", id, "'"));
        res.set_header("Cache-Control", "no-cache");
        res.set_header("X-Accel-Buffering", "no");
        struct StreamState {
            uint64_t seen = 0, preview_sent = 0;
            bool ended = false;
            int idle = 0;
        };
        auto state = std::make_shared<StreamState>();
        res.set_chunked_content_provider("text/event-stream", [&c, id, state](size_t, httplib::DataSink& sink) {
            if (state->ended || c.stopping) {
                sink.done();
                return true;
            }
            const auto st = c.queue.wait_change(id, state->seen, std::chrono::milliseconds(500));
            if (!st) {  // forgotten (history limit)
                state->ended = true;
                const std::string msg = sse("end", state->seen + 1, {{"id", id}, {"status", "unknown"}});
                return sink.write(msg.data(), msg.size());
            }
            std::string out;
            if (job_finished(st->state)) {
                state->ended = true;
                out = sse("end", st->version, status_json(*st, false, true));
            } else if (st->version != state->seen) {
                const bool new_preview = st->preview_png && st->preview_step != state->preview_sent;
                json j = status_json(*st, false, false);
                if (new_preview) {
                    j["preview"] = base64_encode(*st->preview_png);
                    state->preview_sent = st->preview_step;
                }
                out = sse("progress", st->version, j);
                state->idle = 0;
            } else if (++state->idle >= 20) {  // ~10 s without news: a comment keeps proxies and clients awake
                out = ": keep-alive\n\n";
                state->idle = 0;
            }
            state->seen = st->version;
            if (out.empty()) return true;
            return sink.write(out.data(), out.size());
        });
    }));
    s.Get("/api/v1/info", guarded([&c](const httplib::Request&, httplib::Response& res) {
        const auto stats = c.queue.stats();
        const json models = model_list_json(c);
        json samplers = json::array();
        for (const auto& si : list_samplers())
            samplers.push_back({{"name", si.name}, {"display_name", si.display_name}, {"description", si.description}});
        std::string def;
        try {
            def = c.store.default_model().name;
        } catch (const Error&) {
        }
        const Limits& l = c.opt.limits;
        send_json(res, 200, {
            {"name", "nuance"}, {"version", "0.1.0"},
            {"default_model", def.empty() ? json(nullptr) : json(def)},
            {"models", models}, {"samplers", samplers}, {"schedulers", list_schedule_types()},
            {"defaults", default_model_defaults(c)},
            {"outputs", {{"enabled", c.outputs.enabled()}}},
            {"limits", {{"max_side", l.max_side}, {"max_pixels", l.max_pixels}, {"max_steps", l.max_steps},
                        {"max_images", l.max_images}, {"max_body_bytes", c.opt.max_body_bytes}}},
            {"queue", {{"queued", stats.queued}, {"running", stats.running}, {"max_queued", c.opt.queue.max_queued},
                       {"loaded_models", stats.loaded}, {"done", stats.done}, {"failed", stats.failed},
                       {"cancelled", stats.cancelled}}},
        });
    }));
    s.Get("/health", guarded([](const httplib::Request&, httplib::Response& res) { send_json(res, 200, {{"status", "ok"}}); }));
}

}  // namespace nuance::server
