// The backend interface: every kernel an op needs, per device (design.md §1, "Backend interface"; ggml's backend
// vtable is the model). src/ops/ checks nothing device-specific and calls backend_for(device) for each op; the CPU
// backend (backends/cpu/, oneDNN + own AVX-512 kernels) is registered for Device::cpu(); a CUDA backend is one more
// implementation registered for DeviceType::Cuda (docs/backends.md says what to implement).
//
// Contract of every kernel: the operands are on the backend's device, or small host tensors (ids, masks, timesteps,
// position tables that models build on the host: the backend uploads them); results are on the backend's device.
// Kernels check their operands' shapes and dtypes themselves and throw nuance::Error naming the op and the values.
// Shape letters as in the ops' headers (src/ops/*.h), which document each kernel's semantics.
#pragma once
#include <array>
#include <cstdint>
#include <vector>

#include "core/device.h"
#include "core/dtype.h"
#include "core/tensor.h"
#include "ops/conv.h"

namespace nuance {

enum class GgmlType : uint32_t;  // backends/cpu/ggml_quants.h

// Unary elementwise family: y = f(a; p0, p1). Scalars: AddScalar (a + p0), MulScalar (a * p0), RSubScalar (p0 - a),
// RDivScalar (p0 / a), Pow (a ^ p0), Clamp (clamp(a, p0, p1)).
enum class UnaryOp : uint8_t {
    AddScalar, MulScalar, RSubScalar, RDivScalar, Exp, Log, Sqrt, Abs, Square, Pow, Cos, Sin, Tanh, Sigmoid, Relu,
    Silu, Gelu, GeluTanh, QuickGelu, Clamp,
};
// Binary elementwise family with numpy broadcasting.
enum class BinaryOp : uint8_t { Add, Sub, Mul, Div, Maximum, Minimum };

const char* unary_op_name(UnaryOp op);    // "exp", "gelu_tanh", ...
const char* binary_op_name(BinaryOp op);  // "add", ...

// Gradients of a convolution (dx [N, C, H, W], dw [O, C/G, kh, kw], db [O]); undefined where not asked for.
struct Conv2dGrads {
    Tensor dx, dw, db;
};

struct NormGrads {
    Tensor dx, dw, db;  // dw, db: [C] F32 (the caller drops the ones it does not need)
};

class Backend : public DeviceMemory {
public:
    ~Backend() override = default;
    virtual const char* name() const = 0;  // "cpu", "cuda", ...

    // ---- precision and caches
    // The precision Auto means on this backend (CPU: BF16 where the CPU has native bf16 dot products, else FP32).
    virtual Precision default_precision() const = 0;
    Precision resolve_precision(Precision p) const { return p == Precision::Auto ? default_precision() : p; }
    // Drops every cached packed copy of a weight (the weights were edited in place, or memory is needed).
    virtual void clear_packed_weights() = 0;
    virtual size_t packed_weights_bytes() const = 0;
    // Frees the packed copies of weights that no longer exist (a dropped model); returns the bytes freed.
    virtual size_t prune_packed_weights() { return 0; }
    // Weights whose packed copies did not fit the budget (core/allocator.h: packed_weights_budget): packed per call.
    virtual size_t packed_weights_over_budget_bytes() const { return 0; }
    // Drops the packed copies of one weight (it is packed again on its next use); returns the bytes freed.
    virtual size_t release_packed_weight(const Tensor& /*w*/) { return 0; }

    // ---- dense products (ops/matmul.h): x·wᵀ + b with the weight packed once per weight tensor
    virtual Tensor linear(const Tensor& x, const Tensor& w, const Tensor& b, Precision compute, DType out) = 0;
    // compute: BF16 rounds both operands to bf16 (f32 accumulation and result); FP32/Auto f32.
    virtual Tensor matmul(const Tensor& a, const Tensor& b, Precision compute) = 0;

    // ---- convolution (ops/conv.h) and its gradients (autograd): x, w, g contiguous F32
    virtual Tensor conv2d(const Tensor& x, const Tensor& w, const Tensor& b, const Conv2dParams& p,
                          Precision compute) = 0;
    // compute: BF16 runs the products on bf16 operands (f32 accumulation; f32 gradients out), FP32/Auto f32.
    virtual Conv2dGrads conv2d_backward(const Tensor& x, const Tensor& w, const Tensor& g, const Conv2dParams& p,
                                        bool need_dx, bool need_dw, bool need_db, Precision compute) = 0;

    // ---- attention (ops/attention.h): fused / flash where the device has it
    virtual Tensor scaled_dot_product_attention(const Tensor& q, const Tensor& k, const Tensor& v, bool causal,
                                                float scale, const Tensor& bias) = 0;
    virtual Tensor multi_head_attention(const Tensor& q, const Tensor& k, const Tensor& v, int64_t heads, bool causal,
                                        float scale, Precision compute) = 0;

