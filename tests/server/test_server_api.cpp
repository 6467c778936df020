// HTTP server: every route with good and bad input, through cpp-httplib's client on a loopback port.
#include <gmock/gmock.h>

#include "server_fixture.h"

using namespace nuance;
using namespace nuance::server;
using namespace nuance::server::test;
using ::testing::HasSubstr;

namespace {

const char* kJson = "application/json";

json tiny_txt2img(int64_t seed = 7) {
    return {{"prompt", "a red apple"}, {"negative_prompt", "blurry"}, {"steps", 2}, {"width", 64}, {"height", 64},
            {"seed", seed}, {"sampler_name", "Euler a"}};
}

}  // namespace

TEST(ServerApi, PageHealthAndUnknownRoutes) {
    TestServer ts;
    auto c = ts.client();
    auto r = c->Get("/");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 200);
    EXPECT_THAT(r->get_header_value("Content-Type"), HasSubstr("text/html"));
    EXPECT_THAT(r->body, HasSubstr("<title>nuance</title>"));
    EXPECT_THAT(r->body, HasSubstr("/api/v1/jobs"));
    r = c->Get("/health");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 200);
    EXPECT_EQ(body_json(r)["status"], "ok");
    r = c->Get("/no/such/route");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 404);
    EXPECT_THAT(error_message(r), HasSubstr("/no/such/route"));
    r = c->Get("/sdapi/v1/txt2img");  // wrong method
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 404);
    EXPECT_THAT(error_message(r), HasSubstr("GET /sdapi/v1/txt2img"));
}

TEST(ServerApi, ListsModelsSamplersSchedulersOptions) {
    TestServer ts;
    auto c = ts.client();
    auto r = c->Get("/sdapi/v1/sd-models");
    ASSERT_TRUE(r);
    ASSERT_EQ(r->status, 200);
    json models = body_json(r);
    ASSERT_TRUE(models.is_array());
    std::vector<std::string> names;
    for (const auto& m : models) {
        names.push_back(m["title"]);
        EXPECT_TRUE(m["model_name"].is_string());
        const std::string f = m["filename"];
        EXPECT_TRUE(!f.empty() && f[0] != '/' && f.find(models_dir().string()) == std::string::npos)
            << "filenames are relative to the models dir: " << f;
    }
    EXPECT_THAT(names, ::testing::UnorderedElementsAre("tiny.safetensors", "sub/other.safetensors", "broken.safetensors"));

    r = c->Get("/v1/models");
    ASSERT_TRUE(r);
    json om = body_json(r);
    EXPECT_EQ(om["object"], "list");
    ASSERT_EQ(om["data"].size(), 3u);
    EXPECT_EQ(om["data"][0]["object"], "model");

    r = c->Get("/sdapi/v1/samplers");
    ASSERT_TRUE(r);
    json samplers = body_json(r);
    bool euler_a = false;
    for (const auto& s : samplers)
        if (s["name"] == "Euler a") euler_a = std::find(s["aliases"].begin(), s["aliases"].end(), "euler_a") != s["aliases"].end();
    EXPECT_TRUE(euler_a) << samplers.dump();

    r = c->Get("/sdapi/v1/schedulers");
    ASSERT_TRUE(r);
    json sch = body_json(r);
    ASSERT_TRUE(sch.is_array());
    EXPECT_GE(sch.size(), 3u);
    EXPECT_EQ(sch[0]["label"], "Normal");

    r = c->Get("/api/v1/info");
    ASSERT_TRUE(r);
    json info = body_json(r);
    EXPECT_EQ(info["default_model"], "tiny.safetensors");
    EXPECT_EQ(info["limits"]["max_side"], 2048);
    EXPECT_EQ(info["queue"]["max_queued"], 8);

    for (const char* empty : {"/sdapi/v1/upscalers", "/sdapi/v1/sd-vae", "/sdapi/v1/loras"}) {
        r = c->Get(empty);
        ASSERT_TRUE(r);
        EXPECT_EQ(r->status, 200);
        EXPECT_EQ(body_json(r), json::array()) << empty;
    }
}

