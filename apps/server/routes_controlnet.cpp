// sd-webui-controlnet's routes (controlnet_api.h): model_list, module_list, detect, version.
#include "base64.h"
#include "control/preprocess.h"
#include "controlnet_api.h"
#include "http_util.h"

namespace nuance::server {

namespace {

// The extension's slider descriptions for the modules nuance runs (what its UI and the web page show).
json module_detail() {
    auto slider = [](const char* name, double value, double min, double max, double step = 1) {
        return json{{"name", name}, {"value", value}, {"min", min}, {"max", max}, {"step", step}};
    };
    const json res = slider("Preprocessor Resolution", 512, 64, 2048, 8);
    json d = json::object();
    d["none"] = {{"model_free", true}, {"sliders", json::array()}};
    d["canny"] = {{"model_free", true},
                  {"sliders", {res, slider("Canny Low Threshold", 100, 1, 255), slider("Canny High Threshold", 200, 1, 255)}}};
    d["invert (from white bg & black line)"] = {{"model_free", true}, {"sliders", {res}}};
    d["threshold"] = {{"model_free", true}, {"sliders", {res, slider("Binarization Threshold", 127, 0, 255)}}};
    d["scribble"] = {{"model_free", true}, {"sliders", {res, slider("Binarization Threshold", 127, 0, 255)}}};
    d["tile_resample"] = {{"model_free", true}, {"sliders", {res, slider("Down Sampling Rate", 1, 1, 8, 0.01)}}};
    d["shuffle"] = {{"model_free", true}, {"sliders", {res, slider("Seed", 0, 0, 2147483647)}}};
    return d;
}

}  // namespace

void add_controlnet_routes(ServerContext& c) {
    httplib::Server& s = c.http;
    if (!c.opt.controlnet_dir.empty()) list_controlnets(c.opt.controlnet_dir);  // a missing folder fails at start
    s.Get("/controlnet/version", guarded([](const httplib::Request&, httplib::Response& res) {
        send_json(res, 200, {{"version", 2}});
    }));
    s.Get("/controlnet/model_list", guarded([&c](const httplib::Request&, httplib::Response& res) {
        json names = json::array();
        for (const auto& e : list_controlnets(c.opt.controlnet_dir)) names.push_back(e.title);
        send_json(res, 200, {{"model_list", names}});
    }));
    s.Get("/controlnet/module_list", guarded([](const httplib::Request&, httplib::Response& res) {
        send_json(res, 200, {{"module_list", preprocessor_modules()}, {"module_detail", module_detail()}});
    }));
    s.Post("/controlnet/detect", guarded([&c](const httplib::Request& req, httplib::Response& res) {
        const json body = parse_json_object(req.body);
        auto num = [&](const char* k, double dflt) {
            auto it = body.find(k);
            if (it == body.end() || it->is_null()) return dflt;
            NUANCE_CHECK(it->is_number() && std::isfinite(it->get<double>()), "field '", k, "' must be a number, got ",
                         it->dump().substr(0, 40));
            return it->get<double>();
        };
        auto it = body.find("controlnet_module");
        const std::string module = it != body.end() && it->is_string() ? it->get<std::string>() : "none";
        NUANCE_CHECK(it == body.end() || it->is_string() || it->is_null(), "field 'controlnet_module' must be a string");
        const double res_px = num("controlnet_processor_res", -1);
        NUANCE_CHECK(res_px >= -1 && res_px <= 4096, "field 'controlnet_processor_res' must be in 64..4096 (or -1), got ",
                     res_px);
        const Preprocessor pp = preprocessor_from_a1111(module, num("controlnet_threshold_a", -1),
                                                        num("controlnet_threshold_b", -1), (int)res_px, "detect");
        const auto imgs = body.find("controlnet_input_images");
        NUANCE_CHECK(imgs != body.end() && imgs->is_array() && !imgs->empty(),
                     "field 'controlnet_input_images' must be a non-empty list of base64 images");
        NUANCE_CHECK(imgs->size() <= (size_t)c.opt.limits.max_images, "field 'controlnet_input_images' has ",
                     imgs->size(), " images (limit ", c.opt.limits.max_images, ")");
        json out = json::array();
        for (size_t i = 0; i < imgs->size(); ++i) {
            const std::string what = str("controlnet_input_images[", i, "]");
            NUANCE_CHECK((*imgs)[i].is_string(), "field '", what, "' must be a base64 string");
            const Image in = decode_request_image((*imgs)[i].get<std::string>(), c.opt.limits, what);
            const std::vector<uint8_t> png = encode_png(run_preprocessor(pp, in));
            out.push_back(base64_encode(png.data(), png.size()));
        }
        send_json(res, 200, {{"images", out}, {"info", "Success"}});
    }));
}

}  // namespace nuance::server
