// Per-model defaults and saved outputs:
//   GET /api/v1/models               -> {default_model, models: [{name, title, loaded, defaults|null, defaults_error?}]}
//   GET /api/v1/outputs              -> {enabled, total, offset, outputs: [{name, url, created, width, height, seed,
//                                        infotext}]}, newest first (?offset=N&limit=M, M <= 100)
//   GET /api/v1/outputs/NNNNN-SEED.png -> the saved PNG (with its "parameters" chunk)
#include <charconv>

#include "http_util.h"

namespace nuance::server {

namespace {

constexpr size_t kMaxListed = 100;

// Client-visible text must not carry the server's absolute paths: name the model instead.
std::string without_path(std::string msg, const ModelEntry& e) {
    for (size_t pos; !e.path.empty() && (pos = msg.find(e.path)) != std::string::npos;)
        msg.replace(pos, e.path.size(), e.name);
    return msg;
}

size_t size_param(const httplib::Request& req, const char* key, size_t fallback, size_t hi) {
    if (!req.has_param(key)) return fallback;
    const std::string v = req.get_param_value(key);
    size_t x = 0;
    const auto r = std::from_chars(v.data(), v.data() + v.size(), x);
    NUANCE_CHECK(r.ec == std::errc() && r.ptr == v.data() + v.size() && x <= hi, "query parameter '", key,
                 "' must be an integer in 0..", hi, ", got '", v.substr(0, 32), "'");
    return x;
}

int64_t seed_of(const std::string& infotext) {
    const size_t at = infotext.rfind("Seed: ");
    if (at == std::string::npos) return -1;
    int64_t s = -1;
    const char* b = infotext.data() + at + 6;
    std::from_chars(b, infotext.data() + infotext.size(), s);
    return s;
}

}  // namespace

json model_list_json(ServerContext& c) {
    const auto stats = c.queue.stats();
    json models = json::array();
    for (const auto& e : c.store.list()) {
        bool loaded = false;
        for (const auto& l : stats.loaded) loaded = loaded || l == e.name;
        json m = {{"name", e.name}, {"title", c.store.title(e)}, {"loaded", loaded}};
        std::string err;
        const auto d = c.defaults.get(e.path, &err);
        m["defaults"] = d ? defaults_json(*d) : json(nullptr);
        if (!d) m["defaults_error"] = without_path(err, e);
        models.push_back(m);
    }
    return models;
}

json default_model_defaults(ServerContext& c) {
    GenerationDefaults d;
    try {
        const ModelEntry e = c.store.default_model();
        if (auto md = c.defaults.get(e.path)) d = *md;
    } catch (const Error&) {  // no model yet: the family defaults
    }
    return defaults_json(d);
}

void add_defaults_routes(ServerContext& c) {
    httplib::Server& s = c.http;
    s.Get("/api/v1/models", guarded([&c](const httplib::Request&, httplib::Response& res) {
        std::string def;
        try {
            def = c.store.default_model().name;
        } catch (const Error&) {
        }
        send_json(res, 200, {{"default_model", def.empty() ? json(nullptr) : json(def)}, {"models", model_list_json(c)}});
    }));
    s.Get("/api/v1/outputs", guarded([&c](const httplib::Request& req, httplib::Response& res) {
        const size_t offset = size_param(req, "offset", 0, 1u << 30);
        const size_t limit = size_param(req, "limit", 24, kMaxListed);
        size_t total = 0;
        json items = json::array();
        for (const auto& it : c.outputs.list(offset, limit, total))
            items.push_back({{"name", it.name}, {"url", "/api/v1/outputs/" + it.name}, {"created", it.mtime},
                             {"width", it.width}, {"height", it.height}, {"seed", seed_of(it.infotext)},
                             {"infotext", it.infotext}});
        send_json(res, 200, {{"enabled", c.outputs.enabled()}, {"total", total}, {"offset", offset}, {"outputs", items}});
    }));
    s.Get(R"(/api/v1/outputs/([^/]{1,64}))", guarded([&c](const httplib::Request& req, httplib::Response& res) {
        const std::string png = c.outputs.read(req.matches[1]);
        res.set_header("Cache-Control", "private, max-age=86400");
        res.set_header("X-Content-Type-Options", "nosniff");
        res.set_content(png, "image/png");
    }));
}

}  // namespace nuance::server
