// HTTP server: the A1111 hires-fix fields (txt2img and the native jobs), their checks, and `serve --taesd` previews
// (the job preview and /sdapi/v1/progress current_image decoded by the tiny autoencoder of the model's latent space).
#include <gmock/gmock.h>

#include <chrono>

#include "models/taesd/taesd.h"
#include "../test_util.h"
#include "server_fixture.h"

using namespace nuance;
using namespace nuance::server;
using namespace nuance::server::test;
using ::testing::HasSubstr;

namespace {

const char* kJson = "application/json";
const std::string kTaesd = std::string(NUANCE_TEST_DATA) + "/golden/taesd";

json txt2img() {
    return {{"prompt", "a red apple"}, {"steps", 2}, {"width", 64}, {"height", 64}, {"seed", 3}, {"sampler_name", "Euler"}};
}

json run_job(httplib::Client& c, const json& body) {
    auto r = c.Post("/api/v1/jobs", body.dump(), kJson);
    EXPECT_TRUE(r && r->status == 202) << (r ? r->body : "no response");
    if (!r || r->status != 202) return json();
    const std::string id = body_json(r)["id"];
    const auto t0 = std::chrono::steady_clock::now();
    while (std::chrono::steady_clock::now() - t0 < std::chrono::seconds(120)) {
        const json st = body_json(c.Get(("/api/v1/jobs/" + id + "?images=0").c_str()));
        const std::string s = st.value("status", "");
        if (s == "done" || s == "failed" || s == "cancelled") return body_json(c.Get(("/api/v1/jobs/" + id).c_str()));
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    ADD_FAILURE() << "job " << id << " did not finish";
    return json();
}

}  // namespace

TEST(ServerHires, A1111Txt2ImgFields) {
    TestServer ts;
    auto c = ts.client();
    json req = txt2img();
    req["enable_hr"] = true;
    req["hr_scale"] = 1.5;
    req["hr_second_pass_steps"] = 2;
    req["denoising_strength"] = 0.5;
    req["hr_upscaler"] = "Latent (nearest)";
    auto r = c->Post("/sdapi/v1/txt2img", req.dump(), kJson);
    ASSERT_TRUE(r);
    ASSERT_EQ(r->status, 200) << r->body;
    const json j = body_json(r);
    const json info = json::parse(j["info"].get<std::string>());
    EXPECT_EQ(info["denoising_strength"], 0.5);
    PngText text;
    const Image img = decode_b64_png(j["images"][0], &text);
    EXPECT_EQ(img.width, 96);
    EXPECT_EQ(img.height, 96);
    EXPECT_THAT(param(text, "parameters"),
                HasSubstr("Size: 64x64, Model hash: "));
    EXPECT_THAT(param(text, "parameters"),
                HasSubstr("Denoising strength: 0.5, Hires upscale: 1.5, Hires steps: 2, Hires upscaler: Latent (nearest)"));
    // enable_hr false (or absent): the hr_* fields are read and ignored, as A1111 does.
    req["enable_hr"] = false;
    r = c->Post("/sdapi/v1/txt2img", req.dump(), kJson);
    ASSERT_TRUE(r && r->status == 200);
    EXPECT_EQ(decode_b64_png(body_json(r)["images"][0]).width, 64);
}

TEST(ServerHires, NativeJobHiresAndProgress) {
    TestServer ts;
    auto c = ts.client();
    json req = {{"prompt", "a red apple"}, {"steps", 2}, {"width", 64}, {"height", 64}, {"seed", 3},
                {"enable_hr", true}, {"hr_resize_x", 128}, {"hr_upscaler", "lanczos"}};
    const json st = run_job(*c, req);
    ASSERT_EQ(st.value("status", ""), "done") << st.dump().substr(0, 400);
    EXPECT_EQ(st["total"], 3);  // 2 first-pass steps + int(2 * 0.7) = 1 hires step
    EXPECT_EQ(st["step"], 3);
    EXPECT_EQ(st["images"][0]["width"], 128);
    EXPECT_THAT(st["images"][0]["infotext"].get<std::string>(), HasSubstr("Hires resize: 128x0, Hires upscaler: Lanczos"));
}

TEST(ServerHires, RefusesBadFields) {
    TestServer ts;
    auto c = ts.client();
    struct Case {
        json patch;
        std::string message;
    } cases[] = {
        {{{"enable_hr", true}, {"hr_upscaler", "R-ESRGAN 4x+"}},
         "field 'hr_upscaler': unknown hires upscaler 'R-ESRGAN 4x+' (known: latent, "},
        {{{"enable_hr", true}, {"hr_scale", 20}}, "field 'hr_scale' must be in 1..8, got 20"},
        {{{"enable_hr", "yes"}}, "field 'enable_hr' must be true or false, got a string"},
        {{{"enable_hr", true}, {"hr_resize_x", -8}}, "field 'hr_resize_x' must be in 0.."},
        {{{"enable_hr", true}, {"denoising_strength", 0}}, "field 'denoising_strength' must be in (0, 1] for the hires fix, got 0"},
        {{{"enable_hr", true}, {"width", 1024}, {"height", 1024}, {"hr_scale", 4}},
         "hires target 4096x4096 is over this server's limit of 2048 pixels per side"},
    };
    for (const auto& k : cases) {
        json req = txt2img();
        for (auto it = k.patch.begin(); it != k.patch.end(); ++it) req[it.key()] = it.value();
        auto r = c->Post("/sdapi/v1/txt2img", req.dump(), kJson);
        ASSERT_TRUE(r);
        EXPECT_EQ(r->status, 400) << k.patch.dump();
        EXPECT_THAT(error_message(r), HasSubstr(k.message)) << k.patch.dump();
    }
}

// serve --taesd: previews are the tiny autoencoder's full-size decode (64x64 for 8x8 latents), not the 4x-upscaled
// colour projection (32x32 with preview_side 32); a TAE of another latent space falls back to the projection.
TEST(ServerTaesd, PreviewsDecodedByTheTinyAutoencoder) {
    ServerOptions o = test_options();
    o.queue.preview_side = 32;
    {
        TestServer ts(o);
        auto c = ts.client();
        const json st = run_job(*c, {{"prompt", "a red apple"}, {"steps", 2}, {"width", 64}, {"height", 64}});
        ASSERT_EQ(st.value("status", ""), "done");
        EXPECT_EQ(decode_b64_png(st["preview"]).width, 32);
    }
    o.queue.taesd = TinyAutoencoder::load(kTaesd + "/taesd_decoder.safetensors", "--taesd");
    {
        TestServer ts(o);
        auto c = ts.client();
        const json st = run_job(*c, {{"prompt", "a red apple"}, {"steps", 2}, {"width", 64}, {"height", 64}});
        ASSERT_EQ(st.value("status", ""), "done");
        EXPECT_EQ(decode_b64_png(st["preview"]).width, 64);
    }
    o.queue.taesd = TinyAutoencoder::load(kTaesd + "/taef1_decoder.safetensors", "--taesd");
    {
        TestServer ts(o);
        auto c = ts.client();
        const json st = run_job(*c, {{"prompt", "a red apple"}, {"steps", 2}, {"width", 64}, {"height", 64}});
        ASSERT_EQ(st.value("status", ""), "done");
        EXPECT_EQ(decode_b64_png(st["preview"]).width, 32);
    }
}

// A file that is not a tiny autoencoder stops `serve` before it listens.
TEST(ServerTaesd, ServeRefusesABadTaesdFile) {
    const nuance::test::CliRun r = nuance::test::run_cli("serve --port 0 --models-dir " + models_dir().string() +
                                                         " --taesd " + kTaesd + "/io.safetensors");
    EXPECT_NE(r.code, 0) << r.out;
    EXPECT_THAT(r.out, HasSubstr(kTaesd + "/io.safetensors is not a tiny autoencoder (TAESD/TAESDXL/TAESD3/TAEF1)"));
    EXPECT_THAT(r.out, ::testing::Not(HasSubstr("listening")));
}
