// DiT transformer: the golden case, config detection, position embedding, input checks.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>

#include "io/safetensors.h"
#include "eval/golden/dit_golden.h"
#include "models/dit/dit_load.h"
#include <nlohmann/json.hpp>

#include "../test_util.h"

using namespace nuance;
using ::testing::HasSubstr;
using ::testing::Not;
using nuance::test::error_of;

namespace {

const std::string kDir = std::string(NUANCE_TEST_DATA) + "/golden/dit";

std::map<std::string, Tensor> golden_tensors() { return load_safetensors(kDir + "/dit.safetensors").tensors; }

LoadedDiT golden_model() {
    DiTLoadOptions o;
    o.heads = 2;
    return load_dit_tensors(golden_tensors(), "dit.safetensors", o);
}

}  // namespace

TEST(DiTGolden, MatchesDiffusers) {
    const auto lines = check_golden_dit(kDir);
    ASSERT_EQ(lines.size(), 1u);
    EXPECT_TRUE(lines[0].pass) << lines[0].name << " max_abs " << lines[0].max_abs << " atol " << lines[0].atol;
    EXPECT_EQ(lines[0].name, "dit/out");
}

TEST(DiTConfig, DetectsTheGoldenShapes) {
    const DiTConfig c = DiTConfig::detect(golden_tensors(), 2);
    EXPECT_EQ(c.hidden, 32);
    EXPECT_EQ(c.depth, 2);
    EXPECT_EQ(c.patch_size, 2);
    EXPECT_EQ(c.in_channels, 4);
    EXPECT_EQ(c.out_channels, 8);
    EXPECT_TRUE(c.learned_sigma());
    EXPECT_EQ(c.num_classes, 10);
    EXPECT_EQ(c.mlp_hidden, 128);
    EXPECT_EQ(c.heads, 2);
    EXPECT_EQ(c.freq_shift, 1.0f);
}

TEST(DiTConfig, PresetHeadsFollowThePaper) {
    EXPECT_EQ(DiTConfig::preset_heads(1152), 16);  // XL
    EXPECT_EQ(DiTConfig::preset_heads(1024), 16);  // L
    EXPECT_EQ(DiTConfig::preset_heads(768), 12);   // B
    EXPECT_EQ(DiTConfig::preset_heads(384), 6);    // S
    EXPECT_EQ(DiTConfig::preset_heads(128), 2);    // other widths: head size 64
    EXPECT_EQ(DiTConfig::preset_heads(32), 0);     // unknown
}

TEST(DiTConfig, UnknownHeadsAskForConfigJson) {
    EXPECT_THAT(error_of([] { DiTConfig::detect(golden_tensors()); }),
                HasSubstr("DiT checkpoint: width 32 is no DiT preset and 64 does not divide it, so the number of "
                          "attention heads is unknown"));
}

TEST(DiTConfig, ConfigJsonMustAgreeWithTheShapes) {
    DiTConfig c = DiTConfig::detect(golden_tensors(), 2);
    EXPECT_THAT(error_of([&] { c.apply_diffusers_config({{"num_attention_heads", 4}, {"attention_head_dim", 16}}); }),
                HasSubstr("DiT config.json: num_attention_heads 4 * attention_head_dim 16 does not give the weights' "
                          "width 32"));
    EXPECT_THAT(error_of([&] { c.apply_diffusers_config({{"num_layers", 28}}); }),
                HasSubstr("DiT config.json: 'num_layers' is 28 but the weights' shapes give 2"));
    EXPECT_THAT(error_of([&] { c.apply_diffusers_config({{"sample_size", 7}}); }),
                HasSubstr("DiT config.json: 'sample_size' 7 must be a multiple of the patch size 2"));
    EXPECT_THAT(error_of([&] { c.apply_diffusers_config({{"num_layers", "two"}}); }),
                HasSubstr("DiT config.json: 'num_layers' must be an integer, got \"two\""));
}

TEST(DiTConfig, MissingTensorIsNamed) {
    auto t = golden_tensors();
    t.erase("proj_out_2.weight");
    EXPECT_THAT(error_of([&] { DiTConfig::detect(t, 2); }),
                HasSubstr("DiT checkpoint is missing tensor 'proj_out_2.weight'"));
}

