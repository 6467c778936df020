#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "io/safetensors.h"
#include "models/vae/autoencoder_kl.h"
#include "eval/golden/vae_golden.h"
#include "../test_util.h"

using namespace nuance;
using ::testing::HasSubstr;
using nuance::test::error_of;

namespace {

const std::string kDir = std::string(NUANCE_TEST_DATA) + "/golden/vae";

// A zero tensor of any shape without the memory (a broadcast view), for shape-only detection tests.
Tensor fake(const Shape& s) { return Tensor::zeros({1}).view(Shape(s.size(), 1)).expand(s); }

}  // namespace

TEST(Vae, GoldenAllOutputs) {
    const auto lines = check_golden_vae(kDir);
    EXPECT_EQ(lines.size(), 12u);  // 6 tensors x {vae_sd, vae_flux}
    for (const auto& l : lines) {
        EXPECT_EQ(l.name.rfind("vae/vae_", 0), 0u) << l.name;  // "<case>/<model>.<tensor>"
        EXPECT_TRUE(l.pass) << l.name << ": " << l.reason;
        EXPECT_FALSE(l.skip) << l.name;
        EXPECT_GT(l.atol, 0.0) << l.name;
    }
}

// A case whose case.json lacks an atol and lists an output the port does not compute: a FAIL line and a SKIP line,
// not an exception.
TEST(Vae, GoldenCaseGaps) {
    namespace fs = std::filesystem;
    nlohmann::json c = nlohmann::json::parse(std::ifstream(kDir + "/case.json"));
    c["models"].erase("vae_flux");
    c["tolerance"]["vae_sd"]["suggested_atol"].erase("decoded");
    c["tensors"]["vae_sd.extra"] = {{"role", "output"}};
    const fs::path dir = fs::path(NUANCE_SCRATCH_DIR) / ("nuance_vae_gaps_" + std::to_string(::getpid()));
    fs::create_directories(dir);
    for (const char* f : {"io.safetensors", "vae_sd.safetensors"}) fs::copy_file(kDir + "/" + f, dir / f);
    std::ofstream(dir / "case.json") << c.dump();
    const auto lines = check_golden_vae(dir.string());
    fs::remove_all(dir);

    ASSERT_EQ(lines.size(), 7u);  // 6 outputs of vae_sd + extra
    for (const auto& l : lines) {
        if (l.name == "vae/vae_sd.decoded") {
            EXPECT_FALSE(l.pass);
            EXPECT_FALSE(l.skip);
            EXPECT_THAT(l.reason, HasSubstr("no suggested_atol"));
        } else if (l.name == "vae/vae_sd.extra") {
            EXPECT_TRUE(l.skip);
            EXPECT_THAT(l.reason, HasSubstr("not an output of the C++ port"));
        } else {
            EXPECT_TRUE(l.pass) << l.name << ": " << l.reason;
        }
    }
}

