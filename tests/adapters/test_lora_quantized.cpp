// LoRAs on quantized weights (issue 14 item 3): applied at run time beside the blocks, never merged into them;
// checked against merging the same LoRA into the dequantized weights, and restore() gives the untouched model back.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <unistd.h>

#include "../backends/cpu/quantized_test_util.h"
#include "../test_util.h"
#include "lora_test_util.h"
#include "adapters/lora.h"
#include "backends/backend.h"
#include "io/safetensors.h"
#include "nn/layers.h"

namespace nuance {
namespace {

namespace fs = std::filesystem;
using test::random_input;
using test::random_weight;

// A Linear [5, 64], a 3x3 conv [4, 32, 3, 3] and a 1x1 conv [6, 32, 1, 1].
struct Net : Module {
    Linear proj{64, 5};
    Conv2d conv{32, 4, 3, 1, 1};
    Conv2d pw{32, 6, 1};
    void visit(ParamVisitor& v) override { v("proj", proj); v("conv_in", conv); v("pw", pw); }
};

struct Models {
    Net q, f;  // quantized, and the same weights dequantized to F32
    Models() {
        std::map<std::string, Tensor> t;
        t["proj.weight"] = random_weight(GgmlType::Q4_0, {5, 64}, 1);
        t["proj.bias"] = random_input({5}, 2);
        t["conv_in.weight"] = random_weight(GgmlType::Q8_0, {4, 32, 3, 3}, 3);
        t["conv_in.bias"] = random_input({4}, 4);
        t["pw.weight"] = random_weight(GgmlType::Q5_1, {6, 32, 1, 1}, 5);
        t["pw.bias"] = random_input({6}, 6);
        LoadOptions o;
        o.matrices_as_stored = true;
        o.matrix_compute = Precision::FP32;
        load_module(q, t, o);
        for (auto& [k, v] : t) v = dequantize_weight(v);
        load_module(f, t, o);
    }
    LoraComponents qc() { return {{"unet", &q}}; }
    LoraComponents fc() { return {{"unet", &f}}; }
};

struct Outputs {
    std::vector<float> proj, conv, pw;
};
Outputs run(Net& n) {
    const Tensor x = random_input({3, 64}, 10), img = random_input({2, 32, 5, 6}, 11);
    return {n.proj(x).to_vector(), n.conv(img).to_vector(), n.pw(img).to_vector()};
}

void expect_close(const Outputs& a, const Outputs& b, double tol) {
    for (const auto& [x, y] : {std::pair{&a.proj, &b.proj}, {&a.conv, &b.conv}, {&a.pw, &b.pw}}) {
        ASSERT_EQ(x->size(), y->size());
        for (size_t i = 0; i < x->size(); ++i) EXPECT_NEAR((*x)[i], (*y)[i], tol * (1.0 + std::fabs((*y)[i])));
    }
}

struct Dir : test::AdapterDir {
    Dir() : test::AdapterDir("nuance_qlora_") {}
};

TEST(LoraQuantized, RunTimeLoraMatchesMergeIntoDequantizedWeights) {
    Dir d;
    Models m;
    const Outputs before = run(m.q);
    const Tensor q_proj = m.q.proj.weight.value;
    const uint8_t* blocks = quantized_weight_view(q_proj)->data;
    // kohya LoRA on the Linear (rank 3, alpha 1.5), LoCon on the 3x3 conv (rank 2, no alpha), LoHa on the 1x1 conv.
    const std::string a = d.file(
        "a.safetensors",
        {{"lora_unet_proj.lora_down.weight", random_input({3, 64}, 20, 0.1f)},
         {"lora_unet_proj.lora_up.weight", random_input({5, 3}, 21, 0.1f)},
         {"lora_unet_proj.alpha", Tensor::scalar(1.5f)},
         {"lora_unet_conv_in.lora_down.weight", random_input({2, 32, 3, 3}, 22, 0.05f)},
         {"lora_unet_conv_in.lora_up.weight", random_input({4, 2, 1, 1}, 23, 0.1f)},
         {"lora_unet_pw.hada_w1_a", random_input({6, 2}, 24, 0.3f)}, {"lora_unet_pw.hada_w1_b", random_input({2, 32}, 25, 0.3f)},
         {"lora_unet_pw.hada_w2_a", random_input({6, 2}, 26, 0.3f)}, {"lora_unet_pw.hada_w2_b", random_input({2, 32}, 27, 0.3f)}});
    const std::string b = d.file("b.safetensors", {{"lora_unet_proj.lora_down.weight", random_input({2, 64}, 30, 0.1f)},
                                                   {"lora_unet_proj.lora_up.weight", random_input({5, 2}, 31, 0.1f)}});
    LoraMerge mq, mf;
    EXPECT_EQ(mq.apply(m.qc(), load_lora(a), 0.7f).matched, 3);
    EXPECT_EQ(mq.apply(m.qc(), load_lora(b), -0.4f).matched, 1);  // stacked
    mf.apply(m.fc(), load_lora(a), 0.7f);
    mf.apply(m.fc(), load_lora(b), -0.4f);
    // The blocks are not rewritten: the weight is still a handle over the same bytes, with two patches.
    const auto v = quantized_weight_view(m.q.proj.weight.value);
    ASSERT_TRUE(v.has_value());
    EXPECT_EQ(v->data, blocks);
    EXPECT_EQ(v->patches->size(), 2u);
    const Outputs with = run(m.q), merged = run(m.f);
    expect_close(with, merged, 1e-5);
    // The LoRA did something measurable.
    double moved = 0;
    for (size_t i = 0; i < with.proj.size(); ++i) moved = std::max(moved, (double)std::fabs(with.proj[i] - before.proj[i]));
    EXPECT_GT(moved, 1e-3);
    // bf16 products see the same patches (the patch sums stay f32).
    m.q.proj.weight.compute = m.f.proj.weight.compute = Precision::BF16;
    const Tensor x = random_input({3, 64}, 10);
    const std::vector<float> yq = m.q.proj(x).to_vector(), yf = m.f.proj(x).to_vector();
    for (size_t i = 0; i < yq.size(); ++i) EXPECT_NEAR(yq[i], yf[i], 0.02 * (1.0 + std::fabs(yf[i])));
    m.q.proj.weight.compute = m.f.proj.weight.compute = Precision::FP32;
    // restore(): the very handles the model had, outputs bit for bit.
    mq.restore();
    EXPECT_EQ(m.q.proj.weight.value.storage(), q_proj.storage());
    const Outputs after = run(m.q);
    EXPECT_EQ(after.proj, before.proj);
    EXPECT_EQ(after.conv, before.conv);
    EXPECT_EQ(after.pw, before.pw);
}

// IA3, OFT, GLoRA and a bias diff (LyCORIS kinds whose delta is a function of the weight) on quantized layers: the
// delta is made from the dequantized weight and runs beside the blocks, as for LoHa; a bias diff moves the bias.
TEST(LoraQuantized, WeightDependentLycorisKindsRunBesideTheBlocks) {
    Dir d;
    Models m;
    const Outputs before = run(m.q);
    const std::string a = d.file(
        "a.safetensors",
        {{"lora_unet_proj.oft_blocks", random_input({1, 5, 5}, 40, 0.2f)},
         {"lora_unet_proj.rescale", random_input({5, 1}, 41, 0.1f)},
         {"lora_unet_proj.diff_b", random_input({5}, 42, 0.5f)},
         {"lora_unet_conv_in.weight", random_input({1, 4, 1, 1}, 43, 0.3f)},
         {"lora_unet_conv_in.on_input", Tensor::scalar(0.0f)},
         {"lora_unet_pw.a1.weight", random_input({32, 2, 1, 1}, 44, 0.2f)},
         {"lora_unet_pw.a2.weight", random_input({2, 32, 1, 1}, 45, 0.2f)},
         {"lora_unet_pw.b1.weight", random_input({6, 2, 1, 1}, 46, 0.2f)},
         {"lora_unet_pw.b2.weight", random_input({2, 32, 1, 1}, 47, 0.2f)},
         {"lora_unet_pw.alpha", Tensor::scalar(1.0f)}});
    // a plain LoRA first: the weight-dependent deltas after it see the weight with its patch, as the float merge does
    const std::string b = d.file("b.safetensors", {{"lora_unet_proj.lora_down.weight", random_input({2, 64}, 30, 0.3f)},
                                                   {"lora_unet_proj.lora_up.weight", random_input({5, 2}, 31, 0.3f)}});
    LoraMerge mq, mf;
    mq.apply(m.qc(), load_lora(b), 0.9f);
    mf.apply(m.fc(), load_lora(b), 0.9f);
    const LoraFile f = load_lora(a);
    EXPECT_EQ(mq.apply(m.qc(), f, 0.6f).matched, 3);
    mf.apply(m.fc(), f, 0.6f);
    EXPECT_EQ(quantized_weight_view(m.q.proj.weight.value)->patches->size(), 2u);  // still the blocks, plus patches
    const Outputs with = run(m.q), merged = run(m.f);
    expect_close(with, merged, 1e-5);
    double moved = 0;
    for (size_t i = 0; i < with.conv.size(); ++i) moved = std::max(moved, (double)std::fabs(with.conv[i] - before.conv[i]));
    EXPECT_GT(moved, 1e-3);
    mq.restore();
    EXPECT_EQ(run(m.q).proj, before.proj);
}

TEST(LoraQuantized, PatchErrorsNameTheWeight) {
    const Tensor w = random_weight(GgmlType::Q4_0, {5, 64}, 1);
    QuantizedWeightPatch p;
    p.a = random_input({2, 32}, 1);
    EXPECT_THAT(test::error_of([&] { quantized_weight_with_patch(w, p); }),
                ::testing::HasSubstr("weight patch for Q4_0[5, 64]: a must be F32 [r, 64], got F32[2, 32]"));
    p.a = random_input({2, 64}, 1);
    p.b = random_input({5, 3}, 2);
    EXPECT_THAT(test::error_of([&] { quantized_weight_with_patch(w, p); }), ::testing::HasSubstr("b must be F32 [n, 2]"));
    p.b = random_input({7, 2}, 2);
    EXPECT_THAT(test::error_of([&] { quantized_weight_with_patch(w, p); }), ::testing::HasSubstr("7 rows for a weight of 5"));
    p.b = random_input({5, 2}, 2);
    p.scale = NAN;
    EXPECT_THAT(test::error_of([&] { quantized_weight_with_patch(w, p); }), ::testing::HasSubstr("is not finite"));
    EXPECT_THAT(test::error_of([&] { quantized_weight_with_patch(random_input({5, 64}, 3), p); }),
                ::testing::HasSubstr("is not a quantized weight"));
    // A patch on some rows of a handle (a fused weight's slice) adds only to those rows.
    p.scale = 2.0f;
    const Tensor patched = quantized_weight_with_patch(w.narrow(0, 1, 2), [&] {
        QuantizedWeightPatch r;
        r.a = random_input({2, 64}, 4);
        r.scale = 2.0f;
        return r;
    }());
    const Tensor x = random_input({3, 64}, 5);
    const std::vector<float> base = linear(x, w.narrow(0, 1, 2), Tensor(), Precision::FP32).to_vector();
    const std::vector<float> got = linear(x, patched, Tensor(), Precision::FP32).to_vector();
    const std::vector<float> delta = linear(x, random_input({2, 64}, 4), Tensor(), Precision::FP32).to_vector();
    for (size_t i = 0; i < got.size(); ++i) EXPECT_NEAR(got[i], base[i] + 2.0f * delta[i], 1e-4);
}

}  // namespace
}  // namespace nuance
