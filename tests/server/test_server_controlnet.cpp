// The sd-webui-controlnet API: units on txt2img/img2img (alwayson_scripts.controlnet.args), model_list from
// --controlnet-dir, module_list, detect; request errors name the unit field.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "control/preprocess.h"
#include "models/controlnet/controlnet_random.h"
#include "models/model_family.h"
#include "server_fixture.h"

using namespace nuance;
using namespace nuance::server;
using namespace nuance::server::test;
using ::testing::HasSubstr;

namespace {

const char* kJson = "application/json";

// A ControlNet folder for the fixture's tiny model (made once per process).
const fs::path& cn_dir() {
    static const fs::path d = [] {
        const fs::path dir = fs::path(NUANCE_SCRATCH_DIR) / "server_cn";
        fs::create_directories(dir);
        const auto m = load_model((models_dir() / "tiny.safetensors").string());
        write_random_controlnet(*m, (dir / "cn_canny.safetensors").string(), ControlNetLayout::Original, 3);
        std::ofstream(dir / "readme.txt") << "ignored";
        return dir;
    }();
    return d;
}

ServerOptions cn_options() {
    ServerOptions o = test_options();
    o.controlnet_dir = cn_dir().string();
    return o;
}

Image test_image() { return read_image(std::string(NUANCE_TEST_DATA) + "/control/canny_in_0.png"); }

json txt2img(const json& units) {
    return {{"prompt", "a red apple"}, {"steps", 2}, {"width", 64}, {"height", 64}, {"seed", 3},
            {"sampler_name", "Euler a"}, {"alwayson_scripts", {{"ControlNet", {{"args", units}}}}}};
}

}  // namespace

TEST(ServerControlNet, ListsModelsAndModulesAndDetects) {
    TestServer ts(cn_options());
    auto c = ts.client();
    auto r = c->Get("/controlnet/model_list");
    ASSERT_EQ(r->status, 200) << r->body;
    const json models = body_json(r)["model_list"];
    ASSERT_EQ(models.size(), 1u) << models.dump();
    EXPECT_THAT(models[0].get<std::string>(), ::testing::MatchesRegex(R"(cn_canny \[[0-9a-f]{8}\])"));
    r = c->Get("/controlnet/module_list");
    ASSERT_EQ(r->status, 200);
    const json mods = body_json(r);
    EXPECT_EQ(mods["module_list"][0], "none");
    EXPECT_EQ(mods["module_list"][1], "canny");
    EXPECT_EQ(mods["module_detail"]["canny"]["sliders"][1]["name"], "Canny Low Threshold");
    EXPECT_EQ(body_json(c->Get("/controlnet/version"))["version"], 2);
    const json det = {{"controlnet_module", "canny"}, {"controlnet_input_images", {png_b64(test_image())}},
                      {"controlnet_threshold_a", 100}, {"controlnet_threshold_b", 200}};
    r = c->Post("/controlnet/detect", det.dump(), kJson);
    ASSERT_EQ(r->status, 200) << r->body;
    const Image got = decode_b64_png(body_json(r)["images"][0].get<std::string>());
    const Image want = canny(test_image(), 100, 200);
    ASSERT_EQ(got.width, want.width);
    for (size_t i = 0; i < want.pixels.size(); ++i) ASSERT_EQ(got.pixels[i * 3], want.pixels[i]) << i;
    EXPECT_EQ(body_json(r)["info"], "Success");
    r = c->Post("/controlnet/detect", json{{"controlnet_module", "openpose"}, {"controlnet_input_images", {png_b64(test_image())}}}.dump(), kJson);
    EXPECT_EQ(r->status, 400);
    EXPECT_THAT(error_message(r), HasSubstr("detect: unknown preprocessor 'openpose'"));
}

