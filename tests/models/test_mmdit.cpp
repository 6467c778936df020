// SD3 / SD3.5 MMDiT: golden cases in both file layouts, config detection, the original key map.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>

#include "io/safetensors.h"
#include "io/weights.h"
#include "eval/golden/mmdit_golden.h"
#include "models/mmdit/mmdit_load.h"
#include "models/mmdit/mmdit_original.h"
#include "models/mmdit/mmdit_presets.h"
#include "ops/elementwise.h"
#include "../test_util.h"

using namespace nuance;
using ::testing::HasSubstr;

namespace {

const std::string kGolden = std::string(NUANCE_TEST_DATA) + "/golden/";

void expect_all_pass(const std::vector<CompareLine>& lines, size_t n) {
    EXPECT_EQ(lines.size(), n);
    for (const auto& l : lines) {
        EXPECT_TRUE(l.pass) << l.name << " max_abs=" << l.max_abs << " atol=" << l.atol << " " << l.reason;
        EXPECT_FALSE(l.skip) << l.name;
        EXPECT_GT(l.atol, 0.0) << l.name;
    }
}

}  // namespace

TEST(MMDiT, GoldenDiffusersLayout) {
    const auto lines = check_golden_sd3(kGolden + "sd3_transformer");
    expect_all_pass(lines, 2);
    EXPECT_EQ(lines[0].name, "sd3_transformer/sd3.out");
    EXPECT_EQ(lines[1].name, "sd3_transformer/sd35.out");
}

TEST(MMDiT, GoldenOriginalLayoutF32AndF16) {
    const auto lines = check_golden_sd3(kGolden + "original_sd3");
    expect_all_pass(lines, 4);
    EXPECT_EQ(lines[1].name, "original_sd3/sd3.out[f16 file]");
}

TEST(MMDiT, CheckGoldenCliRunsBothCasesWithoutSkip) {
    for (const char* c : {"sd3_transformer", "original_sd3"}) {
        const auto r = test::run_cli(" check-golden " + kGolden + c);
        EXPECT_EQ(r.code, 0) << r.out;
        EXPECT_THAT(r.out, HasSubstr(std::string(c) + "/sd35.out PASS")) << r.out;
        EXPECT_THAT(r.out, ::testing::Not(HasSubstr(" SKIP "))) << r.out;
        EXPECT_THAT(r.out, ::testing::Not(HasSubstr(" FAIL "))) << r.out;
    }
}

TEST(MMDiT, DetectsTheGoldenConfigs) {
    const WeightFile sd35 = load_safetensors(kGolden + "sd3_transformer/sd35.safetensors");
    const MMDiTConfig c = MMDiTConfig::detect(sd35.tensors);
    EXPECT_EQ(c.depth, 3);
    EXPECT_EQ(c.hidden, 32);
    EXPECT_EQ(c.head_dim, 8);  // the qk-norm weights are one head wide
    EXPECT_EQ(c.heads, 4);
    EXPECT_FALSE(c.heads_guessed);
    EXPECT_TRUE(c.qk_norm);
    EXPECT_EQ(c.dual_attention_layers, (std::vector<int64_t>{0, 1}));
    EXPECT_EQ(c.patch_size, 2);
    EXPECT_EQ(c.in_channels, 16);
    EXPECT_EQ(c.out_channels, 16);
    EXPECT_EQ(c.joint_attention_dim, 32);
    EXPECT_EQ(c.pooled_projection_dim, 24);
    EXPECT_EQ(c.pos_embed_max_size, 24);

    // SD3.0 has no qk-norm: 32 wide is not a multiple of 64, so the head count is Stability's heads = depth, flagged.
    const WeightFile sd3 = load_safetensors(kGolden + "sd3_transformer/sd3.safetensors");
    MMDiTConfig c3 = MMDiTConfig::detect(sd3.tensors);
    EXPECT_TRUE(c3.heads_guessed);
    EXPECT_EQ(c3.heads, 2);
    EXPECT_FALSE(c3.qk_norm);
    EXPECT_TRUE(c3.dual_attention_layers.empty());
    c3.apply_json(nlohmann::json{{"num_attention_heads", 4}, {"attention_head_dim", 8}, {"num_layers", 2}});
    EXPECT_EQ(c3.heads, 4);
    EXPECT_EQ(c3.head_dim, 8);
    EXPECT_FALSE(c3.heads_guessed);
}

