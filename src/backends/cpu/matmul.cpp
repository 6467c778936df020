// Shape letters: M rows of x, K reduction, N output features, B batch.
#include "ops/matmul.h"
#include "backends/cpu/cpu_backend.h"

#include "backends/cpu/dnnl_cache.h"
#include "backends/cpu/dnnl_context.h"
#include "backends/cpu/quantized_matmul.h"
#include "core/op_stats.h"

namespace nuance {

using dnnl::memory;
using tag = memory::format_tag;
using dt = memory::data_type;

namespace {

void count_matmul_flops(const memory::dims& a_dims, const memory::dims& c_dims) {
    const size_t r = c_dims.size();
    count_flops(2.0 * (r == 3 ? (double)c_dims[0] : 1.0) * (double)c_dims[r - 2] * (double)c_dims[r - 1] *
                (double)a_dims[r - 1]);
}

// One 2-D or 3-D matmul of activations (f32 or bf16 operands, f32 result) with explicit strides for the operands.
void dnnl_matmul(const void* a, const memory::dims& a_dims, const memory::dims& a_strides,
                 const void* b, const memory::dims& b_dims, const memory::dims& b_strides,
                 float* c, const memory::dims& c_dims, dt in = dt::f32) {
    auto& eng = cpu::engine();
    const memory::desc a_md(a_dims, in, a_strides), b_md(b_dims, in, b_strides);
    const memory::desc c_md(c_dims, dt::f32, c_dims.size() == 2 ? tag::ab : tag::abc);
    cpu::MatmulPrimitive& mm = cpu::cached_matmul(a_md, b_md, memory::desc(), c_md);
    mm.prim.execute(cpu::stream(), {{DNNL_ARG_SRC, memory(a_md, eng, const_cast<void*>(a))},
                                    {DNNL_ARG_WEIGHTS, memory(b_md, eng, const_cast<void*>(b))},
                                    {DNNL_ARG_DST, memory(c_md, eng, c)}});
    cpu::stream().wait();
    count_matmul_flops(a_dims, c_dims);
}

}  // namespace

// Weights are packed once into the layout the primitive wants (cpu::packed_weights). BF16 weights compute in bf16:
// the input rows are rounded to bf16, products accumulate in f32, the output is F32.
Tensor CpuBackend::linear(const Tensor& x_in, const Tensor& w_in, const Tensor& b_in, Precision compute, DType out) {
    OpTimer op_timer("linear");
    NUANCE_CHECK(out == DType::F32 || out == DType::BF16, "linear: output dtype ", dtype_name(out));
    NUANCE_CHECK(w_in.dim() == 2, "linear: weight must be [out, in], got ", w_in.shape());
    NUANCE_CHECK(x_in.dim() >= 1 && x_in.size(-1) == w_in.size(1), "linear: input ", x_in.shape(),
                 " does not match weight ", w_in.shape());
    const int64_t K = w_in.size(1), N = w_in.size(0);
    if (const auto q = quantized_weight_view(w_in)) {  // ggml blocks as stored: quantized_matmul.h
        Tensor x = x_in.dtype() == DType::BF16 || x_in.dtype() == DType::F32 ? x_in.contiguous() : x_in.f32();
        const Tensor b = b_in.defined() ? b_in.f32().contiguous() : Tensor();
        NUANCE_CHECK(!b.defined() || b.numel() == N, "linear: bias ", b_in.shape(), " for ", N, " outputs");
        Shape out_shape = x.shape();
        out_shape.back() = N;
        Tensor y = Tensor::empty(out_shape, out);
        Tensor y2 = y.view({-1, N});
        cpu::quantized_gemm(x.view({-1, K}), *q, b, compute, y2);
        return y;
    }
    NUANCE_CHECK(!is_quantized_storage(w_in), "linear: weight ", quantized_weight_str(w_in),
                 " is a view of a quantized weight that no longer holds whole rows of blocks");
    NUANCE_CHECK(dtype_is_float(w_in.dtype()), "linear: weight dtype ", dtype_name(w_in.dtype()), " is not a float type");
    const bool bf16 = compute == Precision::BF16 || (compute == Precision::Auto && w_in.dtype() == DType::BF16);
    const dt wdt = bf16 ? dt::bf16 : dt::f32;
    // A bf16 input to a bf16 product (from an op that rounded its output for it) is used as it is.
    Tensor x = bf16 && x_in.dtype() == DType::BF16 ? x_in.contiguous() : x_in.f32().contiguous();
    const Tensor w = w_in.contiguous();  // converted (once) by packed_weights
    Tensor b;
    if (b_in.defined()) {
        NUANCE_CHECK(b_in.numel() == N, "linear: bias ", b_in.shape(), " for ", N, " outputs");
        b = b_in.f32().contiguous();
    }
    const int64_t M = K ? x.numel() / K : 0;
    Shape out_shape = x.shape();
    out_shape.back() = N;
    Tensor y = Tensor::empty(out_shape, out);
    if (M == 0 || N == 0) return y;
    if (bf16) x = x.to(DType::BF16);
    auto& eng = cpu::engine();
    const memory::desc a_md({M, K}, wdt, tag::ab);
    const memory::desc w_plain({K, N}, wdt, tag::ba);  // the transposed view of [N, K]
    const memory::desc w_any({K, N}, wdt, tag::any);
    const memory::desc c_md({M, N}, out == DType::BF16 ? dt::bf16 : dt::f32, tag::ab);  // bf16: rounded (RNE) by oneDNN
    const memory::desc bias_md = b.defined() ? memory::desc({1, N}, dt::f32, tag::ab) : memory::desc();
    cpu::MatmulPrimitive& mm = cpu::cached_matmul(a_md, w_any, bias_md, c_md);
    const cpu::PackedWeight pw = cpu::packed_weights(w, w_plain, mm.pd.weights_desc());
    std::unordered_map<int, memory> args{{DNNL_ARG_SRC, memory(a_md, eng, x.raw())},
                                         {DNNL_ARG_WEIGHTS, pw.mem},
                                         {DNNL_ARG_DST, memory(c_md, eng, y.raw())}};
    if (b.defined()) args.emplace(DNNL_ARG_BIAS, memory(bias_md, eng, b.raw()));
    mm.prim.execute(cpu::stream(), args);
    cpu::stream().wait();
    count_matmul_flops({M, K}, {M, N});
    return y;
}

// BF16: both operands rounded to bf16 (one conversion pass each), f32 accumulation and result.
Tensor CpuBackend::matmul(const Tensor& a_in, const Tensor& b_in, Precision compute) {
    OpTimer op_timer("matmul");
    const bool bf16 = compute == Precision::BF16;
    NUANCE_CHECK(a_in.dim() >= 2 && b_in.dim() >= 2, "matmul: operands need rank >= 2, got ", a_in.shape(), " and ",
                 b_in.shape());
    NUANCE_CHECK(a_in.size(-1) == b_in.size(-2), "matmul: ", a_in.shape(), " x ", b_in.shape());
    // Broadcast leading dims, then flatten them into one batch dim.
    Shape lead_a(a_in.shape().begin(), a_in.shape().end() - 2), lead_b(b_in.shape().begin(), b_in.shape().end() - 2);
    const size_t nl = std::max(lead_a.size(), lead_b.size());
    Shape lead(nl);
    for (size_t i = 0; i < nl; ++i) {
        const int64_t da = i < nl - lead_a.size() ? 1 : lead_a[i - (nl - lead_a.size())];
        const int64_t db = i < nl - lead_b.size() ? 1 : lead_b[i - (nl - lead_b.size())];
        NUANCE_CHECK(da == db || da == 1 || db == 1, "matmul: cannot broadcast ", a_in.shape(), " and ", b_in.shape());
        lead[i] = std::max(da, db);
    }
    const int64_t M = a_in.size(-2), K = a_in.size(-1), N = b_in.size(-1);
    auto prep = [&](const Tensor& t, int64_t r, int64_t c) {
        Shape s = lead;
        s.push_back(r);
        s.push_back(c);
        Tensor e = (bf16 ? t.to(DType::BF16) : t.f32()).expand(s);
        // keep a transposed last-two-dims view as-is when the batch dims are contiguous-ish; else copy
        const bool ok_rows = e.strides()[e.dim() - 1] == 1 || e.strides()[e.dim() - 2] == 1;
        if (!ok_rows) e = e.contiguous();
        return e;
    };
    Tensor a = prep(a_in, M, K), b = prep(b_in, K, N);
    int64_t B = shape_numel(lead);
    Shape out_shape = lead;
    out_shape.push_back(M);
    out_shape.push_back(N);
    Tensor c = Tensor::empty(out_shape, DType::F32);
    if (B == 0 || M == 0 || N == 0) return c;
    // Try to express batch as a single stride; otherwise loop over batch.
    auto batch_stride = [&](const Tensor& t, int64_t& st) {
        if (nl == 0) { st = 0; return true; }
        // all lead dims must collapse into a single stride
        int64_t expect = -1;
        st = 0;
        for (int64_t i = (int64_t)nl - 1; i >= 0; --i) {
            if (t.shape()[i] == 1) continue;
            if (expect < 0) { st = t.strides()[i]; expect = st * t.shape()[i]; continue; }
            if (t.strides()[i] != expect) return false;
            expect *= t.shape()[i];
        }
        return true;
    };
    int64_t sa = 0, sb = 0;
    if (!batch_stride(a, sa)) { a = a.contiguous(); sa = M * K; }
    if (!batch_stride(b, sb)) { b = b.contiguous(); sb = K * N; }
    const int64_t a_rs = a.strides()[a.dim() - 2], a_cs = a.strides()[a.dim() - 1];
    const int64_t b_rs = b.strides()[b.dim() - 2], b_cs = b.strides()[b.dim() - 1];
    const dt in = bf16 ? dt::bf16 : dt::f32;
    if (sa != 0 && sb != 0) {
        dnnl_matmul(a.raw(), {B, M, K}, {sa, a_rs, a_cs}, b.raw(), {B, K, N}, {sb, b_rs, b_cs}, c.data<float>(),
                    {B, M, N}, in);
    } else {
        const int64_t es = (int64_t)dtype_size(a.dtype());
        const char *pa = static_cast<const char*>(a.raw()), *pb = static_cast<const char*>(b.raw());
        for (int64_t i = 0; i < B; ++i)
            dnnl_matmul(pa + i * sa * es, {M, K}, {a_rs, a_cs}, pb + i * sb * es, {K, N}, {b_rs, b_cs},
                        c.data<float>() + i * M * N, {M, N}, in);
    }
    return c;
}

}  // namespace nuance
