// The building blocks every model uses. Parameter names are PyTorch's (weight, bias).
#pragma once
#include "nn/module.h"
#include "ops/ops.h"

namespace nuance {

struct Linear : Module {
    Param weight, bias;
    bool has_bias = true;
    Linear() = default;
    Linear(int64_t in, int64_t out, bool bias_ = true) : weight({out, in}, true), bias({out}), has_bias(bias_) {}
    int64_t in_features() const { return weight.shape[1]; }
    int64_t out_features() const { return weight.shape[0]; }
    Tensor operator()(const Tensor& x) const { return linear(x, *weight, has_bias ? *bias : Tensor(), weight.compute); }
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
    Tensor operator()(const Tensor& x, bool fuse_silu = false) const {
        return group_norm(x, groups, *weight, *bias, eps, fuse_silu);
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
    Tensor operator()(const Tensor& x) const {
        return affine ? layer_norm(x, *weight, *bias, eps) : layer_norm(x, Tensor(), Tensor(), eps);
    }
    void visit(ParamVisitor& v) override {
        if (affine) { v("weight", weight); v("bias", bias); }
    }
};

}  // namespace nuance