TEST(ServerControlNet, Txt2imgWithAUnit) {
    TestServer ts(cn_options());
    auto c = ts.client();
    const std::string name = body_json(c->Get("/controlnet/model_list"))["model_list"][0];
    auto plain = c->Post("/sdapi/v1/txt2img", txt2img(json::array()).dump(), kJson);
    ASSERT_EQ(plain->status, 200) << plain->body;
    const json unit = {{"enabled", true}, {"image", png_b64(test_image())}, {"module", "canny"}, {"model", name},
                       {"weight", 0.8}, {"guidance_start", 0.0}, {"guidance_end", 1.0},
                       {"control_mode", "My prompt is more important"}, {"processor_res", 64}, {"threshold_a", 100},
                       {"threshold_b", 200}, {"resize_mode", "Crop and Resize"}, {"pixel_perfect", false}};
    auto r = c->Post("/sdapi/v1/txt2img", txt2img(json::array({unit, {{"enabled", false}}})).dump(), kJson);
    ASSERT_EQ(r->status, 200) << r->body;
    const json j = body_json(r);
    const json info = json::parse(j["info"].get<std::string>());
    EXPECT_THAT(info["infotexts"][0].get<std::string>(),
                HasSubstr("ControlNet 0: \"Module: canny, Model: cn_canny, Weight: 0.8, Guidance Start: 0, Guidance "
                          "End: 1, Control Mode: My prompt is more important\""));
    EXPECT_NE(j["images"][0], body_json(plain)["images"][0]);
    // img2img takes the same units; the extension's {"image", "mask"} object form too
    json u2 = unit;
    u2.erase("image");
    u2["input_image"] = {{"image", png_b64(test_image())}, {"mask", nullptr}};
    json b = txt2img(json::array({u2}));
    b["init_images"] = {png_b64(test_image())};
    b["denoising_strength"] = 0.5;
    r = c->Post("/sdapi/v1/img2img", b.dump(), kJson);
    ASSERT_EQ(r->status, 200) << r->body;
}

TEST(ServerControlNet, BadUnitsAreNamed) {
    TestServer ts(cn_options());
    auto c = ts.client();
    const json ok = {{"image", png_b64(test_image())}, {"model", "cn_canny"}};
    auto with = [&](const json& extra) {
        json u = ok;
        u.update(extra);
        return u;
    };
    struct Bad {
        json unit;
        int status;
        std::string msg;
    };
    const std::vector<Bad> bad = {
        {{{"model", "cn_canny"}}, 400,
         "alwayson_scripts.controlnet.args[0]: no control image (send 'image' or 'input_image' as a base64 PNG/JPEG)"},
        {with({{"weight", 12}}), 400, "alwayson_scripts.controlnet.args[0].weight must be in 0..10, got 12"},
        {with({{"weight", "x"}}), 400, "alwayson_scripts.controlnet.args[0].weight must be a number, got a string"},
        {with({{"guidance_start", 0.8}, {"guidance_end", 0.2}}), 400,
         "alwayson_scripts.controlnet.args[0]: guidance_start 0.8 must be below guidance_end 0.2"},
        {with({{"control_mode", "Loud"}}), 400,
         "alwayson_scripts.controlnet.args[0].control_mode: unknown control mode 'Loud'"},
        {with({{"resize_mode", 7}}), 400, "alwayson_scripts.controlnet.args[0].resize_mode: unknown resize mode '7'"},
        {with({{"module", "depth_midas"}}), 400,
         "alwayson_scripts.controlnet.args[0]: unknown preprocessor 'depth_midas'"},
        {with({{"mask", "abcd"}}), 400,
         "alwayson_scripts.controlnet.args[0].mask: ControlNet masks (inpaint units) are not supported"},
        {with({{"image", "!!!"}}), 400, "alwayson_scripts.controlnet.args[0].image"},
        {with({{"model", "control_v11p_sd15_openpose [cab727d4]"}}), 404,
         "alwayson_scripts.controlnet.args: model 'control_v11p_sd15_openpose [cab727d4]' is not in the ControlNet "
         "folder (GET /controlnet/model_list; available: cn_canny ["},
    };
    for (const auto& b : bad) {
        auto r = c->Post("/sdapi/v1/txt2img", txt2img(json::array({b.unit})).dump(), kJson);
        ASSERT_TRUE(r);
        EXPECT_EQ(r->status, b.status) << b.unit.dump().substr(0, 200) << " " << r->body;
        EXPECT_THAT(error_message(r), HasSubstr(b.msg));
    }
    json body = txt2img(json::array());
    body["alwayson_scripts"] = {{"controlnet", {{"args", 5}}}};
    auto r = c->Post("/sdapi/v1/txt2img", body.dump(), kJson);
    EXPECT_EQ(r->status, 400);
    EXPECT_THAT(error_message(r), HasSubstr("alwayson_scripts.controlnet.args must be a list of units, got a number"));
    // no --controlnet-dir: units are refused, saying how to enable them
    TestServer plain;
    r = plain.client()->Post("/sdapi/v1/txt2img", txt2img(json::array({ok})).dump(), kJson);
    EXPECT_EQ(r->status, 400);
    EXPECT_THAT(error_message(r), HasSubstr("this server has no ControlNet folder (start it with --controlnet-dir DIR)"));
    EXPECT_EQ(body_json(plain.client()->Get("/controlnet/model_list"))["model_list"], json::array());
}