TEST(ServerApi, OptionsSwitchTheDefaultModel) {
    TestServer ts;
    auto c = ts.client();
    auto r = c->Get("/sdapi/v1/options");
    ASSERT_TRUE(r);
    EXPECT_EQ(body_json(r)["sd_model_checkpoint"], "tiny.safetensors");
    r = c->Post("/sdapi/v1/options", json{{"sd_model_checkpoint", "sub/other"}, {"some_other_option", 3}}.dump(), kJson);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 200);
    r = c->Get("/sdapi/v1/options");
    EXPECT_EQ(body_json(r)["sd_model_checkpoint"], "sub/other.safetensors");
    // The next generation without a model uses it.
    r = c->Post("/sdapi/v1/txt2img", tiny_txt2img().dump(), kJson);
    ASSERT_TRUE(r);
    ASSERT_EQ(r->status, 200) << r->body;
    const json info = json::parse(body_json(r)["info"].get<std::string>());
    EXPECT_EQ(info["sd_model_name"], "sub/other");
    EXPECT_THAT(info["infotexts"][0].get<std::string>(), HasSubstr("Model: other"));
    // The hash is known once a model was loaded; titles then carry it, A1111 style.
    r = c->Get("/sdapi/v1/options");
    EXPECT_THAT(body_json(r)["sd_model_checkpoint"].get<std::string>(), ::testing::MatchesRegex(R"(sub/other\.safetensors \[[0-9a-f]{10}\])"));

    struct Bad {
        std::string body;
        int status;
        std::string message;
    };
    for (const Bad& b : std::vector<Bad>{
             {R"({"sd_model_checkpoint": "nope"})", 404, "model 'nope' not found"},
             {R"({"sd_model_checkpoint": "../tiny.safetensors"})", 400, "not a model name"},
             {R"({"sd_model_checkpoint": "/etc/passwd"})", 400, "not a model name"},
             {R"({"sd_model_checkpoint": 5})", 400, "must be a string"},
             {R"({"sd_model_checkpoint": )", 400, "invalid JSON"},
         }) {
        r = c->Post("/sdapi/v1/options", b.body, kJson);
        ASSERT_TRUE(r);
        EXPECT_EQ(r->status, b.status) << b.body;
        EXPECT_THAT(error_message(r), HasSubstr(b.message)) << b.body;
    }
    r = c->Get("/sdapi/v1/options");
    EXPECT_THAT(body_json(r)["sd_model_checkpoint"].get<std::string>(), HasSubstr("sub/other.safetensors"));
}

