#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "io/safetensors.h"
#include "eval/check_golden.h"
#include "io/weights.h"
#include "eval/golden/flux_golden.h"
#include "models/flux/flux_load.h"
#include "models/flux/flux_original.h"
#include "../test_util.h"

using namespace nuance;
using ::testing::HasSubstr;
using nuance::test::error_of;

namespace {

const std::string kDir = std::string(NUANCE_TEST_DATA) + "/golden/flux_transformer";
const std::string kOrig = std::string(NUANCE_TEST_DATA) + "/golden/original_flux";

// A zero tensor of any shape without the memory (a broadcast view), for shape-only detection tests.
Tensor fake(const Shape& s) { return Tensor::zeros({1}).view(Shape(s.size(), 1)).expand(s); }

std::map<std::string, Tensor> tensors_of(const std::string& path) { return load_weights(path).tensors; }

std::map<std::string, Tensor> bfl_dev() { return tensors_of(kOrig + "/flux_dev_original.safetensors"); }

LoadOptions opts(const std::string& source) {
    LoadOptions o;
    o.source = source;
    return o;
}

struct TempDir {
    std::filesystem::path path;
    explicit TempDir(const std::string& tag)
        : path(std::filesystem::path(NUANCE_SCRATCH_DIR) / ("nuance_flux_" + tag + "_" + std::to_string(::getpid()))) {
        std::filesystem::remove_all(path);
        std::filesystem::create_directories(path);
    }
    ~TempDir() { std::filesystem::remove_all(path); }
};

}  // namespace

TEST(FluxGolden, TransformerDiffusersLayout) {
    const auto lines = check_golden_flux(kDir);
    EXPECT_EQ(lines.size(), 6u);  // {dev, schnell} x {pack_latents, out, out_unpacked}
    for (const auto& l : lines) {
        EXPECT_TRUE(l.pass) << l.name << ": " << l.reason << " max_abs " << l.max_abs << " atol " << l.atol;
        EXPECT_FALSE(l.skip) << l.name;
    }
    EXPECT_EQ(lines[1].name, "flux_transformer/flux_dev.out");
}

TEST(FluxGolden, OriginalBflLayoutF32F16AndComfyPrefix) {
    const auto lines = check_golden_flux(kOrig);
    EXPECT_EQ(lines.size(), 14u);  // per model: pack + {F32, F16, comfy} x {out, out_unpacked}
    for (const auto& l : lines) {
        EXPECT_TRUE(l.pass) << l.name << ": " << l.reason << " max_abs " << l.max_abs;
        EXPECT_FALSE(l.skip) << l.name;
    }
}

TEST(Flux, DetectTinyFromShapes) {
    FluxConfig c = FluxConfig::detect(tensors_of(kDir + "/flux_dev.safetensors"));
    EXPECT_EQ(c.hidden, 32);
    EXPECT_EQ(c.heads, 2);
    EXPECT_EQ(c.head_dim, 16);
    EXPECT_EQ(c.num_double, 2);
    EXPECT_EQ(c.num_single, 2);
    EXPECT_EQ(c.mlp_hidden, 128);
    EXPECT_EQ(c.in_channels, 16);
    EXPECT_EQ(c.joint_attention_dim, 32);
    EXPECT_EQ(c.pooled_projection_dim, 24);
    EXPECT_TRUE(c.guidance_embeds);
    EXPECT_EQ(c.axes_dims_rope, (std::vector<int64_t>{4, 6, 6}));
    EXPECT_FALSE(FluxConfig::detect(tensors_of(kDir + "/flux_schnell.safetensors")).guidance_embeds);
}

