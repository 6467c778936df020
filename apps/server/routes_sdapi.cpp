// A1111 WebUI API (modules/api/api.py): what SillyTavern, Open WebUI, Krita plug-ins and scripts call.
#include <chrono>

#include "base64.h"
#include "controlnet_api.h"
#include "http_util.h"
#include "samplers/registry.h"

namespace nuance::server {

namespace {

// A1111 Processed.js(): the "info" string of txt2img/img2img responses.
json a1111_info(ServerContext& c, const ParsedRequest& pr, const JobStatus& st) {
    // The parameters the job really ran with (the model filled what the request left unset).
    const GenerateParams& p = st.request.params.steps > 0 ? st.request.params : pr.params;
    json seeds = json::array(), infotexts = json::array(), prompts = json::array(), negs = json::array();
    for (const auto& img : st.results) {
        seeds.push_back(img->seed);
        infotexts.push_back(img->infotext);
        prompts.push_back(p.prompt);
        negs.push_back(p.negative_prompt);
    }
    std::string sampler_name;
    if (!p.sampler.empty()) sampler_name = parse_sampler_spec(p.sampler).sampler->display_name;
    const auto hash = c.store.hash(st.model);
    const int w = st.results.empty() ? p.width : st.results.front()->width;
    const int h = st.results.empty() ? p.height : st.results.front()->height;
    json info = {
        {"prompt", p.prompt},
        {"all_prompts", prompts},
        {"negative_prompt", p.negative_prompt},
        {"all_negative_prompts", negs},
        {"seed", st.seed},
        {"all_seeds", seeds},
        {"subseed", -1},
        {"all_subseeds", seeds},
        {"subseed_strength", 0},
        {"width", w},
        {"height", h},
        {"sampler_name", sampler_name},
        {"cfg_scale", p.cfg_scale},
        {"steps", p.steps},
        {"batch_size", p.batch_count},
        {"restore_faces", false},
        {"face_restoration_model", nullptr},
        {"sd_model_name", st.request.model.stem},
        {"sd_model_hash", hash ? json(hash->substr(0, 10)) : json(nullptr)},
        {"sd_vae_name", nullptr},
        {"sd_vae_hash", nullptr},
        {"seed_resize_from_w", -1},
        {"seed_resize_from_h", -1},
        {"denoising_strength", pr.params.init_image ? json(p.strength)
                               : pr.params.hires.enabled ? json(pr.params.hires.strength) : json(nullptr)},
        {"extra_generation_params", json::object()},
        {"index_of_first_image", 0},
        {"infotexts", infotexts},
        {"styles", json::array()},
        {"job_timestamp", iso_timestamp_compact(st.created)},
        {"clip_skip", p.clip_skip > 0 ? p.clip_skip : 1},
        {"is_using_inpainting_conditioning", false},
        {"version", "nuance 0.1.0"},
    };
    if (st.state == JobState::Cancelled) info["interrupted"] = true;
    return info;
}

void generate_route(ServerContext& c, const httplib::Request& req, httplib::Response& res, bool img2img) {
    const json body = parse_json_object(req.body);
    ParsedRequest pr = parse_a1111(body, img2img, c.opt.limits);
    resolve_controlnet_paths(pr.params.control, c.opt.controlnet_dir);
    const JobStatus st = run_sync(c, pr, img2img ? "img2img" : "txt2img");
    // A1111 answers an interrupt with what was finished; failures are errors.
    if (st.state == JobState::Failed) return send_error(res, st.error_status ? st.error_status : 500, st.error_message);
    json images = json::array();
    if (pr.send_images)
        for (const auto& img : st.results) images.push_back(png_b64(*img));
    json params = body;
    params["seed"] = pr.params.seed;
    if (params.contains("init_images")) params["init_images"] = nullptr;
    if (params.contains("mask")) params["mask"] = nullptr;
    send_json(res, 200, {{"images", images}, {"parameters", params}, {"info", a1111_info(c, pr, st).dump(-1, ' ', false, json::error_handler_t::replace)}});
}

json progress_json(ServerContext& c, bool skip_image) {
    const auto cur = c.queue.current();
    json state = {{"skipped", false}, {"interrupted", false}, {"job", ""}, {"job_count", 0},
                  {"job_timestamp", "0"}, {"job_no", 0}, {"sampling_step", 0}, {"sampling_steps", 0}};
    if (!cur) {
        const auto s = c.queue.stats();
        return {{"progress", 0.0}, {"eta_relative", 0.0}, {"state", state}, {"current_image", nullptr},
                {"textinfo", s.queued ? json(str(s.queued, " job(s) waiting")) : json(nullptr)}, {"current_task", nullptr}};
    }
    state["job"] = "job(" + cur->id + ")";
    state["job_count"] = cur->images;
    state["job_no"] = cur->image;
    state["job_timestamp"] = iso_timestamp_compact(cur->created);
    state["sampling_step"] = cur->step;
    state["sampling_steps"] = cur->total;
    json img = nullptr;
    if (!skip_image && cur->preview_png) img = base64_encode(*cur->preview_png);
    return {{"progress", cur->progress},
            {"eta_relative", cur->eta_s > 0 ? cur->eta_s : 0.0},
            {"state", state},
            {"current_image", img},
            {"textinfo", str("Sampling step ", cur->step, "/", cur->total,
                             cur->images > 1 ? str(", image ", cur->image + 1, "/", cur->images) : std::string())},
            {"current_task", cur->id}};
}

json sd_models_json(ServerContext& c) {
    json out = json::array();
    for (const auto& e : c.store.list()) {
        const auto h = c.store.hash(e.name);
        out.push_back({{"title", c.store.title(e)},
                       {"model_name", e.stem},
                       {"hash", h ? json(h->substr(0, 10)) : json(nullptr)},
                       {"sha256", h ? json(*h) : json(nullptr)},
                       {"filename", e.name},
                       {"config", nullptr}});
    }
    return out;
}

// A1111 reads metadata values that look like JSON objects as objects (ss_tag_frequency ...).
json loras_json(ServerContext& c) {
    json out = json::array();
    const auto lib = c.loras.library();
    if (!lib) return out;
    for (const auto& e : lib->entries()) {
        json meta = json::object();
        size_t bytes = 0;
        for (const auto& [k, v] : e.metadata) {
            bytes += k.size() + v.size();
            if (bytes > (1u << 20)) break;  // a LoRA with megabytes of metadata: the rest is left out
            json val = v;
            if (!v.empty() && v.front() == '{') {
                json parsed = json::parse(v, nullptr, false);
                if (!parsed.is_discarded()) val = std::move(parsed);
            }
            meta[k] = std::move(val);
        }
        out.push_back({{"name", e.name}, {"alias", e.alias}, {"path", e.relative}, {"metadata", meta}});
    }
    return out;
}

json options_json(ServerContext& c) {
    json o = {{"samples_format", "png"}, {"CLIP_stop_at_last_layers", 1}, {"randn_source", "GPU"},
              {"sd_vae", "Automatic"}, {"sd_model_checkpoint", nullptr}, {"sd_checkpoint_hash", nullptr}};
    try {
        const ModelEntry d = c.store.default_model();
        o["sd_model_checkpoint"] = c.store.title(d);
        if (auto h = c.store.hash(d.name)) o["sd_checkpoint_hash"] = *h;
    } catch (const Error&) {  // no model yet: null
    }
    return o;
}

}  // namespace

void add_sdapi_routes(ServerContext& c) {
    httplib::Server& s = c.http;
    s.Post("/sdapi/v1/txt2img", guarded([&c](const httplib::Request& req, httplib::Response& res) {
        generate_route(c, req, res, false);
    }));
    s.Post("/sdapi/v1/img2img", guarded([&c](const httplib::Request& req, httplib::Response& res) {
        generate_route(c, req, res, true);
    }));
    s.Get("/sdapi/v1/progress", guarded([&c](const httplib::Request& req, httplib::Response& res) {
        const std::string skip = req.get_param_value("skip_current_image");
        send_json(res, 200, progress_json(c, skip == "true" || skip == "1"));
    }));
    auto interrupt = guarded([&c](const httplib::Request&, httplib::Response& res) {
        const int n = c.queue.interrupt_running();
        send_json(res, 200, {{"interrupted", n}});
    });
    s.Post("/sdapi/v1/interrupt", interrupt);
    s.Post("/sdapi/v1/skip", interrupt);
    s.Get("/sdapi/v1/sd-models", guarded([&c](const httplib::Request&, httplib::Response& res) {
        send_json(res, 200, sd_models_json(c));
    }));
    // A1111's Lora extension: [{"name", "alias", "path", "metadata"}] of --lora-dir (path relative to it: the server's
    // folders are not the client's business), [] without one; <lora:name:w> in a prompt uses the name.
    s.Get("/sdapi/v1/loras", guarded([&c](const httplib::Request&, httplib::Response& res) {
        send_json(res, 200, loras_json(c));
    }));
    s.Post("/sdapi/v1/refresh-loras", guarded([&c](const httplib::Request&, httplib::Response& res) {
        c.loras.refresh();
        send_json(res, 200, nullptr);
    }));
    s.Post("/sdapi/v1/refresh-checkpoints", guarded([&c](const httplib::Request&, httplib::Response& res) {
        c.store.list();
        send_json(res, 200, nullptr);
    }));
    s.Get("/sdapi/v1/samplers", guarded([](const httplib::Request&, httplib::Response& res) {
        json out = json::array();
        for (const auto& si : list_samplers()) {
            json aliases = json::array({si.name});
            for (const auto& a : si.aliases) aliases.push_back(a);
            out.push_back({{"name", si.display_name}, {"aliases", aliases}, {"options", json::object()}});
        }
        send_json(res, 200, out);
    }));
    s.Get("/sdapi/v1/schedulers", guarded([](const httplib::Request&, httplib::Response& res) {
        json out = json::array();
        for (const auto& n : list_schedule_types()) {
            const ScheduleType t = parse_schedule_type(n);
            out.push_back({{"name", n}, {"label", schedule_type_display_name(t)}, {"aliases", nullptr},
                           {"default_rho", -1}, {"need_inner_model", false}});
        }
        send_json(res, 200, out);
    }));
    s.Get("/sdapi/v1/options", guarded([&c](const httplib::Request&, httplib::Response& res) {
        send_json(res, 200, options_json(c));
    }));
    s.Post("/sdapi/v1/options", guarded([&c](const httplib::Request& req, httplib::Response& res) {
        const json body = parse_json_object(req.body);
        if (auto it = body.find("sd_model_checkpoint"); it != body.end() && !it->is_null()) {
            NUANCE_CHECK(it->is_string(), "field 'sd_model_checkpoint' must be a string");
            c.store.set_default(it->get<std::string>());
        }
        send_json(res, 200, nullptr);  // other options are accepted and ignored
    }));
    s.Get("/sdapi/v1/cmd-flags", guarded([&c](const httplib::Request&, httplib::Response& res) {
        send_json(res, 200, {{"api", true}, {"listen", c.opt.host != "127.0.0.1"}, {"ckpt_dir", nullptr}});
    }));
    // Lists clients read at start-up; this engine has none of these yet.
    for (const char* path : {"/sdapi/v1/upscalers", "/sdapi/v1/sd-vae", "/sdapi/v1/hypernetworks",
                             "/sdapi/v1/prompt-styles", "/sdapi/v1/latent-upscale-modes", "/sdapi/v1/face-restorers",
                             "/sdapi/v1/realesrgan-models"}) {
        s.Get(path, guarded([](const httplib::Request&, httplib::Response& res) { send_json(res, 200, json::array()); }));
    }
    s.Get("/sdapi/v1/scripts", guarded([](const httplib::Request&, httplib::Response& res) {
        send_json(res, 200, {{"txt2img", json::array()}, {"img2img", json::array()}});
    }));
    // A1111's answer: {"loaded": {name: {step, sd_checkpoint, sd_checkpoint_name, shape, vectors}}, "skipped": {...}}
    // (a file that cannot be read is "skipped"; widths are checked against the model when a prompt uses it).
    s.Get("/sdapi/v1/embeddings", guarded([&c](const httplib::Request&, httplib::Response& res) {
        json loaded = json::object(), skipped = json::object();
        if (c.embeddings)
            for (const std::string& name : c.embeddings->names()) {
                try {
                    const auto ti = c.embeddings->get(name);
                    const Tensor& v = ti->vectors.begin()->second;
                    loaded[name] = {{"step", ti->step >= 0 ? json(ti->step) : json(nullptr)},
                                    {"sd_checkpoint", nullptr},
                                    {"sd_checkpoint_name", ti->checkpoint_name.empty() ? json(nullptr) : json(ti->checkpoint_name)},
                                    {"shape", v.size(1)},
                                    {"vectors", ti->count}};
                } catch (const Error&) {
                    skipped[name] = {{"step", nullptr}, {"sd_checkpoint", nullptr}, {"sd_checkpoint_name", nullptr},
                                     {"shape", nullptr}, {"vectors", nullptr}};
                }
            }
        send_json(res, 200, {{"loaded", loaded}, {"skipped", skipped}});
    }));
}

}  // namespace nuance::server