TEST(ServerApi, Txt2ImgMatchesA1111Shape) {
    TestServer ts;
    auto c = ts.client();
    json req = tiny_txt2img(7);
    req["batch_size"] = 2;
    req["styles"] = json::array();                 // unknown to us: ignored
    req["alwayson_scripts"] = {{"x", {{"args", json::array({1, 2})}}}};
    req["restore_faces"] = nullptr;
    auto r = c->Post("/sdapi/v1/txt2img", req.dump(), kJson);
    ASSERT_TRUE(r);
    ASSERT_EQ(r->status, 200) << r->body;
    const json j = body_json(r);
    ASSERT_EQ(j["images"].size(), 2u);
    EXPECT_EQ(j["parameters"]["prompt"], "a red apple");
    const json info = json::parse(j["info"].get<std::string>());
    EXPECT_EQ(info["seed"], 7);
    EXPECT_EQ(info["all_seeds"], json::array({7, 8}));
    EXPECT_EQ(info["sampler_name"], "Euler a");
    EXPECT_EQ(info["width"], 64);
    ASSERT_EQ(info["infotexts"].size(), 2u);
    for (int i = 0; i < 2; ++i) {
        PngText text;
        const Image img = decode_b64_png(j["images"][i], &text);
        EXPECT_EQ(img.width, 64);
        EXPECT_EQ(img.height, 64);
        const std::string params = param(text, "parameters");
        EXPECT_EQ(params, info["infotexts"][i].get<std::string>());
        EXPECT_THAT(params, HasSubstr(str("Seed: ", 7 + i)));
        EXPECT_THAT(params, HasSubstr("Negative prompt: blurry"));
        EXPECT_THAT(params, HasSubstr("Steps: 2, Sampler: Euler a"));
    }
    // Same request, same pixels.
    req["batch_size"] = 1;
    auto r2 = c->Post("/sdapi/v1/txt2img", req.dump(), kJson);
    ASSERT_TRUE(r2);
    ASSERT_EQ(r2->status, 200);
    EXPECT_EQ(decode_b64_png(body_json(r2)["images"][0]).pixels, decode_b64_png(j["images"][0]).pixels);

    // seed -1: a random seed, reported back; send_images false: no images.
    req["seed"] = -1;
    req["send_images"] = false;
    r = c->Post("/sdapi/v1/txt2img", req.dump(), kJson);
    ASSERT_TRUE(r);
    ASSERT_EQ(r->status, 200);
    const json j3 = body_json(r);
    EXPECT_TRUE(j3["images"].empty());
    const json info3 = json::parse(j3["info"].get<std::string>());
    EXPECT_GE(info3["seed"].get<int64_t>(), 0);
    EXPECT_EQ(j3["parameters"]["seed"], info3["seed"]);

    // Sampler spellings clients send.
    for (const auto& [name, want] : std::vector<std::pair<std::string, std::string>>{
             {"k_dpmpp_2m", "Sampler: DPM++ 2M, Schedule type: Normal"},
             {"DPM++ 2M Karras", "Sampler: DPM++ 2M, Schedule type: Karras"},
             {"euler", "Sampler: Euler,"}}) {
        json q = tiny_txt2img(3);
        q["sampler_name"] = name;
        r = c->Post("/sdapi/v1/txt2img", q.dump(), kJson);
        ASSERT_TRUE(r);
        ASSERT_EQ(r->status, 200) << name << ": " << r->body;
        EXPECT_THAT(json::parse(body_json(r)["info"].get<std::string>())["infotexts"][0].get<std::string>(), HasSubstr(want));
    }
    // The legacy sampler_index field and an explicit scheduler.
    json q = tiny_txt2img(3);
    q.erase("sampler_name");
    q["sampler_index"] = "Euler";
    q["scheduler"] = "Karras";
    r = c->Post("/sdapi/v1/txt2img", q.dump(), kJson);
    ASSERT_TRUE(r);
    ASSERT_EQ(r->status, 200) << r->body;
    EXPECT_THAT(json::parse(body_json(r)["info"].get<std::string>())["infotexts"][0].get<std::string>(),
                HasSubstr("Sampler: Euler, Schedule type: Karras"));
}

