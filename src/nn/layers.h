// The building blocks every model uses. Parameter names are PyTorch's (weight, bias).
#pragma once
#include "nn/module.h"
#include "ops/ops.h"

namespace nuance {

// The dtype a product over weight w wants its input in: BF16 when it runs in bf16, else F32. An op whose output only
// feeds such products (a norm before a conv or the q/k/v projections) rounds its output to it in its own pass.
inline DType product_input_dtype(const Param& w) {
    const bool bf16 = w.compute == Precision::BF16 ||
                      (w.compute == Precision::Auto && w.value.defined() && w.value.dtype() == DType::BF16);
    return bf16 ? DType::BF16 : DType::F32;
}

struct Linear : Module {
    Param weight, bias;
    bool has_bias = true;
    Linear() = default;
    Linear(int64_t in, int64_t out, bool bias_ = true) : weight({out, in}, true), bias({out}), has_bias(bias_) {}
    int64_t in_features() const { return weight.shape[1]; }
    int64_t out_features() const { return weight.shape[0]; }
    Tensor operator()(const Tensor& x, DType out = DType::F32) const {
        return linear(x, *weight, has_bias ? *bias : Tensor(), weight.compute, out);
    }
    DType input_dtype() const { return product_input_dtype(weight); }
    void visit(ParamVisitor& v) override {
        v("weight", weight);
        if (has_bias) v("bias", bias);
    }
};

struct Conv2d : Module {
    Param weight, bias;
    Conv2dParams p;
    bool has_bias = true;
    Conv2d() = default;
    Conv2d(int64_t in, int64_t out, int64_t k, int64_t stride = 1, int64_t pad = 0, bool bias_ = true)
        : weight({out, in, k, k}, true), bias({out}), p(Conv2dParams::same(pad, stride)), has_bias(bias_) {}
    Tensor operator()(const Tensor& x) const {
        return conv2d(x, *weight, has_bias ? *bias : Tensor(), p, weight.compute);
    }
    DType input_dtype() const { return product_input_dtype(weight); }
    void visit(ParamVisitor& v) override {
        v("weight", weight);
        if (has_bias) v("bias", bias);
    }
};

struct GroupNorm : Module {
    Param weight, bias;
    int64_t groups = 32;
    float eps = 1e-5f;
    GroupNorm() = default;
    GroupNorm(int64_t groups_, int64_t channels, float eps_ = 1e-5f)
        : weight({channels}), bias({channels}), groups(groups_), eps(eps_) {}
    Tensor operator()(const Tensor& x, bool fuse_silu = false, DType out = DType::F32) const {
        return group_norm(x, groups, *weight, *bias, eps, fuse_silu, out);
    }
    void visit(ParamVisitor& v) override { v("weight", weight); v("bias", bias); }
};

struct LayerNorm : Module {
    Param weight, bias;
    float eps = 1e-5f;
    bool affine = true;
    LayerNorm() = default;
    explicit LayerNorm(int64_t dim, float eps_ = 1e-5f, bool affine_ = true)
        : weight({dim}), bias({dim}), eps(eps_), affine(affine_) {}
    Tensor operator()(const Tensor& x, DType out = DType::F32) const {
        return affine ? layer_norm(x, *weight, *bias, eps, out) : layer_norm(x, Tensor(), Tensor(), eps, out);
    }
    void visit(ParamVisitor& v) override {
        if (affine) { v("weight", weight); v("bias", bias); }
    }
};

// Linear -> SiLU -> Linear: diffusers' TimestepEmbedding and PixArtAlphaTextProjection(act="silu"), BFL's MLPEmbedder
// (in_layer / out_layer, mapped to linear_1 / linear_2 by the key maps).
struct MlpEmbedder : Module {
    Linear linear_1, linear_2;
    MlpEmbedder() = default;
    MlpEmbedder(int64_t in, int64_t out) : linear_1(in, out), linear_2(out, out) {}
    Tensor operator()(const Tensor& x) const { return linear_2(silu(linear_1(x))); }
    Tensor forward(const Tensor& x) const { return (*this)(x); }
    void visit(ParamVisitor& v) override { v("linear_1", linear_1); v("linear_2", linear_2); }
};

}  // namespace nuance
