// Gradients of a 2-D convolution on the CPU through oneDNN (convolution_backward_data / convolution_backward_weights),
// for autograd's conv2d (src/autograd/ops_conv.cpp). Operands are f32 NCHW or channels-last (NHWC) tensors, each as
// it comes (training runs the UNet channels-last, nn/apply.h compute_layout); dx comes out in x's layout.
// Speed (issue 18): the primitives are built once per shape and kept (cpu::cached_primitive), and they run in the
// layouts oneDNN picks (format `any`: blocked nChw16c / nhwc for its direct jit kernels, 1.5-3x faster than the
// gemm-based NCHW path on SD-shaped layers); the operands are reordered into those layouts (and converted to bf16
// for Precision::BF16, oneDNN's bf16 backward kernels: bf16 operands, f32 accumulation, f32 gradients out) and the
// results reordered back.
// Shape letters: N batch, C in channels, O out channels, G groups, H/W input, Ho/Wo output, kh/kw kernel.
#include <atomic>
#include <unordered_map>

#include "backends/cpu/cpu_backend.h"
#include "backends/cpu/dnnl_cache.h"
#include "backends/cpu/dnnl_context.h"
#include "core/op_stats.h"

namespace nuance {

namespace {

using dnnl::memory;
using tag = memory::format_tag;
using dt = memory::data_type;

struct ConvGeom {
    int64_t N, C, H, W, O, kh, kw, Ho, Wo, G;
};

// The user's (plain) descriptors, and the ones the primitives are created from: format `any` and the compute type.
struct ConvDescs {
    memory::desc src, w, b, dst;              // plain f32: nchw / oihw (goihw) / x / nchw
    memory::desc src_any, w_any, dst_any;     // format any, compute dtype
    memory::desc dw_any;                      // the weight gradient: format any, f32
    memory::dims strides, dil, pad_l, pad_r;
};

ConvDescs descs(const ConvGeom& c, const Conv2dParams& p, dt cdt, bool x_cl = false, bool g_cl = false) {
    ConvDescs d;
    const memory::dims sdims{c.N, c.C, c.H, c.W}, ddims{c.N, c.O, c.Ho, c.Wo};
    const memory::dims wdims = c.G == 1 ? memory::dims{c.O, c.C, c.kh, c.kw}
                                        : memory::dims{c.G, c.O / c.G, c.C / c.G, c.kh, c.kw};
    d.src = memory::desc(sdims, dt::f32, x_cl ? tag::nhwc : tag::nchw);
    d.dst = memory::desc(ddims, dt::f32, g_cl ? tag::nhwc : tag::nchw);
    d.w = memory::desc(wdims, dt::f32, c.G == 1 ? tag::oihw : tag::goihw);
    d.b = memory::desc({c.O}, dt::f32, tag::x);
    d.src_any = memory::desc(sdims, cdt, tag::any);
    d.dst_any = memory::desc(ddims, cdt, tag::any);
    d.w_any = memory::desc(wdims, cdt, tag::any);
    d.dw_any = memory::desc(wdims, dt::f32, tag::any);
    d.strides = {p.stride, p.stride};
    d.dil = {p.dilation - 1, p.dilation - 1};
    d.pad_l = {p.padding[0], p.padding[1]};
    d.pad_r = {p.padding[2], p.padding[3]};
    return d;
}

std::string geometry_key(const char* what, const ConvGeom& c, const Conv2dParams& p, dt cdt, bool bias) {
    std::string key = what;
    cpu::key_add(key, {c.N, c.C, c.H, c.W, c.O, c.kh, c.kw, c.Ho, c.Wo, c.G, p.stride, p.dilation, p.padding[0],
                       p.padding[1], p.padding[2], p.padding[3], (int64_t)cdt, bias});
    return key;
}

// The forward_training descriptor both backward primitives are built from (oneDNN's hint).
dnnl::convolution_forward::primitive_desc forward_hint(const ConvDescs& d, dt cdt, bool bias) {
    const memory::desc dst_fwd(d.dst_any.dims(), cdt == dt::bf16 ? dt::f32 : cdt, memory::format_tag::any);
    auto fd = bias ? dnnl::convolution_forward::desc(dnnl::prop_kind::forward_training,
                                                     dnnl::algorithm::convolution_direct, d.src_any, d.w_any, d.b,
                                                     dst_fwd, d.strides, d.dil, d.pad_l, d.pad_r)
                   : dnnl::convolution_forward::desc(dnnl::prop_kind::forward_training,
                                                     dnnl::algorithm::convolution_direct, d.src_any, d.w_any, dst_fwd,
                                                     d.strides, d.dil, d.pad_l, d.pad_r);
    return dnnl::convolution_forward::primitive_desc(fd, cpu::engine());
}

// `user` (plain f32 at `data`) in layout/type `want`: the user's memory itself when they agree, else a reordered
// copy whose buffer `keep` holds.
memory as_layout(const memory::desc& user, const void* data, const memory::desc& want, Tensor& keep) {
    auto& eng = cpu::engine();
    memory u(user, eng, const_cast<void*>(data));
    if (want == user) return u;
    keep = Tensor::empty({(int64_t)((want.get_size() + sizeof(float) - 1) / sizeof(float))}, DType::F32);
    memory m(want, eng, keep.raw());
    dnnl::reorder(u, m).execute(cpu::stream(), u, m);
    return m;
}

// A buffer in layout `have` for a result the caller wants as plain `user` in `out`: `out` itself when they agree.
memory result_buffer(const memory::desc& have, const memory::desc& user, Tensor& out, Tensor& keep) {
    auto& eng = cpu::engine();
    if (have == user) return memory(user, eng, out.raw());
    keep = Tensor::empty({(int64_t)((have.get_size() + sizeof(float) - 1) / sizeof(float))}, DType::F32);
    return memory(have, eng, keep.raw());
}

void copy_back(const memory& from, const memory::desc& user, Tensor& out) {
    memory u(user, cpu::engine(), out.raw());
    if (from.get_data_handle() == u.get_data_handle()) return;
    memory src = from;
    dnnl::reorder(src, u).execute(cpu::stream(), src, u);
}

// dx = conv2d_transpose(g, w)
Tensor conv_backward_data(const ConvGeom& c, const Conv2dParams& p, dt cdt, const Tensor& w, const Tensor& g,
                          bool x_cl, bool g_cl) {
    struct Prim {
        dnnl::convolution_backward_data::primitive_desc pd;
        dnnl::convolution_backward_data prim;
    };
    const ConvDescs d = descs(c, p, cdt, x_cl, g_cl);
    Prim& bwd = cpu::cached_primitive<Prim>(geometry_key("conv_bwd_data", c, p, cdt, false), [&] {
        const memory::desc dsrc(d.src_any.dims(), dt::f32, tag::any);  // the gradient comes out f32
        dnnl::convolution_backward_data::desc bd(dnnl::algorithm::convolution_direct, dsrc, d.w_any, d.dst_any,
                                                 d.strides, d.dil, d.pad_l, d.pad_r);
        dnnl::convolution_backward_data::primitive_desc pd(bd, cpu::engine(), forward_hint(d, cdt, false));
        return Prim{pd, dnnl::convolution_backward_data(pd)};
    });
    Tensor dx = x_cl ? Tensor::empty_channels_last({c.N, c.C, c.H, c.W}) : Tensor::empty({c.N, c.C, c.H, c.W}, DType::F32);
    Tensor kg, kw, kdx;
    const memory mg = as_layout(d.dst, g.raw(), bwd.pd.diff_dst_desc(), kg);
    const memory mw = as_layout(d.w, w.raw(), bwd.pd.weights_desc(), kw);
    const memory mdx = result_buffer(bwd.pd.diff_src_desc(), d.src, dx, kdx);
    bwd.prim.execute(cpu::stream(), {{DNNL_ARG_DIFF_DST, mg}, {DNNL_ARG_WEIGHTS, mw}, {DNNL_ARG_DIFF_SRC, mdx}});
    copy_back(mdx, d.src, dx);
    cpu::stream().wait();
    return dx;
}

// dw = Σ_n,pixels g ⊗ x-patch; db = Σ g over N, Ho, Wo
void conv_backward_weights(const ConvGeom& c, const Conv2dParams& p, dt cdt, const Tensor& x, const Tensor& g,
                           Tensor* dw, Tensor* db, bool x_cl, bool g_cl) {
    struct Prim {
        dnnl::convolution_backward_weights::primitive_desc pd;
        dnnl::convolution_backward_weights prim;
    };
    const ConvDescs d = descs(c, p, cdt, x_cl, g_cl);
    const bool bias = db != nullptr;
    Prim& bwd = cpu::cached_primitive<Prim>(geometry_key("conv_bwd_weights", c, p, cdt, bias), [&] {
        auto wd = bias ? dnnl::convolution_backward_weights::desc(dnnl::algorithm::convolution_direct, d.src_any,
                                                                  d.dw_any, d.b, d.dst_any, d.strides, d.dil,
                                                                  d.pad_l, d.pad_r)
                       : dnnl::convolution_backward_weights::desc(dnnl::algorithm::convolution_direct, d.src_any,
                                                                  d.dw_any, d.dst_any, d.strides, d.dil, d.pad_l,
                                                                  d.pad_r);
        dnnl::convolution_backward_weights::primitive_desc pd(wd, cpu::engine(), forward_hint(d, cdt, bias));
        return Prim{pd, dnnl::convolution_backward_weights(pd)};
    });
    *dw = Tensor::empty({c.O, c.C / c.G, c.kh, c.kw}, DType::F32);
    Tensor kx, kg, kdw;
    const memory mx = as_layout(d.src, x.raw(), bwd.pd.src_desc(), kx);
    const memory mg = as_layout(d.dst, g.raw(), bwd.pd.diff_dst_desc(), kg);
    const memory mdw = result_buffer(bwd.pd.diff_weights_desc(), d.w, *dw, kdw);
    std::unordered_map<int, memory> args{{DNNL_ARG_SRC, mx}, {DNNL_ARG_DIFF_DST, mg}, {DNNL_ARG_DIFF_WEIGHTS, mdw}};
    if (bias) {
        *db = Tensor::empty({c.O}, DType::F32);
        NUANCE_ASSERT(bwd.pd.diff_bias_desc() == d.b, "conv2d backward: oneDNN chose a bias-gradient layout ",
                      "other than a plain f32 vector");
        args.emplace(DNNL_ARG_DIFF_BIAS, memory(d.b, cpu::engine(), db->raw()));
    }
    bwd.prim.execute(cpu::stream(), args);
    copy_back(mdw, d.w, *dw);
    cpu::stream().wait();
}

}  // namespace

Conv2dGrads CpuBackend::conv2d_backward(const Tensor& x, const Tensor& w, const Tensor& g, const Conv2dParams& p,
                                        bool need_dx, bool need_dw, bool need_db, Precision compute) {
    NUANCE_CHECK(x.dim() == 4 && w.dim() == 4 && g.dim() == 4, "conv2d backward: x ", x.shape(), ", w ", w.shape(),
                 ", grad ", g.shape(), " must all be rank 4");
    // channels-last: dense N, H, W, C (a contiguous tensor with C == 1 or H == W == 1 counts as NCHW)
    const bool x_cl = !x.is_contiguous() && x.is_channels_last(), g_cl = !g.is_contiguous() && g.is_channels_last();
    NUANCE_CHECK(x.dtype() == DType::F32 && w.dtype() == DType::F32 && g.dtype() == DType::F32 &&
                     (x.is_contiguous() || x_cl) && w.is_contiguous() && (g.is_contiguous() || g_cl),
                 "conv2d backward: x and the gradient must be f32 NCHW or channels-last, w contiguous f32; got x ",
                 x.str(), ", w ", w.str(), ", gradient ", g.str());
    const ConvGeom c{x.size(0), x.size(1), x.size(2), x.size(3), w.size(0), w.size(2), w.size(3),
                     g.size(2),  g.size(3),  p.groups};
    NUANCE_CHECK(c.G >= 1 && c.C % c.G == 0 && c.O % c.G == 0 && w.size(1) == c.C / c.G && g.size(0) == c.N &&
                     g.size(1) == c.O,
                 "conv2d backward: x ", x.shape(), ", w ", w.shape(), ", grad ", g.shape(), " and groups ", c.G,
                 " do not fit together");
    Conv2dGrads out;
    if (c.N == 0) return out;
    // bf16 kernels need a CPU oneDNN has bf16 backward kernels for (AVX-512 and later); where creating the primitive
    // fails ("unimplemented"), this and every later call run f32.
    static std::atomic<bool> bf16_unavailable{false};
    const auto run = [&](dt cdt) {
        if (need_dx) out.dx = conv_backward_data(c, p, cdt, w, g, x_cl, g_cl);
        if (need_dw || need_db) {
            Tensor dw, db;
            conv_backward_weights(c, p, cdt, x, g, &dw, need_db ? &db : nullptr, x_cl, g_cl);
            if (need_dw) out.dw = dw;
            if (need_db) out.db = db;
        }
    };
    // Fewer than 16 input or output channels (a LoRA's down / up convolution of rank 4 or 8) run f32: oneDNN 2.6's bf16
    // backward kernels gave different gradients from run to run there with 2 threads, now and then NaN (measured on
    // AMD Zen 5: `nuance train --model lora --targets attn+conv --precision bf16`, 3 of 3 runs NaN; 1 thread, or these
    // layers in f32: 4 of 4 runs bit-identical). Such layers are a negligible share of a step.
    const bool small = c.O < 16 || c.C < 16;
    if (compute == Precision::BF16 && !bf16_unavailable.load() && !small) {
        try {
            run(dt::bf16);
            return out;
        } catch (const dnnl::error& e) {
            if (e.status != dnnl_unimplemented) throw;
            bf16_unavailable = true;
            out = Conv2dGrads{};
        }
    }
    run(dt::f32);
    return out;
}

}  // namespace nuance