TEST(ServerApi, Txt2ImgRejectsBadInput) {
    TestServer ts;
    auto c = ts.client();
    struct Bad {
        std::string body;
        int status;
        std::string message;
    };
    auto with = [](const char* key, json v) {
        json j = tiny_txt2img();
        j[key] = std::move(v);
        return j.dump();
    };
    json deep = json::array();
    for (int i = 0; i < 100; ++i) deep = json::array({deep});
    json deep_body = tiny_txt2img();
    deep_body["x"] = deep;
    const std::vector<Bad> cases = {
        {"{\"prompt\": \"x\"", 400, "invalid JSON"},
        {"", 400, "body is empty"},
        {"[1, 2]", 400, "must be a JSON object"},
        {"\"text\"", 400, "must be a JSON object"},
        {with("steps", "20"), 400, "field 'steps' must be an integer, got a string"},
        {with("steps", 2.5), 400, "field 'steps' must be an integer"},
        {with("steps", 0), 400, "field 'steps' must be in 1..150"},
        {with("steps", 100000), 400, "field 'steps' must be in 1..150"},
        {with("cfg_scale", "high"), 400, "field 'cfg_scale' must be a number"},
        {with("prompt", 42), 400, "field 'prompt' must be a string"},
        {with("width", 65), 400, "multiples of 8"},
        {with("width", 100000), 400, "field 'width' must be in 8..2048"},
        {with("width", 1e300), 400, "field 'width'"},
        {with("batch_size", 1000), 400, "field 'batch_size' must be in 1..16"},
        {with("n_iter", -1), 400, "field 'n_iter'"},
        {with("sampler_name", "Euler b"), 400, "Euler b"},
        {with("scheduler", "wobbly"), 400, "unknown schedule 'wobbly'"},
        {with("override_settings", "tiny"), 400, "'override_settings' must be an object"},
        {with("override_settings", {{"sd_model_checkpoint", "missing.safetensors"}}), 404, "model 'missing.safetensors' not found"},
        {with("override_settings", {{"sd_model_checkpoint", "../../../etc/passwd"}}), 400, "not a model name"},
        {with("override_settings", {{"sd_model_checkpoint", "/etc/passwd"}}), 400, "not a model name"},
        {with("override_settings", {{"sd_model_checkpoint", "sub/../tiny.safetensors"}}), 400, "not a model name"},
        {with("override_settings", {{"sd_model_checkpoint", "..\\tiny.safetensors"}}), 400, "not a model name"},
        {with("override_settings", {{"sd_model_checkpoint", "notes.txt"}}), 404, "not found"},
        {with("override_settings", {{"sd_model_checkpoint", "broken"}}), 500, "cannot load model 'broken.safetensors'"},
        {with("prompt", std::string(20000, 'a')), 400, "field 'prompt' is 20000 bytes long (limit 16384)"},
        {deep_body.dump(), 400, "nested deeper"},
    };
    for (const Bad& b : cases) {
        auto r = c->Post("/sdapi/v1/txt2img", b.body, kJson);
        ASSERT_TRUE(r) << b.body.substr(0, 200);
        EXPECT_EQ(r->status, b.status) << b.body.substr(0, 200) << " -> " << r->body;
        EXPECT_THAT(error_message(r), HasSubstr(b.message)) << b.body.substr(0, 200);
    }
    // Over the body limit (4 MiB in tests): 413 with a JSON error.
    auto r = c->Post("/sdapi/v1/txt2img", std::string(5u << 20, ' '), kJson);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 413);
    EXPECT_THAT(error_message(r), HasSubstr("over this server's limit of 4194304 bytes (--max-body-mb)"));
    // The server is still fine, and the broken model did not stay "loaded".
    r = c->Post("/sdapi/v1/txt2img", tiny_txt2img().dump(), kJson);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 200);
    const auto st = ts.server().queue().stats();
    EXPECT_EQ(std::count(st.loaded.begin(), st.loaded.end(), "broken.safetensors"), 0);
    EXPECT_GE(st.failed, 1u);
}

TEST(ServerApi, Img2Img) {
    TestServer ts;
    auto c = ts.client();
    auto r = c->Post("/sdapi/v1/txt2img", tiny_txt2img(11).dump(), kJson);
    ASSERT_TRUE(r);
    ASSERT_EQ(r->status, 200);
    const std::string init = body_json(r)["images"][0];
    json req = tiny_txt2img(12);
    req["init_images"] = json::array({"data:image/png;base64," + init});
    req["denoising_strength"] = 0.5;
    req["steps"] = 4;
    req["resize_mode"] = 0;
    r = c->Post("/sdapi/v1/img2img", req.dump(), kJson);
    ASSERT_TRUE(r);
    ASSERT_EQ(r->status, 200) << r->body;
    json j = body_json(r);
    EXPECT_TRUE(j["parameters"]["init_images"].is_null());  // not echoed back
    PngText text;
    EXPECT_EQ(decode_b64_png(j["images"][0], &text).width, 64);
    EXPECT_THAT(param(text, "parameters"), HasSubstr("Denoising strength: 0.5"));

    // A 32x32 init image is resized to the requested 64x64.
    Image small;
    small.width = small.height = 32;
    small.pixels.assign(32 * 32 * 3, 128);
    req["init_images"] = json::array({png_b64(small)});
    r = c->Post("/sdapi/v1/img2img", req.dump(), kJson);
    ASSERT_TRUE(r);
    ASSERT_EQ(r->status, 200) << r->body;
    EXPECT_EQ(decode_b64_png(body_json(r)["images"][0]).width, 64);

    // A PNG header claiming 100000 x 100000 pixels is refused before decoding.
    std::vector<uint8_t> bomb = encode_png(small);
    for (int k : {16, 20}) {
        bomb[k] = 0x00;
        bomb[k + 1] = 0x01;
        bomb[k + 2] = 0x86;
        bomb[k + 3] = 0xa0;  // 100000
    }
    struct Bad {
        json init;
        std::string message;
        int status = 400;
    };
    for (const Bad& b : std::vector<Bad>{
             {json(), "needs 'init_images'"},
             {json::array(), "non-empty list"},
             {json::array({5}), "init_images[0]' must be a base64 string"},
             {json::array({"@@@@"}), "invalid base64"},
             {json::array({base64_encode((const uint8_t*)"hello world", 11)}), "not a PNG or JPEG"},
             {json::array({"data:image/png,abc"}), "data URL"},
             {json::array({base64_encode(bomb.data(), bomb.size())}), "100000x100000 pixels, over this server's limit"},
         }) {
        json q = req;
        if (b.init.is_null()) q.erase("init_images");
        else q["init_images"] = b.init;
        r = c->Post("/sdapi/v1/img2img", q.dump(), kJson);
        ASSERT_TRUE(r);
        EXPECT_EQ(r->status, b.status) << b.init.dump().substr(0, 100);
        EXPECT_THAT(error_message(r), HasSubstr(b.message)) << b.init.dump().substr(0, 100);
    }
    json q = req;
    q["denoising_strength"] = 1.5;
    r = c->Post("/sdapi/v1/img2img", q.dump(), kJson);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 400);
    EXPECT_THAT(error_message(r), HasSubstr("denoising_strength"));
    q = req;
    q["mask"] = png_b64(small);  // inpainting: tests/server/test_server_inpaint.cpp
    r = c->Post("/sdapi/v1/img2img", q.dump(), kJson);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 200) << r->body;
    EXPECT_TRUE(body_json(r)["parameters"]["mask"].is_null());  // not echoed back
}