TEST(Vae, DetectFromShapes) {
    const WeightFile sd = load_safetensors(kDir + "/vae_sd.safetensors");
    AutoencoderKLConfig c = AutoencoderKLConfig::detect(sd.tensors);
    EXPECT_EQ(c.block_out_channels, (std::vector<int64_t>{16, 32, 32, 32}));
    EXPECT_EQ(c.layers_per_block, 2);
    EXPECT_EQ(c.latent_channels, 4);
    EXPECT_EQ(c.in_channels, 3);
    EXPECT_EQ(c.out_channels, 3);
    EXPECT_TRUE(c.use_quant_conv);
    EXPECT_TRUE(c.use_post_quant_conv);
    EXPECT_TRUE(c.mid_block_attention);
    EXPECT_EQ(c.downscale(), 8);
    EXPECT_FLOAT_EQ(c.scaling_factor, 0.18215f);
    EXPECT_FLOAT_EQ(c.shift_factor, 0.0f);
    // Groups are not in the shapes: the rule guesses 16 here, the truth (config.json) is 8.
    EXPECT_EQ(c.norm_groups, 16);
    EXPECT_TRUE(c.norm_groups_guessed);
    c.apply_diffusers_config(
        nlohmann::json{{"norm_num_groups", 8}, {"scaling_factor", 0.13025}, {"shift_factor", nullptr}});
    EXPECT_EQ(c.norm_groups, 8);
    EXPECT_FALSE(c.norm_groups_guessed);
    EXPECT_FLOAT_EQ(c.scaling_factor, 0.13025f);
    const AutoencoderKLConfig c8 = AutoencoderKLConfig::detect(sd.tensors, "", 8);
    EXPECT_EQ(c8.norm_groups, 8);
    EXPECT_FALSE(c8.norm_groups_guessed);

    const WeightFile fl = load_safetensors(kDir + "/vae_flux.safetensors");
    const AutoencoderKLConfig f = AutoencoderKLConfig::detect(fl.tensors);
    EXPECT_EQ(f.block_out_channels, (std::vector<int64_t>{8, 16, 16, 16}));
    EXPECT_EQ(f.layers_per_block, 1);
    EXPECT_EQ(f.latent_channels, 16);
    EXPECT_FALSE(f.use_quant_conv);
    EXPECT_FALSE(f.use_post_quant_conv);
    EXPECT_FLOAT_EQ(f.scaling_factor, 0.3611f);
    EXPECT_FLOAT_EQ(f.shift_factor, 0.1159f);
}

TEST(Vae, DetectRealSizeWithPrefix) {
    // SD-sized shapes under the single-file prefix: 32 groups, as every released VAE.
    const std::string p = "first_stage_model.";
    const std::vector<int64_t> ch{128, 256, 512, 512};
    std::map<std::string, Tensor> t;
    t[p + "encoder.conv_in.weight"] = fake({128, 3, 3, 3});
    int64_t prev = 128;
    for (size_t i = 0; i < ch.size(); ++i) {
        for (int j = 0; j < 2; ++j)
            t[p + str("encoder.down_blocks.", i, ".resnets.", j, ".conv1.weight")] =
                fake({ch[i], j ? ch[i] : prev, 3, 3});
        prev = ch[i];
    }
    t[p + "encoder.conv_out.weight"] = fake({8, 512, 3, 3});
    t[p + "decoder.conv_in.weight"] = fake({512, 4, 3, 3});
    t[p + "decoder.conv_out.weight"] = fake({3, 128, 3, 3});
    const AutoencoderKLConfig c = AutoencoderKLConfig::detect(t, p);
    EXPECT_EQ(c.block_out_channels, ch);
    EXPECT_EQ(c.layers_per_block, 2);
    EXPECT_EQ(c.norm_groups, 32);
    EXPECT_FALSE(c.norm_groups_guessed);
    EXPECT_FALSE(c.use_quant_conv);
    EXPECT_FALSE(c.mid_block_attention);
    // The module tree of that config names exactly the diffusers keys.
    AutoencoderKLConfig full = c;
    full.use_quant_conv = full.use_post_quant_conv = full.mid_block_attention = true;
    AutoencoderKL vae(full);
    std::vector<std::string> names;
    for_each_param(vae, [&](const std::string& n, Param&) { names.push_back(n); });
    EXPECT_EQ(names.size(), 248u);  // diffusers' AutoencoderKL state dict for SD
    EXPECT_NE(std::find(names.begin(), names.end(), "encoder.down_blocks.1.resnets.0.conv_shortcut.weight"),
              names.end());
    EXPECT_NE(std::find(names.begin(), names.end(), "decoder.up_blocks.3.resnets.0.conv_shortcut.weight"),
              names.end());
    EXPECT_NE(std::find(names.begin(), names.end(), "decoder.up_blocks.0.upsamplers.0.conv.bias"), names.end());
    EXPECT_EQ(std::find(names.begin(), names.end(), "decoder.up_blocks.3.upsamplers.0.conv.bias"), names.end());
    EXPECT_NE(std::find(names.begin(), names.end(), "encoder.mid_block.attentions.0.to_out.0.weight"), names.end());
}