TEST(MMDiT, FullSizeWidthsGiveSixtyFourWideHeads) {
    // A full-size SD3-Medium-shaped index (no qk-norm): 24 blocks of 1536 -> 24 heads of 64. Shapes only.
    auto fake = [](const Shape& s) { return Tensor::zeros({1}).view(Shape(s.size(), 1)).expand(s); };
    std::map<std::string, Tensor> t{
        {"pos_embed.proj.weight", fake({1536, 16, 2, 2})},
        {"pos_embed.pos_embed", fake({1, 192 * 192, 1536})},
        {"proj_out.weight", fake({64, 1536})},
        {"context_embedder.weight", fake({1536, 4096})},
        {"time_text_embed.text_embedder.linear_1.weight", fake({1536, 2048})},
        {"time_text_embed.timestep_embedder.linear_1.weight", fake({1536, 256})},
    };
    for (int i = 0; i < 24; ++i) t.emplace(str("transformer_blocks.", i, ".attn.to_q.weight"), fake({1536, 1536}));
    const MMDiTConfig c = MMDiTConfig::detect(t);
    EXPECT_EQ(c.heads, 24);
    EXPECT_EQ(c.head_dim, 64);
    EXPECT_EQ(c.depth, 24);
    EXPECT_EQ(c.pos_embed_max_size, 192);
    EXPECT_FALSE(c.heads_guessed);
}

TEST(MMDiT, OriginalKeyMapMatchesTheReferenceMap) {
    for (const std::string m : {"sd3", "sd35"}) {
        std::ifstream f(kGolden + "original_sd3/key_map_" + m + ".json");
        ASSERT_TRUE(f.good());
        const nlohmann::json km = nlohmann::json::parse(f);
        const WeightFile orig = load_safetensors(kGolden + "original_sd3/" + m + "_original.safetensors");
        const WeightFile diff = load_safetensors(kGolden + "sd3_transformer/" + m + ".safetensors");
        const auto mapped = mmdit_from_original(orig.tensors);
        ASSERT_EQ(mapped.size(), diff.tensors.size()) << m;
        for (const auto& [k, v] : diff.tensors) {
            auto it = mapped.find(k);
            ASSERT_NE(it, mapped.end()) << k;
            ASSERT_EQ(it->second.shape(), v.shape()) << k;
            EXPECT_EQ(max_abs_diff(it->second, v), 0.0f) << k;  // exact: renames, row splits, swapped halves
        }
        size_t n = 0;
        for (auto e = km.begin(); e != km.end(); ++e) {
            const auto& d = e.value()["diffusers"];
            for (const auto& name : d.is_array() ? d : nlohmann::json::array({d})) {
                EXPECT_EQ(mmdit_original_name(name.get<std::string>()), e.key()) << name;
                ++n;
            }
        }
        EXPECT_EQ(n, diff.tensors.size()) << m;
        // ... and back: the diffusers tensors give the original file exactly.
        const auto back = mmdit_to_original(diff.tensors);
        ASSERT_EQ(back.size(), orig.tensors.size()) << m;
        for (const auto& [k, v] : orig.tensors) {
            auto it = back.find(k);
            ASSERT_NE(it, back.end()) << k;
            EXPECT_EQ(max_abs_diff(it->second, v), 0.0f) << k;
        }
    }
}