// The full-size Flux.1-dev shapes (no memory: broadcast views) detect as 24 heads x 128, 19 + 38 blocks.
TEST(Flux, DetectFullSizeFromShapes) {
    std::map<std::string, Tensor> t;
    const int64_t D = 3072;
    t["x_embedder.weight"] = fake({D, 64});
    t["proj_out.weight"] = fake({64, D});
    t["context_embedder.weight"] = fake({D, 4096});
    t["time_text_embed.text_embedder.linear_1.weight"] = fake({D, 768});
    t["time_text_embed.timestep_embedder.linear_1.weight"] = fake({D, 256});
    t["time_text_embed.guidance_embedder.linear_1.weight"] = fake({D, 256});
    for (int i = 0; i < 19; ++i) {
        const std::string p = "transformer_blocks." + std::to_string(i) + ".";
        t[p + "attn.norm_q.weight"] = fake({128});
        t[p + "ff.net.0.proj.weight"] = fake({4 * D, D});
    }
    for (int i = 0; i < 38; ++i) t["single_transformer_blocks." + std::to_string(i) + ".proj_mlp.weight"] = fake({4 * D, D});
    const FluxConfig c = FluxConfig::detect(t);
    EXPECT_EQ(c.heads, 24);
    EXPECT_EQ(c.head_dim, 128);
    EXPECT_EQ(c.num_double, 19);
    EXPECT_EQ(c.num_single, 38);
    EXPECT_EQ(c.mlp_hidden, 12288);
    EXPECT_EQ(c.axes_dims_rope, (std::vector<int64_t>{16, 56, 56}));
    EXPECT_NO_THROW(c.validate());
    // A head dim with no default rope split asks for a config.
    t["transformer_blocks.0.attn.norm_q.weight"] = fake({24});
    FluxConfig odd = FluxConfig::detect(t);
    EXPECT_THAT(error_of([&] { odd.validate(); }), HasSubstr("cannot derive axes_dims_rope for head dim 24"));
    odd.apply_json({{"axes_dims_rope", {8, 8, 8}}});
    EXPECT_EQ(odd.heads, 128);
    EXPECT_THAT(error_of([&] { odd.apply_json({{"axes_dims_rope", {8, 8, 6}}}); }),
                HasSubstr("Flux config axes_dims_rope [8, 8, 6] sums to 22, not the head dim 24"));
}

TEST(Flux, PackUnpackAndIds) {
    std::vector<float> v(2 * 3 * 4 * 6);
    for (size_t i = 0; i < v.size(); ++i) v[i] = (float)i;
    const Tensor lat = Tensor::from_vector(v, {2, 3, 4, 6});
    const Tensor packed = flux_pack_latents(lat);
    ASSERT_EQ(packed.shape(), (Shape{2, 6, 12}));
    // token (row 0, col 1) of batch 0: channel 0's 2x2 patch at rows 0-1, cols 2-3, then channel 1's ...
    const auto p = packed.to_vector();
    EXPECT_EQ(p[12 + 0], 2.0f);
    EXPECT_EQ(p[12 + 1], 3.0f);
    EXPECT_EQ(p[12 + 2], 8.0f);
    EXPECT_EQ(p[12 + 3], 9.0f);
    EXPECT_EQ(p[12 + 4], 26.0f);  // channel 1 starts at 4*6
    EXPECT_EQ(max_abs_diff(flux_unpack_latents(packed, 4, 6), lat), 0.0f);
    const auto ids = flux_image_ids(4, 6).to_vector();  // 2 x 3 tokens of (0, row, col)
    EXPECT_EQ(ids, (std::vector<float>{0, 0, 0, 0, 0, 1, 0, 0, 2, 0, 1, 0, 0, 1, 1, 0, 1, 2}));
    EXPECT_EQ(flux_text_ids(5).shape(), (Shape{5, 3}));
    EXPECT_THAT(error_of([&] { flux_pack_latents(Tensor::zeros({1, 4, 3, 4})); }),
                HasSubstr("latents must be [N, C, H, W] with even H and W, got [1, 4, 3, 4]"));
    EXPECT_THAT(error_of([&] { flux_unpack_latents(packed, 4, 8); }),
                HasSubstr("packed latents [2, 6, 12] hold 6 tokens, a 4x8 latent needs 8"));
    EXPECT_THAT(error_of([&] { flux_image_ids(5, 4); }), HasSubstr("latent size must be even, got 5x4"));
}

// The reverse key map reproduces the BFL file exactly from the diffusers one (so the forward map is its inverse).
TEST(Flux, BflKeyMapRoundTrip) {
    const auto dif = tensors_of(kDir + "/flux_dev.safetensors");
    const auto bfl = bfl_dev();
    const auto back = flux_diffusers_to_bfl(dif);
    ASSERT_EQ(back.size(), bfl.size());
    for (const auto& [k, v] : back) {
        ASSERT_TRUE(bfl.count(k)) << k;
        EXPECT_EQ(v.shape(), bfl.at(k).shape()) << k;
        EXPECT_EQ(max_abs_diff(v, bfl.at(k)), 0.0f) << k;
    }
    const auto fwd = flux_bfl_to_diffusers(bfl, "", "x");
    ASSERT_EQ(fwd.size(), dif.size());
    for (const auto& [k, v] : fwd) EXPECT_EQ(max_abs_diff(v, dif.at(k)), 0.0f) << k;
}