    // ---- normalisations (ops/norm.h, ops/modulate.h)
    virtual Tensor group_norm(const Tensor& x, int64_t groups, const Tensor& w, const Tensor& b, float eps, bool silu,
                              DType out) = 0;
    // Gradients of group_norm (fused SiLU when silu) for autograd: x, g contiguous F32 [N, C, ...]; w, b [C] F32 or
    // undefined (1 and 0).
    virtual NormGrads group_norm_backward(const Tensor& x, const Tensor& w, const Tensor& b, const Tensor& g,
                                          int64_t groups, float eps, bool silu) = 0;
    virtual Tensor layer_norm(const Tensor& x, const Tensor& w, const Tensor& b, float eps, DType out) = 0;
    virtual Tensor rms_norm(const Tensor& x, const Tensor& w, float eps) = 0;
    virtual Tensor softmax(const Tensor& x) = 0;
    virtual Tensor layer_norm_modulate(const Tensor& x, const Tensor& shift, const Tensor& scale, float eps,
                                       DType out) = 0;
    virtual Tensor gated_residual(const Tensor& x, const Tensor& gate, const Tensor& y) = 0;

    // ---- elementwise families (ops/elementwise.h); out: F32, or BF16 where the op allows it (GeluTanh)
    virtual Tensor unary(UnaryOp op, const Tensor& a, float p0, float p1, DType out) = 0;
    virtual Tensor binary(BinaryOp op, const Tensor& a, const Tensor& b) = 0;
    virtual Tensor geglu(const Tensor& x, DType out) = 0;
    // The activations' backward rule: g * f'(x), [same shape] F32, for Silu, Gelu, GeluTanh and QuickGelu (other ops
    // are refused).
    virtual Tensor activation_backward(UnaryOp op, const Tensor& x, const Tensor& g) = 0;
    virtual void add_(Tensor& a, const Tensor& b) = 0;              // a += b (broadcast)
    virtual void mul_(Tensor& a, float s) = 0;                      // a *= s
    virtual void axpy_(Tensor& a, float alpha, const Tensor& b) = 0;  // a += alpha * b
    // Reductions: sum over one dim (F32); whole-tensor sums and maxima come back to the host as numbers.
    virtual Tensor sum(const Tensor& a, int64_t dim, bool keepdim) = 0;
    virtual double sum_all(const Tensor& a) = 0;
    virtual float max_abs(const Tensor& a) = 0;
    virtual float max_abs_diff(const Tensor& a, const Tensor& b) = 0;

    // ---- rotary embeddings (ops/rope.h)
    virtual Tensor rope_frequencies(const Tensor& ids, const std::vector<int64_t>& axes_dims, double theta) = 0;
    virtual Tensor apply_rope(const Tensor& x, const Tensor& freqs, int64_t heads, DType out) = 0;
    virtual Tensor rms_norm_rope(const Tensor& x, const Tensor& norm_weight, float eps, const Tensor& freqs,
                                 int64_t heads, DType out) = 0;

    // ---- data movement, embedding / gather (ops/shape_ops.h)
    virtual Tensor cat(const std::vector<Tensor>& ts, int64_t dim) = 0;
    virtual Tensor pad2d(const Tensor& x, int64_t left, int64_t right, int64_t top, int64_t bottom, float value) = 0;
    virtual Tensor interpolate_nearest(const Tensor& x, int64_t oh, int64_t ow, DType out) = 0;
    virtual Tensor embedding(const Tensor& ids, const Tensor& weight) = 0;
    virtual Tensor timestep_embedding(const Tensor& t, int64_t dim, bool flip_sin_to_cos, float shift, float scale,
                                      int64_t max_period) = 0;

    // ---- ggml block formats (backends/cpu/ggml_quants.h): rows of blocks (`packed`: U8 [rows, row_bytes]) to F32
    // `shape` (last dim = row length)
    virtual Tensor dequantize(GgmlType type, const Tensor& packed, const Shape& shape) = 0;
};

// Registers `b` (not owned; it must outlive every tensor on its device) for a device type, replacing the previous
// one (nullptr: unregister). The CPU backend is registered from the start; registering another one for the CPU
// (a test's recording wrapper) is allowed. Its DeviceMemory side is installed for tensors on that device type.
void register_backend(DeviceType type, Backend* b);
// The backend of a device; throws naming the device when none is registered.
Backend& backend_for(Device d);
Backend& cpu_backend();  // the built-in CPU backend itself (not a replacement registered for the CPU)

// The device an op runs on: the one non-CPU device among its defined operands (host operands are allowed beside
// it, see the contract above), else the CPU. Two different non-CPU devices: InvalidArgument naming the op and both.
Device op_device(const char* op, std::initializer_list<const Tensor*> operands);

// Precision resolution for the models (Auto -> the backend's default): models include this, never backends/cpu/*.
Precision resolve_precision(Precision p, Device d = Device::cpu());
Precision default_precision(Device d = Device::cpu());
// A quantized weight's values (core/quantized_weight.h): F32, contiguous, its logical shape, dequantized by its
// device's backend. Any other tensor is returned as it is.
Tensor dequantize_weight(const Tensor& t);
// Drops the packed weight copies of every registered backend (optimizer steps, before a VAE decode).
void clear_packed_weights();
// Drops one weight's packed copies on every registered backend; the bytes freed.
size_t release_packed_weight(const Tensor& w);
size_t packed_weights_bytes();
size_t packed_weights_over_budget_bytes();
// Frees, on every registered backend, the packed copies of weights that are gone (after dropping a model: otherwise
// they go at the next packing); the bytes freed.
size_t prune_packed_weights();

}  // namespace nuance
