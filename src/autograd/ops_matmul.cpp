// Dense products on Var. Shape letters: M rows (all leading dims of x flattened), K inner, N outputs.
#include "autograd/functions.h"
#include "ops/cayley.h"
#include "backends/backend.h"
#include "core/quantized_weight.h"
#include "ops/elementwise.h"
#include "ops/matmul.h"

namespace nuance {

namespace {

// [M, N] -> [N]: column sums with double accumulation (the bias gradient).
Tensor sum_rows(const Tensor& g2) {
    const int64_t M = g2.size(0), N = g2.size(1);
    const Tensor g = g2.contiguous();
    const float* p = g.data<float>();
    std::vector<double> acc((size_t)N, 0.0);
    for (int64_t m = 0; m < M; ++m)
        for (int64_t n = 0; n < N; ++n) acc[(size_t)n] += p[m * N + n];
    Tensor out = Tensor::empty({N}, DType::F32);
    float* o = out.data<float>();
    for (int64_t n = 0; n < N; ++n) o[n] = (float)acc[(size_t)n];
    return out;
}

}  // namespace

Var linear(const Var& x, const Var& w, const Var& b) {
    NUANCE_CHECK(x.defined() && w.defined(), "linear: undefined input or weight");
    // Mixed precision (BF16) runs the backward products in bf16 too (f32 accumulation), as torch.autocast does. The
    // input is rounded to bf16 once: the forward product and the weight gradient use that copy (the products would
    // round it the same way each time), and it is what the tape keeps (half the memory of the f32 input).
    const Precision prec = compute_precision() == Precision::BF16 ? Precision::BF16 : Precision::FP32;
    const bool bf = prec == Precision::BF16;
    const Tensor xv = bf ? x.value().to(DType::BF16) : x.value(), wv = w.value();
    Tensor y = linear(xv, wv, b.defined() ? b.value() : Tensor(), compute_precision());  // checks the shapes
    const Shape xs = xv.shape();
    const int64_t K = wv.size(1), N = wv.size(0);
    return record("linear", std::move(y), {x, w, b}, [xv, wv, xs, K, N, prec, bf](const Tensor& g,
                                                                                 const std::vector<bool>& need) {
        const int64_t M = K ? xv.numel() / K : 0;
        const Tensor g2 = g.reshape({M, N});
        // both products round g to bf16: once here
        const Tensor gp = bf && need[0] && need[1] ? g2.to(DType::BF16) : g2;
        std::vector<Tensor> out(3);
        // A quantized weight (a frozen GGUF base under a LoRA) is dequantized for the one product, never trained.
        const bool quantized = is_quantized_storage(wv);
        NUANCE_CHECK(!(quantized && need[1]), "linear backward: weight ", quantized_weight_str(wv),
                     " is quantized and cannot be trained (freeze it, or train an adapter beside it)");
        if (need[0]) out[0] = matmul(gp, quantized ? dequantize_weight(wv) : wv.contiguous(), prec).reshape(xs);  // dx = g · w
        if (need[1]) out[1] = matmul(gp.transpose(0, 1), xv.reshape({M, K}), prec);  // dw = gᵀ · x
        if (need[2]) out[2] = sum_rows(g2);                                      // db = Σ_rows g (f32)
        return out;
    });
}

Var matmul(const Var& a, const Var& b) {
    NUANCE_CHECK(a.defined() && b.defined(), "matmul: undefined operand");
    const Precision prec = compute_precision() == Precision::BF16 ? Precision::BF16 : Precision::FP32;
    const bool bf = prec == Precision::BF16;
    // bf16: the operands rounded once, for the forward product and the backward ones (as linear above)
    const Tensor av = bf ? a.value().to(DType::BF16) : a.value(), bv = bf ? b.value().to(DType::BF16) : b.value();
    Tensor c = matmul(av, bv, prec);  // checks the shapes
    return record("matmul", std::move(c), {a, b}, [av, bv, prec, bf](const Tensor& g_in, const std::vector<bool>& need) {
        const Tensor g = bf && need[0] && need[1] ? g_in.to(DType::BF16) : g_in;
        std::vector<Tensor> out(2);
        // dA = g · Bᵀ, dB = Aᵀ · g, each summed over the batch dims it was broadcast along
        if (need[0]) out[0] = reduce_to_shape(matmul(g, bv.transpose(-1, -2), prec), av.shape());
        if (need[1]) out[1] = reduce_to_shape(matmul(av.transpose(-1, -2), g, prec), bv.shape());
        return out;
    });
}

Var cayley(const Var& q) {
    NUANCE_CHECK(q.defined(), "cayley: undefined operand");
    CayleyResult c = cayley(q.value());
    const Tensor r = c.r, inv = c.inv;
    return record("cayley", c.r, {q}, [r, inv](const Tensor& g, const std::vector<bool>& need) {
        std::vector<Tensor> out(1);
        if (need[0]) {
            // (I + R)^T G A^T, per block
            const int64_t b = r.size(-1);
            Tensor ipr = r.contiguous().clone();
            float* p = ipr.data<float>();
            for (int64_t k = 0; k < ipr.numel() / (b * b); ++k)
                for (int64_t i = 0; i < b; ++i) p[k * b * b + i * b + i] += 1.0f;
            out[0] = matmul(matmul(ipr.transpose(-1, -2), g.contiguous()), inv.transpose(-1, -2)).contiguous();
        }
        return out;
    });
}

}  // namespace nuance