// Folders: a transformer/ folder with config.json, a pipeline root holding it, sharded-less bare file.
TEST(Flux, LoadsDiffusersFoldersAndFiles) {
    TempDir d("folders");
    const auto dif = tensors_of(kDir + "/flux_schnell.safetensors");
    std::filesystem::create_directories(d.path / "transformer");
    save_safetensors((d.path / "transformer/diffusion_pytorch_model.safetensors").string(),
                     std::vector<std::pair<std::string, Tensor>>(dif.begin(), dif.end()));
    std::ofstream(d.path / "transformer/config.json")
        << R"({"_class_name": "FluxTransformer2DModel", "guidance_embeds": false, "axes_dims_rope": [4, 6, 6],
             "num_attention_heads": 2, "attention_head_dim": 16})";
    FluxLayout layout = FluxLayout::Bfl;
    auto m = load_flux_transformer(d.path.string(), LoadOptions(), &layout);
    EXPECT_EQ(layout, FluxLayout::Diffusers);
    EXPECT_FALSE(m->cfg.guidance_embeds);
    EXPECT_NO_THROW(load_flux_transformer((d.path / "transformer").string(), LoadOptions()));
    m = load_flux_transformer(kOrig + "/flux_schnell_original_f16.safetensors", LoadOptions(), &layout);
    EXPECT_EQ(layout, FluxLayout::Bfl);
    EXPECT_EQ(m->cfg.num_single, 2);

    // config.json claims dev for a schnell file; a wrong class; no weights.
    std::ofstream(d.path / "transformer/config.json") << R"({"guidance_embeds": true})";
    EXPECT_THAT(error_of([&] { load_flux_transformer(d.path.string(), LoadOptions()); }),
                HasSubstr("Flux config says guidance_embeds (a Flux-dev model) but the file has no "
                          "time_text_embed.guidance_embedder (guidance_in) weights"));
    std::ofstream(d.path / "transformer/config.json") << R"({"_class_name": "SD3Transformer2DModel"})";
    EXPECT_THAT(error_of([&] { load_flux_transformer(d.path.string(), LoadOptions()); }),
                HasSubstr("_class_name is \"SD3Transformer2DModel\", not FluxTransformer2DModel"));
    std::ofstream(d.path / "transformer/config.json") << R"({"num_single_layers": 38})";
    EXPECT_THAT(error_of([&] { load_flux_transformer(d.path.string(), LoadOptions()); }),
                HasSubstr("Flux config num_single_layers 38 does not match the file's 2"));
    std::filesystem::remove(d.path / "transformer/diffusion_pytorch_model.safetensors");
    EXPECT_THAT(error_of([&] { load_flux_transformer(d.path.string(), LoadOptions()); }),
                HasSubstr("no diffusion_pytorch_model.safetensors"));
}

// Issue 13 item 8: a Flux-dev file with a partial guidance_in names what is missing.
TEST(FluxErrors, DevFileWithoutGuidanceIn) {
    auto t = bfl_dev();
    t.erase("guidance_in.out_layer.weight");
    EXPECT_THAT(error_of([&] { build_flux_transformer(t, nullptr, opts("flux1-dev.safetensors")); }),
                HasSubstr("'flux1-dev.safetensors': Flux-dev file without guidance_in.out_layer.weight (it has 3 of "
                          "guidance_in's 4 tensors)"));
    // Under ComfyUI's prefix the message names the full key.
    std::map<std::string, Tensor> comfy;
    for (const auto& [k, v] : t) comfy["model.diffusion_model." + k] = v;
    EXPECT_THAT(error_of([&] { build_flux_transformer(comfy, nullptr, opts("c.safetensors")); }),
                HasSubstr("Flux-dev file without model.diffusion_model.guidance_in.out_layer.weight"));
    // A dev config with no guidance_in at all.
    for (const char* k : {"guidance_in.in_layer.weight", "guidance_in.in_layer.bias", "guidance_in.out_layer.bias"})
        t.erase(k);
    EXPECT_THAT(error_of([&] { build_flux_transformer(t, {{"guidance_embeds", true}}, opts("f.safetensors")); }),
                HasSubstr("Flux config says guidance_embeds (a Flux-dev model) but the file has no"));
}

