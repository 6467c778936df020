// Finite-difference gradchecks of the layer ops the UNet, VAE and CLIP text encoder use: linear, matmul, conv2d,
// group/layer norm, softmax, attention, embedding, nearest upsampling, and the shape ops.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "autograd/autograd.h"
#include "core/rng.h"
#include "ops/elementwise.h"

namespace nuance {
namespace {

Tensor randn(const Shape& s, uint64_t seed, float scale = 1.0f) {
    return mul(make_rng(RngKind::Cpu, seed)->randn(s), scale);
}

using Fn = std::function<Var(const std::vector<Var>&)>;

void check(const char* what, const Fn& f, const std::vector<Tensor>& in, GradcheckOptions o = {}) {
    const GradcheckResult r = gradcheck(f, in, o);
    EXPECT_TRUE(r.ok) << what << ": " << r.message;
    EXPECT_GT(r.checked, 0) << what;
}

TEST(AutogradGradcheckNn, Linear) {
    check("linear", [](auto& x) { return linear(x[0], x[1], x[2]); }, {randn({2, 3, 4}, 1), randn({5, 4}, 2),
                                                                         randn({5}, 3)});
    check("linear no bias", [](auto& x) { return linear(x[0], x[1]); }, {randn({3, 4}, 4), randn({2, 4}, 5)});
    // a transposed (non-contiguous) input view
    check("linear of a view", [](auto& x) { return linear(x[0].transpose(0, 1), x[1]); },
          {randn({4, 3}, 6), randn({2, 4}, 7)});
}

TEST(AutogradGradcheckNn, MatmulBatchedAndBroadcast) {
    check("matmul 2d", [](auto& x) { return matmul(x[0], x[1]); }, {randn({3, 4}, 8), randn({4, 2}, 9)});
    check("matmul batched", [](auto& x) { return matmul(x[0], x[1]); }, {randn({2, 3, 4}, 10), randn({2, 4, 5}, 11)});
    check("matmul broadcast", [](auto& x) { return matmul(x[0], x[1]); },
          {randn({2, 1, 3, 4}, 12), randn({3, 4, 2}, 13)});
    check("matmul transposed view", [](auto& x) { return matmul(x[0], x[1].transpose(-1, -2)); },
          {randn({2, 3, 4}, 14), randn({2, 5, 4}, 15)});
}

TEST(AutogradGradcheckNn, Conv2d) {
    check("conv 3x3 pad 1", [](auto& x) { return conv2d(x[0], x[1], x[2], Conv2dParams::same(1)); },
          {randn({2, 3, 5, 5}, 16), randn({4, 3, 3, 3}, 17, 0.5f), randn({4}, 18)});
    check("conv stride 2 (downsample)", [](auto& x) { return conv2d(x[0], x[1], x[2], Conv2dParams::same(1, 2)); },
          {randn({1, 2, 6, 6}, 19), randn({3, 2, 3, 3}, 20, 0.5f), randn({3}, 21)});
    check("conv 1x1 no bias", [](auto& x) { return conv2d(x[0], x[1], Var(), Conv2dParams{}); },
          {randn({2, 4, 3, 3}, 22), randn({2, 4, 1, 1}, 23)});
    Conv2dParams asym;  // VAE encoder downsample: pad (0, 1, 0, 1), stride 2
    asym.stride = 2;
    asym.padding = {0, 0, 1, 1};
    check("conv asymmetric pad", [asym](auto& x) { return conv2d(x[0], x[1], x[2], asym); },
          {randn({1, 2, 4, 4}, 24), randn({2, 2, 3, 3}, 25, 0.5f), randn({2}, 26)});
    Conv2dParams grouped = Conv2dParams::same(1);
    grouped.groups = 2;
    check("conv groups 2", [grouped](auto& x) { return conv2d(x[0], x[1], x[2], grouped); },
          {randn({1, 4, 4, 4}, 27), randn({2, 2, 3, 3}, 28, 0.5f), randn({2}, 29)});
}

TEST(AutogradGradcheckNn, GroupNorm) {
    const std::vector<Tensor> in{randn({2, 4, 3, 3}, 30), add(randn({4}, 31, 0.3f), 1.0f), randn({4}, 32, 0.3f)};
    check("group_norm", [](auto& x) { return group_norm(x[0], 2, x[1], x[2], 1e-5f); }, in);
    check("group_norm + silu", [](auto& x) { return group_norm(x[0], 2, x[1], x[2], 1e-5f, true); }, in);
    check("group_norm no affine", [](auto& x) { return group_norm(x[0], 4, Var(), Var(), 1e-6f); }, {in[0]});
    check("group_norm 3d input", [](auto& x) { return group_norm(x[0], 1, x[1], x[2], 1e-5f); },
          {randn({2, 4, 5}, 33), in[1], in[2]});
}

TEST(AutogradGradcheckNn, LayerNormAndSoftmax) {
    check("layer_norm", [](auto& x) { return layer_norm(x[0], x[1], x[2], 1e-5f); },
          {randn({2, 3, 6}, 34), add(randn({6}, 35, 0.3f), 1.0f), randn({6}, 36, 0.3f)});
    check("layer_norm no affine", [](auto& x) { return layer_norm(x[0], Var(), Var(), 1e-5f); }, {randn({4, 5}, 37)});
    check("softmax", [](auto& x) { return softmax(x[0]); }, {randn({3, 2, 5}, 38, 2.0f)});
}

TEST(AutogradGradcheckNn, Attention) {
    check("sdpa self", [](auto& x) { return scaled_dot_product_attention(x[0], x[1], x[2]); },
          {randn({2, 2, 4, 3}, 39), randn({2, 2, 4, 3}, 40), randn({2, 2, 4, 3}, 41)});
    check("sdpa causal", [](auto& x) { return scaled_dot_product_attention(x[0], x[1], x[2], true); },
          {randn({1, 2, 5, 3}, 42), randn({1, 2, 5, 3}, 43), randn({1, 2, 5, 3}, 44)});
    check("sdpa cross (Lq != Lk, dv != d, scale)",
          [](auto& x) { return scaled_dot_product_attention(x[0], x[1], x[2], false, 0.7f); },
          {randn({2, 1, 3, 4}, 45), randn({2, 1, 6, 4}, 46), randn({2, 1, 6, 2}, 47)});
    check("multi_head_attention causal", [](auto& x) { return multi_head_attention(x[0], x[1], x[2], 2, true); },
          {randn({2, 4, 6}, 48), randn({2, 4, 6}, 49), randn({2, 4, 6}, 50)});
    check("multi_head_attention cross", [](auto& x) { return multi_head_attention(x[0], x[1], x[2], 3); },
          {randn({1, 4, 6}, 51), randn({1, 7, 6}, 52), randn({1, 7, 6}, 53)});
}

TEST(AutogradGradcheckNn, EmbeddingScatterAdds) {
    const Tensor ids = Tensor::from_ids({1, 3, 1, 0, 3, 3}, {2, 3});
    check("embedding", [ids](auto& x) { return embedding(ids, x[0]); }, {randn({5, 4}, 54)});
    // Hand-computed: each row's gradient counts how often its id occurs.
    Var w(Tensor::zeros({5, 2}), true);
    backward(sum(embedding(ids, w)));
    EXPECT_THAT(w.grad().to_vector(), ::testing::ElementsAre(1, 1, 2, 2, 0, 0, 3, 3, 0, 0));
}

TEST(AutogradGradcheckNn, NearestUpsampleAndPad) {
    check("upsample x2", [](auto& x) { return interpolate_nearest(x[0], 6, 8); }, {randn({1, 2, 3, 4}, 55)});
    check("resize to odd size", [](auto& x) { return interpolate_nearest(x[0], 5, 3); }, {randn({1, 1, 3, 4}, 56)});
    check("pad2d", [](auto& x) { return pad2d(x[0], 1, 0, 2, 1, 0.5f); }, {randn({1, 2, 3, 3}, 57)});
    Var x(Tensor::from_vector({1, 2, 3, 4}, {1, 1, 2, 2}), true);
    backward(sum(interpolate_nearest(x, 4, 4)));
    EXPECT_THAT(x.grad().to_vector(), ::testing::ElementsAre(4, 4, 4, 4));
}

TEST(AutogradGradcheckNn, ShapeOps) {
    const std::vector<Tensor> in{randn({2, 3, 4}, 58)};
    check("reshape", [](auto& x) { return x[0].reshape({4, -1}) * x[0].reshape({4, 6}); }, in);
    check("permute", [](auto& x) { return x[0].permute({2, 0, 1}).contiguous(); }, in);
    check("transpose", [](auto& x) { return linear(x[0].transpose(0, 2), x[0].select(1, 0).transpose(0, 1)); }, in);
    check("slice", [](auto& x) { return x[0].slice(2, 1, 3) * 2.0f; }, in);
    check("narrow/select", [](auto& x) { return x[0].narrow(1, 1, 2).select(0, 1); }, in);
    check("unsqueeze/squeeze/flatten", [](auto& x) { return x[0].unsqueeze(1).flatten(2).squeeze(1); }, in);
    check("expand", [](auto& x) { return x[0].slice(1, 0, 1).expand({2, 3, 4}) * x[0]; }, in);
    check("cat", [](auto& x) { return cat({x[0], x[1], x[0]}, 1); }, {randn({2, 1, 3}, 59), randn({2, 2, 3}, 60)});
    check("chunk", [](auto& x) {
        auto [a, b] = chunk<2>(x[0], -1);  // GEGLU: a * gelu(b)
        return a * gelu(b);
    }, in);
}

TEST(AutogradGradcheckNn, ResnetAndTransformerBlocks) {
    // A UNet resnet block (GN+SiLU -> conv, + time embedding, GN+SiLU -> conv, + 1x1 shortcut) end to end.
    check("resnet block", [](auto& x) {
        Var h = conv2d(group_norm(x[0], 2, Var(), Var(), 1e-5f, true), x[1], Var(), Conv2dParams::same(1));
        h = h + linear(silu(x[2]), x[3]).unsqueeze(-1).unsqueeze(-1);
        h = conv2d(group_norm(h, 2, Var(), Var(), 1e-5f, true), x[4], Var(), Conv2dParams::same(1));
        return h + conv2d(x[0], x[5], Var(), Conv2dParams{});
    }, {randn({2, 2, 3, 3}, 61), randn({4, 2, 3, 3}, 62, 0.4f), randn({2, 3}, 63), randn({4, 3}, 64, 0.5f),
        randn({4, 4, 3, 3}, 65, 0.3f), randn({4, 2, 1, 1}, 66)});
    // A pre-LN transformer block with a causal self-attention (CLIP text encoder layer) and a quick_gelu MLP.
    check("clip layer", [](auto& x) {
        const Var& t = x[0];
        const Var n1 = layer_norm(t, Var(), Var(), 1e-5f);
        Var h = t + linear(multi_head_attention(linear(n1, x[1]), linear(n1, x[2]), linear(n1, x[3]), 2, true), x[4]);
        return h + linear(quick_gelu(linear(layer_norm(h, Var(), Var(), 1e-5f), x[5])), x[6]);
    }, {randn({1, 3, 4}, 67), randn({4, 4}, 68, 0.5f), randn({4, 4}, 69, 0.5f), randn({4, 4}, 70, 0.5f),
        randn({4, 4}, 71, 0.5f), randn({8, 4}, 72, 0.5f), randn({4, 8}, 73, 0.5f)});
}

}  // namespace
}  // namespace nuance