TEST(Vae, OriginalLayoutAttentionAndLegacyNames) {
    const WeightFile io = load_safetensors(kDir + "/io.safetensors");
    const WeightFile sd = load_safetensors(kDir + "/vae_sd.safetensors");
    const AutoencoderKLConfig c = AutoencoderKLConfig::detect(sd.tensors, "", 8);
    // Mid-block attention as 1x1 convs [C, C, 1, 1] (CompVis layout) under the legacy diffusers names.
    std::map<std::string, Tensor> t;
    for (const auto& kv : sd.tensors) {
        std::string k = kv.first;
        Tensor v = kv.second;
        for (const auto& [from, to] : std::vector<std::pair<std::string, std::string>>{
                 {".to_q.", ".query."}, {".to_k.", ".key."}, {".to_v.", ".value."}, {".to_out.0.", ".proj_attn."}}) {
            const size_t at = k.find(from);
            if (at != std::string::npos) {
                k.replace(at, from.size(), to);
                if (v.dim() == 2) v = v.reshape({v.size(0), v.size(1), 1, 1});
            }
        }
        t[k] = v;
    }
    ASSERT_TRUE(t.count("decoder.mid_block.attentions.0.proj_attn.weight"));
    EXPECT_TRUE(AutoencoderKLConfig::detect(t, "", 8).mid_block_attention);
    AutoencoderKL vae(c);
    EXPECT_THAT(error_of([&] { load_module(vae, t, {.source = "old.safetensors"}); }),
                HasSubstr("encoder.mid_block.attentions.0.to_q.weight"));
    const auto unused = load_module(vae, rename_legacy_vae_attention(t), {.source = "old.safetensors"});
    EXPECT_TRUE(unused.empty());
    const Tensor dec = vae.decode(io.tensors.at("vae_sd.latent"));
    EXPECT_LE(max_abs_diff(dec, io.tensors.at("vae_sd.decoded")), 1.7e-4f);
}

TEST(Vae, PosteriorAndLatentScaling) {
    // moments = cat(mean, logvar) on channels; logvar clamped to [-30, 20].
    const Tensor moments = Tensor::from_vector({1, 2, 50, -40}, {1, 4, 1, 1});
    const DiagonalGaussian d = DiagonalGaussian::from_moments(moments);
    EXPECT_EQ(d.mean.to_vector(), (std::vector<float>{1, 2}));
    EXPECT_EQ(d.logvar.to_vector(), (std::vector<float>{20, -30}));
    const Tensor eps = Tensor::from_vector({1, -1}, {1, 2, 1, 1});
    const std::vector<float> s = d.sample(eps).to_vector();
    EXPECT_NEAR(s[0], 1 + std::exp(10.0f), 1e-1);
    EXPECT_NEAR(s[1], 2 - std::exp(-15.0f), 1e-6);
    EXPECT_THAT(error_of([&] { d.sample(Tensor::zeros({1, 3, 1, 1})); }), HasSubstr("expected [1, 2, 1, 1]"));
    EXPECT_THAT(error_of([&] { DiagonalGaussian::from_moments(Tensor::zeros({1, 3, 1, 1})); }),
                HasSubstr("[N, 2C, h, w]"));

    const WeightFile fl = load_safetensors(kDir + "/vae_flux.safetensors");
    AutoencoderKLConfig c = AutoencoderKLConfig::detect(fl.tensors, "", 4);
    const AutoencoderKL vae(c);
    const Tensor z = Tensor::from_vector({0.5f, -1.0f}, {1, 2, 1, 1});
    const std::vector<float> lat = vae.to_latents(z).to_vector();
    EXPECT_FLOAT_EQ(lat[0], (0.5f - 0.1159f) * 0.3611f);
    EXPECT_LE(max_abs_diff(vae.from_latents(vae.to_latents(z)), z), 1e-6f);
}

