// Server building blocks without HTTP: base64, model-name resolution, latent previews, request parsing.
#include <gmock/gmock.h>

#include <cmath>

#include "model_store.h"
#include "request_parse.h"
#include "models/sd/sd_family.h"
#include "server/preview.h"
#include "server_fixture.h"

using namespace nuance;
using namespace nuance::server;
using namespace nuance::server::test;
using ::testing::HasSubstr;

namespace {

template <class F>
std::string error_of(F&& f) {
    try {
        f();
    } catch (const Error& e) {
        return e.what();
    }
    return "<no error>";
}

}  // namespace

TEST(ServerUnits, Base64RoundTripAndErrors) {
    // RFC 4648 test vectors.
    const std::vector<std::pair<std::string, std::string>> v = {
        {"f", "Zg=="}, {"fo", "Zm8="}, {"foo", "Zm9v"}, {"foob", "Zm9vYg=="}, {"fooba", "Zm9vYmE="}, {"foobar", "Zm9vYmFy"}};
    for (const auto& [plain, enc] : v) {
        EXPECT_EQ(base64_encode(plain), enc);
        const auto d = base64_decode(enc, "x");
        EXPECT_EQ(std::string(d.begin(), d.end()), plain);
        const std::string unpadded = enc.substr(0, enc.find('='));
        const auto d2 = base64_decode(unpadded, "x");
        EXPECT_EQ(std::string(d2.begin(), d2.end()), plain);
    }
    const auto d = base64_decode("data:image/png;base64,Zm9v\nYmFy", "x");
    EXPECT_EQ(std::string(d.begin(), d.end()), "foobar");
    EXPECT_THAT(error_of([] { base64_decode("Zm9v!", "init"); }), HasSubstr("init: invalid base64 character at offset 4"));
    EXPECT_THAT(error_of([] { base64_decode("Zg==Zg", "init"); }), HasSubstr("continues after '=' padding"));
    EXPECT_THAT(error_of([] { base64_decode("Z", "init"); }), HasSubstr("truncated"));
    EXPECT_THAT(error_of([] { base64_decode("", "init"); }), HasSubstr("empty"));
    EXPECT_THAT(error_of([] { base64_decode("data:image/png,Zm9v", "init"); }), HasSubstr("data URL"));
}

TEST(ServerUnits, ModelStoreResolvesOnlyListedNames) {
    ModelStore s("", models_dir().string());
    const auto list = s.list();
    ASSERT_EQ(list.size(), 3u);
    EXPECT_EQ(list[0].name, "broken.safetensors");
    EXPECT_EQ(list[1].name, "sub/other.safetensors");
    EXPECT_EQ(list[2].name, "tiny.safetensors");
    EXPECT_EQ(s.resolve("tiny.safetensors").path, (models_dir() / "tiny.safetensors").string());
    EXPECT_EQ(s.resolve("tiny").name, "tiny.safetensors");
    EXPECT_EQ(s.resolve("sub/other").name, "sub/other.safetensors");
    EXPECT_EQ(s.resolve("other").name, "sub/other.safetensors");            // unique bare name
    EXPECT_EQ(s.resolve("tiny.safetensors [0123456789]").name, "tiny.safetensors");  // A1111 title
    EXPECT_EQ(s.default_model().name, "broken.safetensors");                 // no -m: the first listed
    s.set_default("tiny");
    EXPECT_EQ(s.default_model().name, "tiny.safetensors");
    for (const char* bad : {"../tiny.safetensors", "sub/../tiny.safetensors", "/etc/passwd", "..", ".", "sub/./other",
                            "a\\b", "tiny\n", ""}) {
        EXPECT_THAT(error_of([&] { s.resolve(bad); }), ::testing::AnyOf(HasSubstr("not a model name"), HasSubstr("empty")))
            << bad;
    }
    EXPECT_THAT(error_of([&] { s.resolve("notes.txt"); }), HasSubstr("not found; available: broken.safetensors"));
    EXPECT_THAT(error_of([&] { s.resolve(std::string(2000, 'a')); }), HasSubstr("limit 1024"));
    try {
        s.resolve("missing");
        FAIL();
    } catch (const Error& e) {
        EXPECT_EQ(e.code(), ErrorCode::NotFound);
    }
    EXPECT_EQ(s.title(list[2]), "tiny.safetensors");
    s.set_hash("tiny.safetensors", "0123456789abcdef");
    EXPECT_EQ(s.title(list[2]), "tiny.safetensors [0123456789]");
    EXPECT_THAT(error_of([] { ModelStore("", "/nonexistent/models"); }), HasSubstr("is not a directory"));
    EXPECT_THAT(error_of([] { ModelStore("", ""); }), HasSubstr("no model"));
    ModelStore one((models_dir() / "tiny.safetensors").string(), "");
    ASSERT_EQ(one.list().size(), 1u);
    EXPECT_EQ(one.default_model().name, "tiny.safetensors");
    EXPECT_THAT(error_of([&] { one.resolve("other"); }), HasSubstr("not found"));
}

static LatentFormat sd_latents(SDFamily f) {
    LatentFormat lf;
    lf.rgb_factors = sd_latent_rgb_factors(f);
    return lf;
}