TEST(FluxErrors, WrongShapesNameTheTensorAndBothShapes) {
    auto t = bfl_dev();
    t["double_blocks.1.img_mlp.2.weight"] = Tensor::zeros({128, 32});  // transposed: same element count
    EXPECT_THAT(error_of([&] { build_flux_transformer(t, nullptr, opts("f.safetensors")); }),
                HasSubstr("'f.safetensors': Flux tensor 'double_blocks.1.img_mlp.2.weight (diffusers "
                          "transformer_blocks.1.ff.net.2.weight)': expected [32, 128], got [128, 32]"));
    t = bfl_dev();
    t["double_blocks.0.txt_attn.qkv.weight"] = Tensor::zeros({95, 32});
    EXPECT_THAT(error_of([&] { build_flux_transformer(t, nullptr, opts("f.safetensors")); }),
                HasSubstr("Flux tensor 'double_blocks.0.txt_attn.qkv.weight': 95 rows do not split into q, k, v"));
    t = bfl_dev();
    t["single_blocks.1.linear1.weight"] = Tensor::zeros({200, 32});
    EXPECT_THAT(error_of([&] { build_flux_transformer(t, nullptr, opts("f.safetensors")); }),
                HasSubstr("Flux tensor 'single_blocks.1.linear1.weight': 200 rows, but linear2.weight [32, 160] needs "
                          "3 x 32 + 128 = 224 (q, k, v, mlp)"));
    t = bfl_dev();
    t["final_layer.adaLN_modulation.1.bias"] = Tensor::zeros({63});
    EXPECT_THAT(error_of([&] { build_flux_transformer(t, nullptr, opts("f.safetensors")); }),
                HasSubstr("'final_layer.adaLN_modulation.1.bias': expected an even number of rows (shift, scale), "
                          "got [63]"));
    auto d = tensors_of(kDir + "/flux_dev.safetensors");
    d["transformer_blocks.0.attn.norm_q.weight"] = Tensor::zeros({12});
    EXPECT_THAT(error_of([&] { build_flux_transformer(d, nullptr, opts("d.safetensors")); }),
                HasSubstr("width 32 (x_embedder.weight) is not a multiple of the head dim 12"));
}

TEST(FluxErrors, MissingUnknownAndHoles) {
    auto t = bfl_dev();
    t.erase("double_blocks.0.img_attn.norm.key_norm.scale");
    EXPECT_THAT(error_of([&] { build_flux_transformer(t, nullptr, opts("f.safetensors")); }),
                HasSubstr("'f.safetensors' is missing Flux tensor 'double_blocks.0.img_attn.norm.key_norm.scale "
                          "(diffusers transformer_blocks.0.attn.norm_k.weight)' (expected shape [16])"));
    t = bfl_dev();
    t["double_blocks.0.img_attn.lora_up.weight"] = Tensor::zeros({4});
    EXPECT_THAT(error_of([&] { build_flux_transformer(t, nullptr, opts("f.safetensors")); }),
                HasSubstr("1 tensor(s) the Flux (BFL layout) key map does not know: "
                          "'double_blocks.0.img_attn.lora_up.weight'"));
    t = bfl_dev();
    for (auto it = t.begin(); it != t.end();)
        it = it->first.rfind("double_blocks.0.", 0) == 0 ? t.erase(it) : std::next(it);
    EXPECT_THAT(error_of([&] { build_flux_transformer(t, nullptr, opts("f.safetensors")); }),
                HasSubstr("double_blocks.* block indices are not 0..0 (highest is 1)"));
    auto d = tensors_of(kDir + "/flux_schnell.safetensors");
    d["transformer_blocks.0.attn.extra.weight"] = Tensor::zeros({2});
    EXPECT_THAT(error_of([&] { build_flux_transformer(d, nullptr, opts("d.safetensors")); }),
                HasSubstr("1 tensor(s) that a Flux transformer (Flux schnell (no guidance): width 32"));
    std::map<std::string, Tensor> sd{{"model.diffusion_model.input_blocks.0.0.weight", Tensor::zeros({1})}};
    EXPECT_THAT(error_of([&] { build_flux_transformer(sd, nullptr, opts("sd.safetensors")); }),
                HasSubstr("'sd.safetensors' is not a Flux transformer: no img_in / double_blocks.* (BFL layout) or "
                          "x_embedder / transformer_blocks.* (diffusers layout) keys, bare or under "
                          "model.diffusion_model.; saw 1 tensors: 'model.diffusion_model.input_blocks.0.0.weight'"));
}

