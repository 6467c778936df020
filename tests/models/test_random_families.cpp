// make-random's transformer families and component files (models/random_families.h) and the streaming writer
// (models/random_writer.h): the key/shape lists equal what the layout converters make from the module trees (so the
// full-size files have the layout people download), the tiny files load and run through `nuance bench`, the values
// are seeded per tensor, and bad requests are errors naming the value.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "../test_util.h"
#include "io/weights.h"
#include "models/flux/flux_original.h"
#include "models/flux/flux_transformer.h"
#include "models/mmdit/mmdit.h"
#include "models/mmdit/mmdit_original.h"
#include "models/mmdit/mmdit_presets.h"
#include "models/random_families.h"

namespace nuance {
namespace {

namespace fs = std::filesystem;
using test::error_of;
using ::testing::HasSubstr;
using KeyShapes = std::map<std::string, Shape>;

std::string temp_path(const std::string& name) { return (fs::path(NUANCE_SCRATCH_DIR) / name).string(); }

KeyShapes listed(const RandomFamilyOptions& o) {
    KeyShapes m;
    for (const RandomTensor& t : random_family_tensors(o)) EXPECT_TRUE(m.emplace(t.key, t.shape).second) << t.key;
    return m;
}

template <class Map>
KeyShapes shapes_of(const Map& tensors) {
    KeyShapes m;
    for (const auto& [k, v] : tensors) m[k] = v.shape();
    return m;
}

RandomFamilyOptions opts(const std::string& family, bool tiny = true) {
    RandomFamilyOptions o;
    o.family = family;
    o.tiny = tiny;
    o.dtype = DType::F32;
    return o;
}

TEST(RandomFamilies, SD3ListIsWhatTheOriginalKeyMapMakes) {
    for (int64_t depth : {0, 2}) {
        MMDiTConfig c = mmdit_preset("tiny");
        if (depth) c.depth = depth;
        std::erase_if(c.dual_attention_layers, [&](int64_t b) { return b >= c.depth; });
        SD3Transformer2DModel m(c);
        init_random(m, 1);
        const auto sd = state_dict(m);
        RandomFamilyOptions o = opts("sd35-medium");
        o.depth = depth;
        EXPECT_EQ(listed(o), shapes_of(mmdit_to_original({sd.begin(), sd.end()}))) << "depth " << depth;
    }
}

TEST(RandomFamilies, FullSizeSD35ListsHaveTheReleasedParameterCounts) {
    auto params = [](const std::string& fam) {
        int64_t n = 0;
        for (const RandomTensor& t : random_family_tensors(opts(fam, false))) {
            int64_t e = 1;
            for (int64_t d : t.shape) e *= d;
            n += e;
        }
        return n;
    };
    // The module trees of the presets (shapes only, nothing allocated) count the same parameters.
    for (const auto& [fam, preset] : {std::pair<std::string, std::string>{"sd35-medium", "sd3.5-medium"},
                                      {"sd35-large", "sd3.5-large"}}) {
        SD3Transformer2DModel m(mmdit_preset(preset));
        int64_t n = 0;
        for_each_param(m, [&](const std::string&, Param& p) {
            int64_t e = 1;
            for (int64_t d : p.shape) e *= d;
            n += e;
        });
        EXPECT_EQ(params(fam), n) << fam;
    }
    EXPECT_NEAR(params("sd35-large") / 1e9, 8.15, 0.01);  // "8.1 B" with its 192^2 x 2432 pos_embed
    EXPECT_NEAR(params("flux-dev") / 1e9, 11.90, 0.01);
    EXPECT_NEAR(params("flux-schnell") / 1e9, 11.90, 0.01);
    EXPECT_NEAR(params("dit-xl-2-256") / 1e6, 675.1, 0.5);  // DiT paper: 675 M (plus the fixed pos_embed)
    EXPECT_NEAR(params("t5xxl") / 1e9, 4.76, 0.01);
}

TEST(RandomFamilies, FluxListIsWhatTheBflKeyMapMakes) {
    for (const bool dev : {true, false}) {
        // The tiny widths random_families.cpp uses (the flux family tests').
        FluxConfig c;
        c.hidden = 32;
        c.heads = 2;
        c.head_dim = 16;
        c.mlp_hidden = 128;
        c.joint_attention_dim = 32;
        c.pooled_projection_dim = 24;
        c.num_double = c.num_single = 2;
        c.axes_dims_rope = {4, 6, 6};
        c.guidance_embeds = dev;
        FluxTransformer2DModel m(c);
        init_random(m, 1);
        const auto sd = state_dict(m);
        EXPECT_EQ(listed(opts(dev ? "flux-dev" : "flux-schnell")), shapes_of(flux_diffusers_to_bfl({sd.begin(), sd.end()})));
    }
}

// The tiny files run end to end: all-in-one SD3.5, Flux with its split files, DiT with the SD VAE (JSON lines).
TEST(RandomFamilies, TinyFilesRunInBench) {
    const std::string N = " make-random --tiny --dtype f32 -o ";
    auto make = [&](const std::string& fam, const std::string& extra = "") {
        const std::string p = temp_path("rf_" + fam + ".safetensors");
        const test::CliRun r = test::run_cli(N + p + " --family " + fam + extra);
        EXPECT_EQ(r.code, 0) << r.out;
        return p;
    };
    auto parts_of = [](const std::string& out) {
        std::map<std::string, nlohmann::json> parts;
        std::istringstream in(out);
        for (std::string line; std::getline(in, line);)
            if (!line.empty() && line[0] == '{') {
                const nlohmann::json j = nlohmann::json::parse(line);
                parts[j.at("part").get<std::string>()] = j;
            }
        return parts;
    };
    const std::string sd35 = make("sd35-medium", " --with-text-encoders");
    test::CliRun b = test::run_cli(" bench --json --res 32 --steps 1 --repeat 1 -t 1 --precision fp32 -m " + sd35);
    ASSERT_EQ(b.code, 0) << b.out;
    auto parts = parts_of(b.out);
    for (const char* p : {"load", "text_encode", "t5_encode", "denoise_step_first", "denoise_step", "vae_decode", "summary"})
        EXPECT_TRUE(parts.count(p)) << p << "\n" << b.out;
    EXPECT_EQ(parts["t5_encode"]["tokens"], 256);
    EXPECT_EQ(parts["denoise_step"]["batch"], 2);  // one CFG step
    EXPECT_EQ(parts["denoise_step"]["impl"], "nuance");
    EXPECT_EQ(parts["denoise_step"]["family"], "sd3");
    EXPECT_EQ(parts["denoise_step"]["res"], 32);
    EXPECT_GT(parts["summary"]["weights_mb"].get<double>(), 8.0);  // 2.4 M F32 parameters
    EXPECT_GT(parts["summary"]["peak_rss_mb"].get<double>(), 0.0);

    const std::string flux = make("flux-dev");
    const std::string clip = make("clip-l"), t5 = make("t5xxl"), ae = make("vae16");
    b = test::run_cli(" bench --json --res 32 --steps 1 --repeat 1 -t 1 --precision fp32 --parts t5,step -m " + flux +
                      " --clip-l " + clip + " --t5xxl " + t5 + " --vae " + ae);
    ASSERT_EQ(b.code, 0) << b.out;
    parts = parts_of(b.out);
    EXPECT_EQ(parts["t5_encode"]["tokens"], 512);
    EXPECT_EQ(parts["denoise_step"]["batch"], 1);  // distilled guidance: no CFG batch
    EXPECT_EQ(parts["denoise_step"]["variant"], "flux-dev");
    EXPECT_FALSE(parts.count("text_encode"));
    EXPECT_FALSE(parts.count("vae_decode"));

    const std::string dit = make("dit-xl-2-256"), vae = make("vae");
    b = test::run_cli(" bench --res 16 --steps 1 --repeat 1 -t 1 --precision fp32 -m " + dit + " --vae " + vae);
    ASSERT_EQ(b.code, 0) << b.out;
    EXPECT_THAT(b.out, HasSubstr("\ndenoise_step median_s="));
    EXPECT_THAT(b.out, HasSubstr("\nweights_mb="));

    const test::CliRun bad = test::run_cli(" bench --parts step,decode -m " + dit + " --vae " + vae);
    EXPECT_EQ(bad.code, 2) << bad.out;
    EXPECT_THAT(bad.out, HasSubstr("--parts: unknown part 'decode' in 'step,decode' (valid: text, t5, step, vae"));
}

TEST(RandomFamilies, ValuesAreSeededPerTensorAndNormsAreOnes) {
    const std::string a = temp_path("rf_seed_a.safetensors"), b = temp_path("rf_seed_b.safetensors");
    std::vector<RandomTensor> l{{"x.weight", {64, 32}, {}}, {"x.norm.weight", {32}, {}}, {"x.bias", {64}, {}}};
    EXPECT_EQ(write_random_safetensors(a, l, DType::F32, 3), 64 * 32 + 32 + 64);
    std::reverse(l.begin(), l.end());
    l.push_back({"y.weight", {5, 5}, {}});
    write_random_safetensors(b, l, DType::F32, 3);
    const WeightFile fa = load_weights(a), fb = load_weights(b);
    for (const char* k : {"x.weight", "x.norm.weight", "x.bias"}) {
        const Tensor ta = fa.tensors.at(k), tb = fb.tensors.at(k);
        ASSERT_EQ(ta.shape(), tb.shape()) << k;
        EXPECT_EQ(std::memcmp(ta.raw(), tb.raw(), ta.nbytes()), 0) << k;
    }
    const Tensor w = fa.tensors.at("x.weight");
    double sq = 0;
    for (int64_t i = 0; i < w.numel(); ++i) sq += (double)w.data<float>()[i] * w.data<float>()[i];
    EXPECT_NEAR(std::sqrt(sq / w.numel()), 1.0 / std::sqrt(32.0), 0.01);  // N(0, 1/fan_in)
    for (int64_t i = 0; i < 32; ++i) EXPECT_EQ(fa.tensors.at("x.norm.weight").data<float>()[i], 1.0f);
    EXPECT_EQ(random_init_of("a.ln_q.weight", {64}), RandomInit::Ones);
    EXPECT_EQ(random_init_of("a.norm.query_norm.scale", {64}), RandomInit::Ones);
    EXPECT_EQ(random_init_of("a.layer_norm.bias", {64}), RandomInit::Small);
    EXPECT_EQ(random_init_of("a.norm1.linear.weight", {6, 4}), RandomInit::FanIn);
    // Another seed, other values.
    write_random_safetensors(b, l, DType::BF16, 4);
    const Tensor w4 = load_weights(b).tensors.at("x.weight").to(DType::F32);
    EXPECT_NE(std::memcmp(w4.raw(), w.raw(), w.nbytes()), 0);
}

TEST(RandomFamilies, BadRequestsAreErrorsNamingTheValue) {
    const std::string p = temp_path("rf_bad.safetensors");
    EXPECT_THAT(error_of([&] { write_random_safetensors(p, {{"a", {2, 0}, {}}}, DType::F32, 0); }),
                HasSubstr("make-random '" + p + "': tensor 'a' has shape [2, 0]"));
    EXPECT_THAT(error_of([&] { write_random_safetensors(p, {{"a", {2}, {}}, {"a", {3}, {}}}, DType::F32, 0); }),
                HasSubstr("duplicate tensor name 'a'"));
    EXPECT_THAT(error_of([&] {
                    write_random_safetensors(p, {{"a", {int64_t(1) << 40, int64_t(1) << 40}, {}}}, DType::F32, 0);
                }),
                HasSubstr("tensor 'a' shape [1099511627776, 1099511627776] overflows"));
    EXPECT_THAT(error_of([&] {
                    write_random_safetensors(p, {{"a", {int64_t(1) << 31, int64_t(1) << 31}, {}}}, DType::F32, 0);
                }),
                HasSubstr("tensor 'a' puts the file past 2^64 bytes"));
    EXPECT_THAT(error_of([&] { write_random_safetensors(p, {{"a", {2}, {}}}, DType::I8, 0); }),
                HasSubstr("dtype I8 (valid: F32, F16, BF16)"));
    EXPECT_FALSE(fs::exists(p));
    EXPECT_THAT(error_of([] { random_family_tensors(opts("flux-pro")); }),
                HasSubstr("make-random: unknown family 'flux-pro' (valid: sd15, sd2, sdxl, [sd35-medium, "));
    RandomFamilyOptions o = opts("flux-dev");
    o.with_text_encoders = true;
    EXPECT_THAT(error_of([&] { random_family_tensors(o); }),
                HasSubstr("--with-text-encoders is for sd35-medium / sd35-large"));
    o = opts("t5xxl");
    o.depth = -1;
    EXPECT_THAT(error_of([&] { random_family_tensors(o); }), HasSubstr("make-random: --depth -1 (valid: 0 = "));
    const test::CliRun r = test::run_cli(" make-random --family sd15 --depth 2 -o " + p);
    EXPECT_EQ(r.code, 2) << r.out;
    EXPECT_THAT(r.out, HasSubstr("--with-text-encoders and --depth are for the transformer families, not 'sd15'"));
}

}  // namespace
}  // namespace nuance