TEST(DiTPosEmbed, HandComputed) {
    // D = 8: features [sin(x w0), sin(x w1), cos(x w0), cos(x w1), sin(y w0), sin(y w1), cos(y w0), cos(y w1)],
    // w_d = 10000^(-d/2), x the column, y the row.
    const Tensor pe = dit_pos_embed(8, 2, 3);
    ASSERT_EQ(pe.shape(), (Shape{6, 8}));
    const auto v = pe.to_vector();
    const int64_t t = 1 * 3 + 2;  // row 1, column 2
    EXPECT_FLOAT_EQ(v[t * 8 + 0], std::sin(2.0f));
    EXPECT_FLOAT_EQ(v[t * 8 + 1], (float)std::sin(2.0 / 100.0));
    EXPECT_FLOAT_EQ(v[t * 8 + 2], std::cos(2.0f));
    EXPECT_FLOAT_EQ(v[t * 8 + 4], std::sin(1.0f));
    EXPECT_FLOAT_EQ(v[t * 8 + 7], (float)std::cos(1.0 / 100.0));
    EXPECT_THAT(error_of([] { dit_pos_embed(6, 2, 2); }),
                HasSubstr("DiT position embedding: width 6 must be a multiple of 4"));
}

TEST(DiTForward, RejectsBadInputs) {
    const LoadedDiT d = golden_model();
    const Tensor x = Tensor::zeros({2, 4, 8, 8});
    const Tensor t = Tensor::from_ids({999, 10}, {2});
    EXPECT_THAT(error_of([&] { d.model->forward(x, t, Tensor::from_ids({3, 11}, {2})); }),
                HasSubstr("DiT: class label 11 is out of range [0, 10] (10 = the null class of classifier-free "
                          "guidance)"));
    EXPECT_THAT(error_of([&] { d.model->forward(x, t, Tensor::from_ids({-1, 0}, {2})); }),
                HasSubstr("DiT: class label -1 is out of range"));
    EXPECT_THAT(error_of([&] { d.model->forward(x, t, Tensor::from_ids({1}, {1})); }),
                HasSubstr("DiT: class_labels must be 2 integers, got I64[1]"));
    EXPECT_THAT(error_of([&] { d.model->forward(x, t, Tensor::zeros({2})); }),
                HasSubstr("DiT: class_labels must be 2 integers, got F32[2]"));
    EXPECT_THAT(error_of([&] { d.model->forward(Tensor::zeros({2, 3, 8, 8}), t, Tensor::from_ids({1, 2}, {2})); }),
                HasSubstr("DiT: latent must be [N, 4, H, W], got [2, 3, 8, 8]"));
    EXPECT_THAT(error_of([&] { d.model->forward(Tensor::zeros({2, 4, 7, 8}), t, Tensor::from_ids({1, 2}, {2})); }),
                HasSubstr("DiT: latent size 7x8 must be a positive multiple of the patch size 2"));
    EXPECT_THAT(error_of([&] { d.model->forward(x, Tensor::zeros({3}), Tensor::from_ids({1, 2}, {2})); }),
                HasSubstr("DiT: timestep must hold 1 or 2 values, got F32[3]"));
    EXPECT_THAT(error_of([&] {
                    d.model->forward(x, Tensor::from_vector({1.0f, std::nanf("")}, {2}), Tensor::from_ids({1, 2}, {2}));
                }),
                HasSubstr("DiT: timestep nan is not finite"));
}

TEST(DiTForward, SampleSizeIsEnforcedWhenKnown) {
    DiTLoadOptions o;
    const nlohmann::json cfg{{"num_attention_heads", 2}, {"attention_head_dim", 16}, {"sample_size", 8}};
    const LoadedDiT d = load_dit_tensors(golden_tensors(), "dit.safetensors", o, &cfg);
    EXPECT_EQ(d.model->config().sample_size, 8);
    EXPECT_THAT(error_of([&] {
                    d.model->forward(Tensor::zeros({1, 4, 16, 16}), Tensor::from_ids({5}, {1}),
                                     Tensor::from_ids({1}, {1}));
                }),
                HasSubstr("DiT: latent size 16x16 differs from the model's 8x8 (its position embedding is fixed)"));
}

TEST(DiTForward, OneTimestepIsBroadcast) {
    const LoadedDiT d = golden_model();
    const Tensor x = Tensor::full({2, 4, 8, 8}, 0.3f);
    const Tensor y = Tensor::from_ids({3, 10}, {2});
    const Tensor a = d.model->forward(x, Tensor::from_ids({500}, {1}), y);
    const Tensor b = d.model->forward(x, Tensor::from_ids({500, 500}, {2}), y);
    EXPECT_EQ(max_abs_diff(a, b), 0.0f);
}

TEST(DiTGolden, CheckGoldenCliRunsIt) {
    const nuance::test::CliRun r = nuance::test::run_cli(std::string(" check-golden ") + kDir);
    EXPECT_EQ(r.code, 0) << r.out;
    EXPECT_THAT(r.out, HasSubstr("dit/out PASS"));
    EXPECT_THAT(r.out, Not(HasSubstr("SKIP")));
}