TEST(ServerApi, OpenAiImagesGenerations) {
    TestServer ts;
    auto c = ts.client();
    json req = {{"prompt", "a lighthouse"}, {"n", 2}, {"size", "64x64"}, {"response_format", "b64_json"},
                {"model", "dall-e-3"}, {"quality", "standard"}, {"user", "someone"}, {"steps", 2}, {"seed", 5}};
    auto r = c->Post("/v1/images/generations", req.dump(), kJson);
    ASSERT_TRUE(r);
    ASSERT_EQ(r->status, 200) << r->body;
    json j = body_json(r);
    EXPECT_GT(j["created"].get<int64_t>(), 1600000000);
    ASSERT_EQ(j["data"].size(), 2u);
    EXPECT_EQ(j["size"], "64x64");
    PngText text;
    EXPECT_EQ(decode_b64_png(j["data"][1]["b64_json"], &text).height, 64);
    EXPECT_THAT(param(text, "parameters"), HasSubstr("Seed: 6"));
    EXPECT_EQ(j["data"][0]["revised_prompt"], "a lighthouse");

    req["n"] = 1;
    req["response_format"] = "url";
    req["model"] = "sub/other.safetensors";
    r = c->Post("/v1/images/generations", req.dump(), kJson);
    ASSERT_TRUE(r);
    ASSERT_EQ(r->status, 200) << r->body;
    EXPECT_THAT(body_json(r)["data"][0]["url"].get<std::string>(), ::testing::StartsWith("data:image/png;base64,"));

    struct Bad {
        json patch;
        int status;
        std::string message;
    };
    for (const Bad& b : std::vector<Bad>{
             {{{"prompt", nullptr}}, 400, "'prompt' is required"},
             {{{"prompt", ""}}, 400, "'prompt' is required"},
             {{{"prompt", 3}}, 400, "field 'prompt' must be a string"},
             {{{"n", 0}}, 400, "field 'n' must be in 1..16"},
             {{{"n", "two"}}, 400, "field 'n' must be an integer"},
             {{{"size", "big"}}, 400, "WIDTHxHEIGHT"},
             {{{"size", "64x64x64"}}, 400, "WIDTHxHEIGHT"},
             {{{"size", "4096x4096"}}, 400, "limit"},
             {{{"size", "60x64"}}, 400, "multiples of 8"},
             {{{"response_format", "gif"}}, 400, "response_format"},
             {{{"output_format", "webp"}}, 400, "only \"png\""},
             {{{"model", "gpt-5-image-pro-max"}}, 404, "not found"},
             {{{"model", "../../x"}}, 400, "not a model name"},
         }) {
        json q = req;
        q.merge_patch(b.patch);
        if (b.patch.contains("prompt") && b.patch["prompt"].is_null()) q.erase("prompt");
        r = c->Post("/v1/images/generations", q.dump(), kJson);
        ASSERT_TRUE(r);
        EXPECT_EQ(r->status, b.status) << b.patch.dump();
        const json e = body_json(r);
        EXPECT_THAT(e["error"]["message"].get<std::string>(), HasSubstr(b.message)) << b.patch.dump();
        EXPECT_TRUE(e["error"]["type"].is_string());
    }
}

