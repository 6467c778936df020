// The CPU backend: oneDNN for products and convolutions (packed-weight cache: dnnl_cache.h), own AVX-512 kernels for
// flash attention, norms, elementwise maps, rope and the ggml block formats. One translation unit per op family
// (backends/cpu/{matmul,conv,conv_backward,attention,norm,modulate,rope,elementwise,shape_ops}.cpp); the ops in
// src/ops/ reach these only through backend_for(device) (backends/backend.h).
#pragma once
#include "backends/backend.h"

namespace nuance {

class CpuBackend final : public Backend {
public:
    const char* name() const override { return "cpu"; }
    // Host memory: the CPU needs no DeviceMemory (never called for it).
    std::shared_ptr<Storage> allocate(size_t bytes, Device device) override;
    void copy(const Tensor& dst, const Tensor& src) override;

    Precision default_precision() const override;
    void clear_packed_weights() override;
    size_t release_packed_weight(const Tensor& w) override;
    size_t packed_weights_bytes() const override;
    size_t packed_weights_over_budget_bytes() const override;
    size_t prune_packed_weights() override;

    Tensor linear(const Tensor& x, const Tensor& w, const Tensor& b, Precision compute, DType out) override;
    Tensor matmul(const Tensor& a, const Tensor& b, Precision compute) override;
    Tensor conv2d(const Tensor& x, const Tensor& w, const Tensor& b, const Conv2dParams& p,
                  Precision compute) override;
    Conv2dGrads conv2d_backward(const Tensor& x, const Tensor& w, const Tensor& g, const Conv2dParams& p, bool need_dx,
                                bool need_dw, bool need_db, Precision compute) override;
    Tensor scaled_dot_product_attention(const Tensor& q, const Tensor& k, const Tensor& v, bool causal, float scale,
                                        const Tensor& bias) override;
    Tensor multi_head_attention(const Tensor& q, const Tensor& k, const Tensor& v, int64_t heads, bool causal,
                                float scale, Precision compute) override;
    Tensor group_norm(const Tensor& x, int64_t groups, const Tensor& w, const Tensor& b, float eps, bool silu,
                      DType out) override;
    NormGrads group_norm_backward(const Tensor& x, const Tensor& w, const Tensor& b, const Tensor& g, int64_t groups,
                                  float eps, bool silu) override;
    Tensor layer_norm(const Tensor& x, const Tensor& w, const Tensor& b, float eps, DType out) override;
    Tensor rms_norm(const Tensor& x, const Tensor& w, float eps) override;
    Tensor softmax(const Tensor& x) override;
    Tensor layer_norm_modulate(const Tensor& x, const Tensor& shift, const Tensor& scale, float eps,
                               DType out) override;
    Tensor gated_residual(const Tensor& x, const Tensor& gate, const Tensor& y) override;
    Tensor unary(UnaryOp op, const Tensor& a, float p0, float p1, DType out) override;
    Tensor binary(BinaryOp op, const Tensor& a, const Tensor& b) override;
    Tensor activation_backward(UnaryOp op, const Tensor& x, const Tensor& g) override;
    Tensor geglu(const Tensor& x, DType out) override;
    void add_(Tensor& a, const Tensor& b) override;
    void mul_(Tensor& a, float s) override;
    void axpy_(Tensor& a, float alpha, const Tensor& b) override;
    Tensor sum(const Tensor& a, int64_t dim, bool keepdim) override;
    double sum_all(const Tensor& a) override;
    float max_abs(const Tensor& a) override;
    float max_abs_diff(const Tensor& a, const Tensor& b) override;
    Tensor rope_frequencies(const Tensor& ids, const std::vector<int64_t>& axes_dims, double theta) override;
    Tensor apply_rope(const Tensor& x, const Tensor& freqs, int64_t heads, DType out) override;
    Tensor rms_norm_rope(const Tensor& x, const Tensor& norm_weight, float eps, const Tensor& freqs, int64_t heads,
                         DType out) override;
    Tensor cat(const std::vector<Tensor>& ts, int64_t dim) override;
    Tensor pad2d(const Tensor& x, int64_t left, int64_t right, int64_t top, int64_t bottom, float value) override;
    Tensor interpolate_nearest(const Tensor& x, int64_t oh, int64_t ow, DType out) override;
    Tensor embedding(const Tensor& ids, const Tensor& weight) override;
    Tensor timestep_embedding(const Tensor& t, int64_t dim, bool flip_sin_to_cos, float shift, float scale,
                              int64_t max_period) override;
    Tensor dequantize(GgmlType type, const Tensor& packed, const Shape& shape) override;
};

}  // namespace nuance