TEST(ServerUnits, LatentPreviewUsesTheA1111Coefficients) {
    // Latents [1, 4, 2, 3]: channel 0 = 1 at pixel (0, 0), everything else 0.
    std::vector<float> v(4 * 2 * 3, 0.0f);
    v[0] = 1.0f;
    const Tensor lat = Tensor::from_vector(v, {1, 4, 2, 3});
    const Image im = latent_preview(lat, sd_latents(SDFamily::SD1), 3);  // target 3 -> no upscale
    ASSERT_EQ(im.width, 3);
    ASSERT_EQ(im.height, 2);
    auto u8 = [](float s) { return (int)std::lround(std::clamp((s + 1.0f) * 0.5f, 0.0f, 1.0f) * 255.0f); };
    EXPECT_EQ(im.pixels[0], u8(0.298f));
    EXPECT_EQ(im.pixels[1], u8(0.207f));
    EXPECT_EQ(im.pixels[2], u8(0.208f));
    EXPECT_EQ(im.pixels[3], 128);  // zero latent -> mid grey
    const Image xl = latent_preview(lat, sd_latents(SDFamily::SDXL), 3);
    EXPECT_EQ(xl.pixels[0], u8(0.3448f));
    // Upscaled by an integer factor towards the target side (at most 8x).
    const Image big = latent_preview(lat, sd_latents(SDFamily::SD1), 256);
    EXPECT_EQ(big.width, 24);
    EXPECT_EQ(big.height, 16);
    EXPECT_EQ(big.pixels[0], im.pixels[0]);
    // Noisy samples are rescaled by 1/sqrt(1 + sigma^2).
    const Image noisy = progress_preview(Tensor::from_vector(std::vector<float>(24, 2.0f), {1, 4, 2, 3}), std::sqrt(3.0),
                                         nullptr, sd_latents(SDFamily::SD1), 3);
    EXPECT_EQ(noisy.pixels[0], u8(0.298f + 0.187f - 0.158f - 0.184f));
    // Other latent spaces (e.g. 16 channels) have no approximation.
    EXPECT_EQ(latent_preview(Tensor::zeros({1, 16, 2, 2}), sd_latents(SDFamily::SD1)).width, 0);
    EXPECT_EQ(latent_preview(Tensor::zeros({4}), sd_latents(SDFamily::SD1)).width, 0);
}

TEST(ServerUnits, RequestParsingDefaultsAndLimits) {
    Limits lim;
    ParsedRequest a = parse_a1111(json::object(), false, lim);
    EXPECT_EQ(a.params.width, 0);  // unset: the model's defaults fill them in (defaults.h)
    EXPECT_EQ(a.params.steps, 0);
    EXPECT_LT(a.params.cfg_scale, 0);
    EXPECT_EQ(a.params.sampler, "");
    EXPECT_GE(a.params.seed, 0);  // -1 resolved
    EXPECT_EQ(a.params.scheduler, "");
    EXPECT_FALSE(a.model);
    a = parse_a1111(json{{"override_settings", {{"sd_model_checkpoint", "m [abc]"}, {"CLIP_stop_at_last_layers", 2},
                                                {"randn_source", "CPU"}}},
                         {"scheduler", "Automatic"}, {"batch_size", 2}, {"n_iter", 3}},
                    false, lim);
    EXPECT_EQ(*a.model, "m [abc]");
    EXPECT_EQ(a.params.clip_skip, 2);
    EXPECT_EQ(a.params.rng, RngKind::Cpu);
    EXPECT_EQ(a.params.scheduler, "");
    EXPECT_EQ(a.params.batch_count, 6);
    EXPECT_THAT(error_of([&] { parse_a1111(json{{"batch_size", 8}, {"n_iter", 3}}, false, lim); }),
                HasSubstr("1..16 images, this one asks for 24"));
    EXPECT_THAT(error_of([&] { parse_a1111(json{{"override_settings", {{"randn_source", "NV"}}}}, false, lim); }),
                HasSubstr("randn_source"));
    lim.max_pixels = 256 * 256;
    EXPECT_THAT(error_of([&] { parse_a1111(json{{"width", 512}, {"height", 256}}, false, lim); }),
                HasSubstr("131072 pixels, over this server's limit of 65536"));

    ParsedRequest o = parse_openai(json{{"prompt", "x"}}, Limits{});
    EXPECT_EQ(o.params.width, 0);  // the model's default size
    EXPECT_EQ(o.response_format, "b64_json");
    o = parse_openai(json{{"prompt", "x"}, {"size", "768x512"}, {"model", "gpt-image-1"}}, Limits{});
    EXPECT_EQ(o.params.width, 768);
    EXPECT_EQ(o.params.height, 512);
    EXPECT_FALSE(o.model);

    ParsedRequest n = parse_native(json{{"seed", 5}, {"rng", "cpu"}, {"strength", 0.5}}, Limits{});
    EXPECT_EQ(n.params.seed, 5);
    EXPECT_EQ(n.params.rng, RngKind::Cpu);
    EXPECT_FALSE(n.params.init_image);
    EXPECT_THAT(error_of([] { parse_native(json{{"prompt", "x"}, {"cfg", 3}}, Limits{}); }),
                HasSubstr("unknown field 'cfg'; known fields:"));

    EXPECT_THAT(error_of([] { parse_json_object("{\"a\": 1,}"); }), HasSubstr("invalid JSON"));
    EXPECT_THAT(error_of([] { parse_json_object("null"); }), HasSubstr("got null"));
    std::string deep(100, '[');
    deep += std::string(100, ']');
    EXPECT_THAT(error_of([&] { parse_json_object("{\"a\": " + deep + "}"); }), HasSubstr("nested deeper than 32"));
}
