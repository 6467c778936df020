// LoRA-family adapters (src/adapters): the golden case (every format PASS), hand-computed merges on a tiny module,
// restore bit-exactness, stacking, the file spellings, SD3/Flux original names written into nuance's split
// layers, and the errors for files that do not fit.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <unistd.h>

#include "adapters/lora.h"
#include "eval/check_golden.h"
#include "eval/golden/lora_golden.h"
#include "io/safetensors.h"
#include "models/flux/flux_load.h"
#include "models/flux/flux_transformer.h"
#include "models/mmdit/mmdit.h"
#include "models/mmdit/mmdit_load.h"
#include "nn/layers.h"
#include "../test_util.h"
#include "lora_test_util.h"

namespace nuance {
namespace {

namespace fs = std::filesystem;
using test::error_of;

struct Dir : test::AdapterDir {
    Dir() : test::AdapterDir("nuance_lora_") {}
};

Tensor T(const std::vector<float>& v, const Shape& s) { return Tensor::from_vector(v, s); }

// A tiny "UNet": one Linear [2, 3] and one 3x3 conv [2, 2, 3, 3]; and a "text encoder" with one Linear.
struct TinyNet : Module {
    Linear proj{3, 2};
    Conv2d conv{2, 2, 3, 1, 1};
    void visit(ParamVisitor& v) override { v("blocks.0.proj", proj); v("conv_in", conv); }
};
struct TinyTe : Module {
    Linear q{2, 2};
    void visit(ParamVisitor& v) override { v("text_model.encoder.layers.0.self_attn.q_proj", q); }
};

struct Tiny {
    TinyNet net;
    TinyTe te;
    Tiny() {
        init_random(net, 1);
        init_random(te, 2);
    }
    LoraComponents comps() { return {{"text_encoder", &te}, {"unet", &net}}; }
};

std::vector<float> vals(const Param& p) { return p.value.to_vector(); }

TEST(LoraGolden, EveryFormatPasses) {
    const auto lines = check_golden_case(std::string(NUANCE_TEST_DATA) + "/golden/lora");
    int pass = 0, skip = 0;
    for (const auto& l : lines) {
        EXPECT_TRUE(l.pass || l.skip) << format_line(l);
        pass += l.pass;
        skip += l.skip;
        if (l.skip) EXPECT_NE(l.name.find("_diffusers."), std::string::npos) << l.name;
    }
    EXPECT_GE(pass, 90);
    EXPECT_EQ(skip, 24);
}

TEST(LoraMerge, KohyaLinearHandComputedAndRestoredBitExact) {
    Dir d;
    Tiny m;
    const std::vector<float> w0 = vals(m.net.proj.weight);
    const Tensor original = m.net.proj.weight.value;
    // rank 1, alpha 0.5: scale 0.5; delta = up [2,1] @ down [1,3].
    const std::string f = d.file("k.safetensors", {{"lora_unet_blocks_0_proj.lora_down.weight", T({1, 2, 3}, {1, 3})},
                                                   {"lora_unet_blocks_0_proj.lora_up.weight", T({1, -1}, {2, 1})},
                                                   {"lora_unet_blocks_0_proj.alpha", Tensor::scalar(0.5f)}});
    const LoraFile lf = load_lora(f);
    ASSERT_EQ(lf.modules.size(), 1u);
    EXPECT_EQ(lf.name, "k");
    LoraMerge merge;
    const LoraApplyReport rep = merge.apply(m.comps(), lf, 0.8f);
    EXPECT_EQ(rep.matched, 1);
    const std::vector<float> w1 = vals(m.net.proj.weight);
    const float up[2] = {1, -1}, down[3] = {1, 2, 3};
    for (int o = 0; o < 2; ++o)
        for (int i = 0; i < 3; ++i) EXPECT_FLOAT_EQ(w1[o * 3 + i], w0[o * 3 + i] + 0.8f * 0.5f * up[o] * down[i]);
    EXPECT_NE(m.net.proj.weight.value.storage(), original.storage());
    merge.restore();
    EXPECT_EQ(m.net.proj.weight.value.storage(), original.storage());
    EXPECT_EQ(std::memcmp(vals(m.net.proj.weight).data(), w0.data(), w0.size() * 4), 0);
    EXPECT_TRUE(merge.empty());
}

TEST(LoraMerge, LoConConv3x3NoAlphaAndStacking) {
    Dir d;
    Tiny m;
    const std::vector<float> w0 = vals(m.net.conv.weight);
    std::vector<float> dn(18);
    for (int i = 0; i < 18; ++i) dn[(size_t)i] = 0.1f * (float)(i - 9);
    // no alpha: scale 1; down [1, 2, 3, 3], up [2, 1, 1, 1].
    const std::string a = d.file("a.safetensors", {{"lora_unet_conv_in.lora_down.weight", T(dn, {1, 2, 3, 3})},
                                                   {"lora_unet_conv_in.lora_up.weight", T({2, 3}, {2, 1, 1, 1})}});
    const std::string b = d.file("b.safetensors", {{"lora_unet_conv_in.lora_down.weight", T(dn, {1, 2, 3, 3})},
                                                   {"lora_unet_conv_in.lora_up.weight", T({1, 1}, {2, 1, 1, 1})},
                                                   {"lora_unet_conv_in.alpha", Tensor::scalar(2.0f)}});
    LoraMerge merge;
    merge.apply(m.comps(), load_lora(a), 1.0f);
    merge.apply(m.comps(), load_lora(b), -0.5f);
    const std::vector<float> w = vals(m.net.conv.weight);
    const float upa[2] = {2, 3};
    for (int o = 0; o < 2; ++o)
        for (int k = 0; k < 18; ++k)
            EXPECT_NEAR(w[(size_t)(o * 18 + k)], w0[(size_t)(o * 18 + k)] + upa[o] * dn[(size_t)k] - 0.5f * 2.0f * dn[(size_t)k], 1e-6);
    EXPECT_EQ(merge.layers(), 1u);
    merge.restore();
    EXPECT_EQ(std::memcmp(vals(m.net.conv.weight).data(), w0.data(), w0.size() * 4), 0);
}

TEST(LoraMerge, F16WeightsStayF16) {
    Dir d;
    Tiny m;
    m.net.proj.weight.value = m.net.proj.weight.value.to(DType::F16);
    const std::string f = d.file("k.safetensors", {{"lora_unet_blocks_0_proj.lora_down.weight", T({1, 0, 0}, {1, 3})},
                                                   {"lora_unet_blocks_0_proj.lora_up.weight", T({1, 0}, {2, 1})}});
    LoraMerge merge;
    const float before = m.net.proj.weight.value.to_vector()[0];
    merge.apply(m.comps(), load_lora(f), 1.0f);
    EXPECT_EQ(m.net.proj.weight.value.dtype(), DType::F16);
    EXPECT_NEAR(m.net.proj.weight.value.to_vector()[0], before + 1.0f, 1e-3);
}

TEST(LoraFile, PeftAndOlderDiffusersSpellings) {
    Dir d;
    Tiny m;
    const std::vector<float> wq = vals(m.te.q.weight), wp = vals(m.net.proj.weight);
    const std::string f = d.file(
        "p.safetensors",
        {{"unet.blocks.0.proj.lora_A.default.weight", T({1, 1, 1}, {1, 3})},
         {"unet.blocks.0.proj.lora_B.default.weight", T({1, 2}, {2, 1})},
         // diffusers' old text-encoder spelling: to_q_lora on CLIP's self_attn means q_proj
         {"text_encoder.text_model.encoder.layers.0.self_attn.to_q_lora.down.weight", T({1, 0}, {1, 2})},
         {"text_encoder.text_model.encoder.layers.0.self_attn.to_q_lora.up.weight", T({0, 1}, {2, 1})}});
    const LoraFile lf = load_lora(f);
    ASSERT_EQ(lf.modules.size(), 2u);
    LoraMerge merge;
    const auto rep = merge.apply(m.comps(), lf, 1.0f);
    EXPECT_EQ(rep.matched, 2) << (rep.unmatched.empty() ? "" : rep.unmatched[0]);
    EXPECT_FLOAT_EQ(vals(m.net.proj.weight)[3], wp[3] + 2.0f);
    EXPECT_FLOAT_EQ(vals(m.te.q.weight)[2], wq[2] + 1.0f);
    EXPECT_FLOAT_EQ(vals(m.te.q.weight)[0], wq[0]);
}

TEST(LoraErrors, NothingMatchesNamesFileCountsAndExamples) {
    Dir d;
    Tiny m;
    const std::string f = d.file("x.safetensors", {{"lora_unet_nowhere_a.lora_down.weight", T({1, 1, 1}, {1, 3})},
                                                   {"lora_unet_nowhere_a.lora_up.weight", T({1, 1}, {2, 1})}});
    LoraMerge merge;
    const std::string e = error_of([&] { merge.apply(m.comps(), load_lora(f), 1.0f); });
    EXPECT_NE(e.find("x.safetensors': none of its 1 modules match a layer of the model"), std::string::npos) << e;
    EXPECT_NE(e.find("unmatched e.g. lora_unet_nowhere_a"), std::string::npos) << e;
    EXPECT_NE(e.find("unet.blocks.0.proj"), std::string::npos) << e;
    EXPECT_TRUE(merge.empty());
}

TEST(LoraErrors, MoreThanHalfUnmatchedWarns) {
    Dir d;
    Tiny m;
    std::vector<std::pair<std::string, Tensor>> t = {{"lora_unet_blocks_0_proj.lora_down.weight", T({1, 1, 1}, {1, 3})},
                                                     {"lora_unet_blocks_0_proj.lora_up.weight", T({1, 1}, {2, 1})}};
    for (const char* n : {"lora_unet_gone_1", "lora_unet_gone_2"}) {
        t.push_back({std::string(n) + ".lora_down.weight", T({1, 1, 1}, {1, 3})});
        t.push_back({std::string(n) + ".lora_up.weight", T({1, 1}, {2, 1})});
    }
    LoraMerge merge;
    const auto rep = merge.apply(m.comps(), load_lora(d.file("h.safetensors", t)), 1.0f);
    ASSERT_EQ(rep.warnings.size(), 1u);
    EXPECT_NE(rep.warnings[0].find("h.safetensors': 2 of its 3 modules match no layer of the model (e.g. lora_unet_gone_1"),
              std::string::npos) << rep.warnings[0];
}

TEST(LoraErrors, ShapeMismatchNamesBothShapesAndChangesNothing) {
    Dir d;
    Tiny m;
    const Tensor before = m.net.conv.weight.value;
    const std::string f = d.file("s.safetensors", {{"lora_unet_conv_in.lora_down.weight", T({1, 1, 1, 1}, {1, 4, 1, 1})},
                                                   {"lora_unet_conv_in.lora_up.weight", T({1, 1}, {2, 1, 1, 1})},
                                                   {"lora_unet_blocks_0_proj.lora_down.weight", T({1, 1, 1}, {1, 3})},
                                                   {"lora_unet_blocks_0_proj.lora_up.weight", T({1, 1}, {2, 1})}});
    LoraMerge merge;
    const std::string e = error_of([&] { merge.apply(m.comps(), load_lora(f), 1.0f); });
    EXPECT_NE(e.find("module lora_unet_conv_in makes a [2, 4] delta but the unet's layer 'conv_in' is [2, 2, 3, 3]"),
              std::string::npos) << e;
    EXPECT_TRUE(merge.empty());
    EXPECT_EQ(m.net.conv.weight.value.storage(), before.storage());
}

TEST(LoraErrors, SdxlLoraOnSd1SaysSo) {
    Dir d;
    Tiny m;
    const std::string f = d.file("xl.safetensors",
                                 {{"lora_unet_blocks_0_proj.lora_down.weight", T({1, 1, 1}, {1, 3})},
                                  {"lora_unet_blocks_0_proj.lora_up.weight", T({1, 1}, {2, 1})},
                                  {"lora_te2_text_model_encoder_layers_0_self_attn_q_proj.lora_down.weight", T({1, 1}, {1, 2})},
                                  {"lora_te2_text_model_encoder_layers_0_self_attn_q_proj.lora_up.weight", T({1, 1}, {2, 1})}});
    LoraMerge merge;
    const std::string e = error_of([&] { merge.apply(m.comps(), load_lora(f), 1.0f); });
    EXPECT_NE(e.find("has modules for a second text encoder (lora_te2_text_model_encoder_layers_0_self_attn_q_proj) but "
                     "the model has only one: a LoRA for SDXL on an SD1.x/SD2.x model?"),
              std::string::npos) << e;
}

TEST(LoraErrors, HostileFactors) {
    Dir d;
    auto err = [&](const std::string& name, const std::vector<std::pair<std::string, Tensor>>& t) {
        return error_of([&] { load_lora(d.file(name, t)); });
    };
    EXPECT_NE(err("u.safetensors", {{"m.lora_down.weight", T({1, 1, 1, 1, 1, 1}, {2, 3})},
                                    {"m.lora_up.weight", T({1, 1, 1}, {1, 3})}})
                  .find("module m: lora_up [1, 3] does not fit lora_down [2, 3] (expected [out, 2] or [out, 2, 1, 1])"),
              std::string::npos);
    EXPECT_NE(err("n.safetensors", {{"m.lora_down.weight", T({1, 1}, {1, 2})}}).find("module m (LoRA) has no 'up' tensor"),
              std::string::npos);
    EXPECT_NE(err("a.safetensors", {{"m.lora_down.weight", T({1, 1}, {1, 2})},
                                    {"m.lora_up.weight", T({1, 1}, {2, 1})},
                                    {"m.alpha", T({1, 2}, {2})}})
                  .find("'m.alpha' must be one float, got F32[2]"),
              std::string::npos);
    EXPECT_NE(err("t.safetensors", {{"m.lora_down.weight", T({1, 1}, {1, 2})},
                                    {"m.lora_up.weight", T({1, 1}, {2, 1})},
                                    {"m.lora_mid.weight", T({1, 1}, {1, 2, 1, 1})}})
                  .find("module m: lora_mid [1, 2, 1, 1] does not fit lora_down [1, 2] (expected [1, in, 1, 1])"),
              std::string::npos);
    EXPECT_NE(err("e.safetensors", {{"model.weight", T({1}, {1})}})
                  .find("e.safetensors' holds no LoRA / LyCORIS weights (1 tensors, e.g. model.weight)"),
              std::string::npos);
    // LoKr whose Kronecker product would not make the layer: refused before any product is formed.
    Dir d2;
    Tiny m;
    const std::string f = d.file("k.safetensors", {{"lora_unet_blocks_0_proj.lokr_w1", T(std::vector<float>(10000, 1), {100, 100})},
                                                   {"lora_unet_blocks_0_proj.lokr_w2", T(std::vector<float>(10000, 1), {100, 100})}});
    LoraMerge merge;
    const std::string e = error_of([&] { merge.apply(m.comps(), load_lora(f), 1.0f); });
    EXPECT_NE(e.find("makes kron([100, 100], [100, 100]) but the model's weight is [2, 3]"), std::string::npos) << e;
}

// Flux: BFL / kohya names of the fused qkv and linear1 write into row slices of the split layers.
TEST(LoraFlux, BflFusedQkvAndLinear1WriteRowSlices) {
    auto flux = load_flux_transformer(std::string(NUANCE_TEST_DATA) + "/golden/flux_transformer/flux_dev.safetensors",
                                      LoadOptions{});
    auto& blk = flux->single_transformer_blocks.at(0);
    const int64_t D = blk.to_q.out_features(), mlp = blk.proj_mlp.out_features();
    const int64_t rows = 3 * D + mlp;
    std::vector<float> up((size_t)rows), down((size_t)D, 0.0f);
    for (int64_t r = 0; r < rows; ++r) up[(size_t)r] = (float)(r + 1);
    down[0] = 1.0f;  // delta[r][0] = r + 1, other columns 0
    Dir d;
    const std::string f = d.file("flux.safetensors", {{"lora_unet_single_blocks_0_linear1.lora_down.weight", T(down, {1, D})},
                                                      {"lora_unet_single_blocks_0_linear1.lora_up.weight", T(up, {rows, 1})}});
    const std::vector<float> k0 = blk.to_k.weight.value.to_vector(), m0 = blk.proj_mlp.weight.value.to_vector();
    LoraMerge merge;
    const auto rep = merge.apply({{"transformer", flux.get()}}, load_lora(f), 1.0f);
    EXPECT_EQ(rep.matched, 1);
    const std::vector<float> k1 = blk.to_k.weight.value.to_vector(), m1 = blk.proj_mlp.weight.value.to_vector();
    for (int64_t r = 0; r < D; ++r) EXPECT_FLOAT_EQ(k1[(size_t)(r * D)], k0[(size_t)(r * D)] + (float)(D + r + 1));
    EXPECT_FLOAT_EQ(m1[(size_t)((mlp - 1) * D)], m0[(size_t)((mlp - 1) * D)] + (float)rows);
    EXPECT_FLOAT_EQ(m1[1], m0[1]);
    EXPECT_EQ(merge.layers(), 4u);  // to_q, to_k, to_v, proj_mlp
    merge.restore();
    EXPECT_EQ(blk.to_k.weight.value.to_vector(), k0);
}

TEST(LoraFlux, DiffusersSplitNamesAndDoubleBlockQkv) {
    auto flux = load_flux_transformer(std::string(NUANCE_TEST_DATA) + "/golden/flux_transformer/flux_dev.safetensors",
                                      LoadOptions{});
    auto& attn = flux->transformer_blocks.at(0).attn;
    const int64_t D = attn.to_v.out_features();
    Dir d;
    std::vector<float> up3((size_t)(3 * D), 0.0f), down((size_t)D, 0.0f), up1((size_t)D, 0.0f);
    up3[(size_t)(2 * D)] = 1.0f;  // first row of v
    up1[0] = 1.0f;
    down[1] = 2.0f;
    const std::string f = d.file("fd.safetensors",
                                 {{"diffusion_model.double_blocks.0.img_attn.qkv.lora_A.weight", T(down, {1, D})},
                                  {"diffusion_model.double_blocks.0.img_attn.qkv.lora_B.weight", T(up3, {3 * D, 1})},
                                  {"transformer.transformer_blocks.0.attn.add_q_proj.lora_A.weight", T(down, {1, D})},
                                  {"transformer.transformer_blocks.0.attn.add_q_proj.lora_B.weight", T(up1, {D, 1})}});
    const float v0 = attn.to_v.weight.value.to_vector()[1], q0 = attn.add_q_proj.weight.value.to_vector()[1];
    LoraMerge merge;
    EXPECT_EQ(merge.apply({{"transformer", flux.get()}}, load_lora(f), 0.5f).matched, 2);
    EXPECT_FLOAT_EQ(attn.to_v.weight.value.to_vector()[1], v0 + 1.0f);
    EXPECT_FLOAT_EQ(attn.add_q_proj.weight.value.to_vector()[1], q0 + 1.0f);
}

TEST(LoraSD3, OriginalQkvWritesSplitLayers) {
    auto sd3 = load_sd3_transformer(std::string(NUANCE_TEST_DATA) + "/golden/sd3_transformer/sd3.safetensors");
    Param* to_k = nullptr;
    for_each_param(*sd3, [&](const std::string& n, Param& p) {
        if (n == "transformer_blocks.0.attn.to_k.weight") to_k = &p;
    });
    ASSERT_NE(to_k, nullptr);
    const int64_t D = to_k->shape[0], in = to_k->shape[1];
    std::vector<float> up((size_t)(3 * D), 0.0f), down((size_t)in, 0.0f);
    up[(size_t)D] = 1.0f;  // first row of k
    down[0] = 1.0f;
    Dir d;
    const std::string f = d.file("sd3.safetensors", {{"lora_unet_joint_blocks_0_x_block_attn_qkv.lora_down.weight", T(down, {1, in})},
                                                     {"lora_unet_joint_blocks_0_x_block_attn_qkv.lora_up.weight", T(up, {3 * D, 1})}});
    const float k0 = to_k->value.to_vector()[0];
    LoraMerge merge;
    EXPECT_EQ(merge.apply({{"transformer", sd3.get()}}, load_lora(f), 1.0f).matched, 1);
    EXPECT_FLOAT_EQ(to_k->value.to_vector()[0], k0 + 1.0f);
}

}  // namespace
}  // namespace nuance