TEST(MMDiT, SkipLayersMatchDiffusersWithTheBlocksLeftOut) {
    const auto m = load_sd3_transformer(kGolden + "sd3_transformer/sd35.safetensors");
    const WeightFile io = load_safetensors(kGolden + "sd3_transformer/io.safetensors");
    const WeightFile ref = load_safetensors(std::string(NUANCE_TEST_DATA) + "/mmdit/skip_layers_sd35.safetensors");
    auto in = [&](const char* k) { return io.tensors.at(std::string("sd35.") + k); };
    for (const auto& [skip, key] : std::vector<std::pair<std::vector<int64_t>, std::string>>{
             {{1}, "out_skip_1"}, {{0, 1}, "out_skip_0_1"}}) {
        const Tensor y = m->forward(in("hidden_states"), in("timestep"), in("encoder_hidden_states"),
                                    in("pooled_projections"), skip);
        EXPECT_LT(max_abs_diff(y, ref.tensors.at(key)), 1e-4f) << key;
    }
    EXPECT_THAT(test::error_of([&] {
                    m->forward(in("hidden_states"), in("timestep"), in("encoder_hidden_states"),
                               in("pooled_projections"), {3});
                }),
                HasSubstr("skip layer 3 is not a block index (0..2)"));
}

TEST(MMDiT, Bf16ProductsStayCloseToTheReference) {
    const WeightFile io = load_safetensors(kGolden + "sd3_transformer/io.safetensors");
    const auto m = load_sd3_transformer(kGolden + "original_sd3/sd35_original_f16.safetensors", Precision::BF16);
    auto in = [&](const char* k) { return io.tensors.at(std::string("sd35.") + k); };
    const Tensor y = m->forward(in("hidden_states"), in("timestep"), in("encoder_hidden_states"),
                                in("pooled_projections"));
    const Tensor r = in("out");
    EXPECT_LT(max_abs_diff(y, r), 0.05f * max_abs(r));  // bf16 rounding of every product's inputs
    EXPECT_GT(max_abs_diff(y, r), 0.0f);                // ... and the products did run in bf16
}

TEST(MMDiT, PresetsHaveThePublishedSizes) {
    auto params = [](const std::string& name) {
        SD3Transformer2DModel m(mmdit_preset(name));  // shapes only: nothing is allocated
        int64_t n = 0;
        for_each_param(m, [&](const std::string&, Param& p) { n += shape_numel(p.shape); });
        return (double)n / 1e9;
    };
    EXPECT_NEAR(params("sd3-medium"), 2.08, 0.02);  // sd3_medium.safetensors: 4.17 GB of F16 weights
    EXPECT_NEAR(params("sd3.5-medium"), 2.47, 0.05);
    EXPECT_NEAR(params("sd3.5-large"), 8.06, 0.1);
    EXPECT_THAT(test::error_of([] { mmdit_preset("sd4"); }),
                HasSubstr("unknown SD3 transformer preset 'sd4' (known: [sd3-medium, sd3.5-medium, sd3.5-large, tiny])"));
}

TEST(MMDiT, RandomFilesInBothLayoutsLoadAndRun) {
    const std::string dir = NUANCE_SCRATCH_DIR;
    for (const bool original : {true, false}) {
        const std::string f = dir + "/nuance_mmdit_random_" + std::to_string(original) + ".safetensors";
        const int64_t n = write_random_mmdit(f, mmdit_preset("tiny"), DType::F16, 7, original);
        const WeightFile wf = load_safetensors(f);
        EXPECT_EQ(is_original_mmdit(wf.tensors), original);
        const auto m = load_sd3_transformer(f);  // the tiny preset has qk-norm: the heads are seen in the shapes
        EXPECT_EQ(m->config().heads, 4);
        EXPECT_EQ(m->config().dual_attention_layers, (std::vector<int64_t>{0, 1}));
        int64_t loaded = 0;
        for_each_param(*const_cast<SD3Transformer2DModel*>(m.get()),
                       [&](const std::string&, Param& p) { loaded += p.value.numel(); });
        EXPECT_EQ(loaded, n);
        const Tensor y = m->forward(Tensor::zeros({1, 16, 8, 12}), Tensor::full({1}, 500.0f),
                                    Tensor::zeros({1, 5, 32}), Tensor::zeros({1, 24}));
        EXPECT_EQ(y.shape(), (Shape{1, 16, 8, 12}));
        EXPECT_TRUE(std::isfinite(max_abs(y)));
        std::remove(f.c_str());
    }
}