TEST(Vae, OddLatentSizes) {
    const WeightFile sd = load_safetensors(kDir + "/vae_sd.safetensors");
    AutoencoderKL vae(AutoencoderKLConfig::detect(sd.tensors, "", 8));
    load_module(vae, sd.tensors, {.source = sd.path});
    EXPECT_EQ(vae.decode(Tensor::zeros({2, 4, 5, 7})).shape(), (Shape{2, 3, 40, 56}));
    EXPECT_EQ(vae.encode_moments(Tensor::zeros({1, 3, 40, 56})).shape(), (Shape{1, 8, 5, 7}));
    const DiagonalGaussian post = vae.encode(Tensor::zeros({1, 3, 16, 24}));
    EXPECT_EQ(post.mean.shape(), (Shape{1, 4, 2, 3}));
}

TEST(Vae, Errors) {
    const WeightFile sd = load_safetensors(kDir + "/vae_sd.safetensors");
    const AutoencoderKLConfig c = AutoencoderKLConfig::detect(sd.tensors, "", 8);
    {
        auto t = sd.tensors;
        t.erase("decoder.up_blocks.2.resnets.1.norm2.bias");
        AutoencoderKL vae(c);
        const std::string e = error_of([&] { load_module(vae, t, {.source = "vae.safetensors"}); });
        EXPECT_THAT(e, HasSubstr("missing tensor 'decoder.up_blocks.2.resnets.1.norm2.bias'"));
        EXPECT_THAT(e, HasSubstr("vae.safetensors"));
    }
    {
        auto t = sd.tensors;
        t["encoder.down_blocks.0.downsamplers.0.conv.weight"] = Tensor::zeros({16, 16, 1, 3});
        AutoencoderKL vae(c);
        const std::string e = error_of([&] { load_module(vae, t, {.source = "vae.safetensors"}); });
        EXPECT_THAT(e, HasSubstr("encoder.down_blocks.0.downsamplers.0.conv.weight"));
        EXPECT_THAT(e, HasSubstr("expected [16, 16, 3, 3], got [16, 16, 1, 3]"));
    }
    {
        auto t = sd.tensors;
        t.erase("decoder.conv_in.weight");
        EXPECT_THAT(error_of([&] { AutoencoderKLConfig::detect(t); }), HasSubstr("'decoder.conv_in.weight' not found"));
        EXPECT_THAT(error_of([&] { AutoencoderKLConfig::detect(sd.tensors, "vae."); }),
                    HasSubstr("vae.encoder.conv_in.weight"));
    }
    AutoencoderKLConfig c2 = c;
    EXPECT_THAT(error_of([&] { c2.apply_diffusers_config(nlohmann::json{{"block_out_channels", {16, 32, 64, 64}}}); }),
                HasSubstr("block_out_channels = [16, 32, 64, 64] but the weights have [16, 32, 32, 32]"));
    EXPECT_THAT(error_of([&] { c2.apply_diffusers_config(nlohmann::json{{"latent_channels", 16}}); }),
                HasSubstr("latent_channels = 16 but the weights have 4"));
    EXPECT_THAT(error_of([&] { c2.apply_diffusers_config(nlohmann::json{{"use_quant_conv", false}}); }),
                HasSubstr("use_quant_conv"));
    EXPECT_THAT(error_of([&] { c2.apply_diffusers_config(nlohmann::json{{"norm_num_groups", "8"}}); }),
                HasSubstr("'norm_num_groups' is not an integer"));
    c2.norm_groups = 5;
    EXPECT_THAT(error_of([&] { AutoencoderKL bad(c2); }), HasSubstr("not divisible into 5 norm groups"));

    AutoencoderKL unloaded(c);
    EXPECT_THAT(error_of([&] { unloaded.decode(Tensor::zeros({1, 4, 2, 2})); }), HasSubstr("not loaded"));
    AutoencoderKL vae(c);
    load_module(vae, sd.tensors, {.source = sd.path});
    EXPECT_THAT(error_of([&] { vae.decode(Tensor::zeros({1, 16, 2, 2})); }), HasSubstr("expected [N, 4, h, w]"));
    EXPECT_THAT(error_of([&] { vae.encode_moments(Tensor::zeros({1, 4, 16, 16})); }),
                HasSubstr("expected [N, 3, H, W]"));
    EXPECT_THAT(error_of([&] { check_golden_vae("/nonexistent/vae"); }),
                HasSubstr("golden case '/nonexistent/vae' has no case.json"));
}
