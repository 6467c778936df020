// OpenAI Images API: POST /v1/images/generations, POST /v1/images/edits, GET /v1/models.
#include <chrono>

#include "http_util.h"

namespace nuance::server {

namespace {

// Runs the request and answers in the Images API shape (data[] of b64_json or data-URL url).
void respond_images(ServerContext& c, const ParsedRequest& pr, httplib::Response& res, const char* kind) {
    const JobStatus st = run_sync(c, pr, kind);
    if (st.state == JobState::Failed) return send_error(res, st.error_status ? st.error_status : 500, st.error_message);
    if (st.results.empty()) return send_error(res, 503, "the generation was cancelled");
    json data = json::array();
    for (const auto& img : st.results) {
        const std::string b64 = png_b64(*img);
        if (pr.response_format == "url")
            data.push_back({{"url", "data:image/png;base64," + b64}, {"revised_prompt", pr.params.prompt}});
        else
            data.push_back({{"b64_json", b64}, {"revised_prompt", pr.params.prompt}});
    }
    const auto& first = *st.results.front();
    send_json(res, 200, {{"created", (int64_t)st.created}, {"data", data}, {"output_format", "png"},
                         {"size", str(first.width, "x", first.height)}});
}

}  // namespace

void add_openai_routes(ServerContext& c) {
    httplib::Server& s = c.http;
    s.Post("/v1/images/generations", guarded([&c](const httplib::Request& req, httplib::Response& res) {
        const json body = parse_json_object(req.body);
        const ParsedRequest pr = parse_openai(body, c.opt.limits);
        respond_images(c, pr, res, "openai");
    }));
    // OpenAI image edits: multipart image + mask (transparent = edit) + prompt; answered like generations.
    s.Post("/v1/images/edits", guarded([&c](const httplib::Request& req, httplib::Response& res) {
        NUANCE_CHECK(req.is_multipart_form_data(), "POST /v1/images/edits takes multipart/form-data (image, mask, ",
                     "prompt, n, size, response_format), got '", req.get_header_value("Content-Type").substr(0, 64),
                     "'");
        std::vector<std::pair<std::string, std::string>> parts;
        for (const auto& [name, part] : req.files) parts.emplace_back(name, part.content);
        const ParsedRequest pr = parse_openai_edit(parts, c.opt.limits);
        respond_images(c, pr, res, "openai-edit");
    }));
    s.Get("/v1/models", guarded([&c](const httplib::Request&, httplib::Response& res) {
        json data = json::array();
        for (const auto& e : c.store.list())
            data.push_back({{"id", e.name}, {"object", "model"}, {"created", 0}, {"owned_by", "nuance"}});
        send_json(res, 200, {{"object", "list"}, {"data", data}});
    }));
}

}  // namespace nuance::server