TEST(FluxErrors, ForwardInputs) {
    const auto m = build_flux_transformer(tensors_of(kDir + "/flux_dev.safetensors"), nullptr, LoadOptions());
    const Tensor x = Tensor::zeros({1, 6, 16}), ctx = Tensor::zeros({1, 3, 32}), pooled = Tensor::zeros({1, 24});
    const Tensor t = Tensor::full({1}, 0.5f), g = Tensor::full({1}, 3.5f);
    const Tensor img = flux_image_ids(4, 6), txt = flux_text_ids(3);
    EXPECT_EQ(m->forward(x, t, g, ctx, pooled, img, txt).shape(), (Shape{1, 6, 16}));
    EXPECT_THAT(error_of([&] { m->forward(x, t, Tensor(), ctx, pooled, img, txt); }),
                HasSubstr("Flux-dev model (guidance_embeds) needs a guidance value per batch item"));
    EXPECT_THAT(error_of([&] { m->forward(Tensor::zeros({1, 6, 12}), t, g, ctx, pooled, img, txt); }),
                HasSubstr("hidden_states must be [N, Li, 16] (packed latents), got [1, 6, 12]"));
    EXPECT_THAT(error_of([&] { m->forward(x, t, g, Tensor::zeros({1, 3, 16}), pooled, img, txt); }),
                HasSubstr("encoder_hidden_states must be [1, Lt, 32], got [1, 3, 16]"));
    EXPECT_THAT(error_of([&] { m->forward(x, t, g, ctx, Tensor::zeros({2, 24}), img, txt); }),
                HasSubstr("pooled_projections must be [1, 24], got [2, 24]"));
    EXPECT_THAT(error_of([&] { m->forward(x, Tensor::zeros({2}), g, ctx, pooled, img, txt); }),
                HasSubstr("timestep must be [1] (one per batch item), got [2]"));
    EXPECT_THAT(error_of([&] { m->forward(x, t, g, ctx, pooled, flux_image_ids(4, 4), txt); }),
                HasSubstr("img_ids must be [6, 3], got [4, 3]"));
    EXPECT_THAT(error_of([&] { m->forward(x, t, g, ctx, pooled, img, flux_text_ids(2)); }),
                HasSubstr("txt_ids must be [3, 3], got [2, 3]"));
    // diffusers' deprecated batched ids [1, L, 3] are accepted.
    EXPECT_NO_THROW(m->forward(x, t, g, ctx, pooled, img.unsqueeze(0), txt.unsqueeze(0)));
}

// `nuance check-golden` dispatches both Flux cases to the runner: no SKIP line left.
TEST(FluxGolden, CheckGoldenDispatchNoSkip) {
    for (const std::string& dir : {kDir, kOrig}) {
        const auto lines = check_golden_case(dir);
        ASSERT_FALSE(lines.empty()) << dir;
        for (const auto& l : lines) {
            EXPECT_FALSE(l.skip) << l.name << ": " << l.reason;
            EXPECT_TRUE(l.pass) << l.name << ": " << l.reason;
        }
    }
}

// BFL publishes BF16 files: written here from the golden F32 one, loaded as stored (mmap'd, bf16 products) the
// output stays within bf16 distance of the fp32 reference.
TEST(Flux, Bf16BflFileRunsAsStored) {
    TempDir d("bf16");
    std::vector<std::pair<std::string, Tensor>> bf16;
    for (const auto& [k, v] : bfl_dev()) bf16.emplace_back(k, v.to(DType::BF16));
    const std::string path = (d.path / "flux1-dev.safetensors").string();
    save_safetensors(path, bf16);
    LoadOptions o;
    o.matrices_as_stored = true;
    o.matrix_compute = Precision::BF16;
    const auto m = load_flux_transformer(path, o);
    EXPECT_EQ(m->transformer_blocks[0].attn.to_q.weight.value.dtype(), DType::BF16);
    const WeightFile io = load_weights(kOrig + "/io.safetensors");
    const auto& t = io.tensors;
    const Tensor out = m->forward(t.at("flux_dev.hidden_states"), t.at("flux_dev.timestep"), t.at("flux_dev.guidance"),
                                  t.at("flux_dev.encoder_hidden_states"), t.at("flux_dev.pooled_projections"),
                                  t.at("flux_dev.img_ids"), t.at("flux_dev.txt_ids"));
    const Tensor ref = t.at("flux_dev.out");
    EXPECT_LT(max_abs_diff(out, ref), 0.1f);           // |ref| up to 5.45
    EXPECT_LT(mean_all(abs(out - ref)), 0.02);
}