TEST(ServerApi, ApiKey) {
    ServerOptions o = test_options();
    o.api_key = "s3cret";
    TestServer ts(o);
    auto c = ts.client();
    // The page and the health check are public; everything else needs the key.
    auto r = c->Get("/");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 200);
    r = c->Get("/health");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 200);
    for (const char* path : {"/sdapi/v1/sd-models", "/v1/models", "/api/v1/info", "/api/v1/jobs", "/no/such/route"}) {
        r = c->Get(path);
        ASSERT_TRUE(r);
        EXPECT_EQ(r->status, 401) << path;
        EXPECT_THAT(error_message(r), HasSubstr("API key")) << path;
        EXPECT_EQ(r->get_header_value("WWW-Authenticate"), "Bearer");
    }
    r = c->Post("/sdapi/v1/txt2img", tiny_txt2img().dump(), kJson);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 401);
    const std::vector<httplib::Headers> wrong = {{{"Authorization", "Bearer s3cre"}},
                                                 {{"Authorization", "Bearer s3cret2"}},
                                                 {{"Authorization", "Bearer "}},
                                                 {{"X-API-Key", "nope"}},
                                                 {{"Authorization", "Basic " + base64_encode((const uint8_t*)"u:bad", 5)}},
                                                 {{"Authorization", "Basic !!!"}}};
    for (const auto& h : wrong) {
        r = c->Get("/sdapi/v1/sd-models", h);
        ASSERT_TRUE(r);
        EXPECT_EQ(r->status, 401) << h.begin()->second;
    }
    r = c->Get("/sdapi/v1/sd-models?api_key=wrong");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 401);
    const std::vector<httplib::Headers> right = {{{"Authorization", "Bearer s3cret"}},
                                                 {{"X-API-Key", "s3cret"}},
                                                 {{"Authorization", "Basic " + base64_encode((const uint8_t*)"user:s3cret", 11)}}};
    for (const auto& h : right) {
        r = c->Get("/sdapi/v1/sd-models", h);
        ASSERT_TRUE(r);
        EXPECT_EQ(r->status, 200) << h.begin()->second;
    }
    r = c->Get("/sdapi/v1/sd-models?api_key=s3cret");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 200);
    r = c->Post("/sdapi/v1/txt2img", {{"Authorization", "Bearer s3cret"}}, tiny_txt2img().dump(), kJson);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 200);
}

// nuance serve --type q8_0: every model the server loads is quantized as it loads (the same load options as the
// CLI's); generation works and differs from the float weights' image only by the quantization.
TEST(ServerApi, TypeQuantizesTheModelsItLoads) {
    auto image_of = [](ServerOptions o) {
        TestServer ts(o);
        auto c = ts.client();
        auto r = c->Post("/sdapi/v1/txt2img", tiny_txt2img(11).dump(), kJson);
        EXPECT_TRUE(r);
        if (!r) return std::string();
        EXPECT_EQ(r->status, 200) << r->body;
        const json j = body_json(r);
        return j.contains("images") && j["images"].size() == 1 ? j["images"][0].get<std::string>() : std::string();
    };
    ServerOptions o = test_options();
    const std::string plain = image_of(o);
    o.queue.load.weight_type = "q8_0";
    const std::string quantized = image_of(o);
    ASSERT_FALSE(plain.empty());
    ASSERT_FALSE(quantized.empty());
    EXPECT_NE(plain, quantized);
    EXPECT_EQ(image_of(test_options()), plain);  // (the same request on float weights: the same bytes)
}
