// Gradients of a 2-D convolution on the CPU through oneDNN (convolution_backward_data / convolution_backward_weights),
// for autograd's conv2d (src/autograd/ops_conv.cpp). f32, plain NCHW.
// Shape letters: N batch, C in channels, O out channels, G groups, H/W input, Ho/Wo output, kh/kw kernel.
#include "backends/cpu/cpu_backend.h"
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

struct ConvDescs {
    memory::desc src, w, b, dst;
    memory::dims strides, dil, pad_l, pad_r;
};

ConvDescs descs(const ConvGeom& c, const Conv2dParams& p) {
    ConvDescs d;
    d.src = memory::desc({c.N, c.C, c.H, c.W}, dt::f32, tag::nchw);
    d.dst = memory::desc({c.N, c.O, c.Ho, c.Wo}, dt::f32, tag::nchw);
    d.w = c.G == 1 ? memory::desc({c.O, c.C, c.kh, c.kw}, dt::f32, tag::oihw)
                   : memory::desc({c.G, c.O / c.G, c.C / c.G, c.kh, c.kw}, dt::f32, tag::goihw);
    d.b = memory::desc({c.O}, dt::f32, tag::x);
    d.strides = {p.stride, p.stride};
    d.dil = {p.dilation - 1, p.dilation - 1};
    d.pad_l = {p.padding[0], p.padding[1]};
    d.pad_r = {p.padding[2], p.padding[3]};
    return d;
}

// The forward_training descriptor is the hint both backward primitives are built from.
dnnl::convolution_forward::primitive_desc forward_hint(const ConvDescs& d, bool bias) {
    auto fd = bias ? dnnl::convolution_forward::desc(dnnl::prop_kind::forward_training,
                                                     dnnl::algorithm::convolution_direct, d.src, d.w, d.b, d.dst,
                                                     d.strides, d.dil, d.pad_l, d.pad_r)
                   : dnnl::convolution_forward::desc(dnnl::prop_kind::forward_training,
                                                     dnnl::algorithm::convolution_direct, d.src, d.w, d.dst,
                                                     d.strides, d.dil, d.pad_l, d.pad_r);
    return dnnl::convolution_forward::primitive_desc(fd, cpu::engine());
}

float* ptr(const Tensor& t) { return const_cast<float*>(t.data<float>()); }

// dx = conv2d_transpose(g, w)
Tensor conv_backward_data(const ConvGeom& c, const Conv2dParams& p, const Tensor& w, const Tensor& g) {
    const ConvDescs d = descs(c, p);
    auto hint = forward_hint(d, false);
    dnnl::convolution_backward_data::desc bd(dnnl::algorithm::convolution_direct, d.src, d.w, d.dst, d.strides, d.dil,
                                             d.pad_l, d.pad_r);
    dnnl::convolution_backward_data::primitive_desc pd(bd, cpu::engine(), hint);
    Tensor dx = Tensor::empty({c.N, c.C, c.H, c.W}, DType::F32);
    auto& eng = cpu::engine();
    dnnl::convolution_backward_data(pd).execute(cpu::stream(), {{DNNL_ARG_DIFF_DST, memory(d.dst, eng, ptr(g))},
                                                                {DNNL_ARG_WEIGHTS, memory(d.w, eng, ptr(w))},
                                                                {DNNL_ARG_DIFF_SRC, memory(d.src, eng, ptr(dx))}});
    cpu::stream().wait();
    return dx;
}

// dw = Σ_n,pixels g ⊗ x-patch; db = Σ g over N, Ho, Wo
void conv_backward_weights(const ConvGeom& c, const Conv2dParams& p, const Tensor& x, const Tensor& g, Tensor* dw,
                           Tensor* db) {
    const ConvDescs d = descs(c, p);
    const bool bias = db != nullptr;
    auto hint = forward_hint(d, bias);
    auto wd = bias ? dnnl::convolution_backward_weights::desc(dnnl::algorithm::convolution_direct, d.src, d.w, d.b,
                                                              d.dst, d.strides, d.dil, d.pad_l, d.pad_r)
                   : dnnl::convolution_backward_weights::desc(dnnl::algorithm::convolution_direct, d.src, d.w, d.dst,
                                                              d.strides, d.dil, d.pad_l, d.pad_r);
    dnnl::convolution_backward_weights::primitive_desc pd(wd, cpu::engine(), hint);
    *dw = Tensor::empty({c.O, c.C / c.G, c.kh, c.kw}, DType::F32);
    auto& eng = cpu::engine();
    std::unordered_map<int, memory> args{{DNNL_ARG_SRC, memory(d.src, eng, ptr(x))},
                                         {DNNL_ARG_DIFF_DST, memory(d.dst, eng, ptr(g))},
                                         {DNNL_ARG_DIFF_WEIGHTS, memory(d.w, eng, ptr(*dw))}};
    if (bias) {
        *db = Tensor::empty({c.O}, DType::F32);
        args.emplace(DNNL_ARG_DIFF_BIAS, memory(d.b, eng, ptr(*db)));
    }
    dnnl::convolution_backward_weights(pd).execute(cpu::stream(), args);
    cpu::stream().wait();
}

}  // namespace

Conv2dGrads CpuBackend::conv2d_backward(const Tensor& x, const Tensor& w, const Tensor& g, const Conv2dParams& p,
                                        bool need_dx, bool need_dw, bool need_db) {
    NUANCE_CHECK(x.dim() == 4 && w.dim() == 4 && g.dim() == 4, "conv2d backward: x ", x.shape(), ", w ", w.shape(),
                 ", grad ", g.shape(), " must all be rank 4");
    const ConvGeom c{x.size(0), x.size(1), x.size(2), x.size(3), w.size(0), w.size(2), w.size(3),
                     g.size(2),  g.size(3),  p.groups};
    Conv2dGrads out;
    if (c.N == 0) return out;
    if (need_dx) out.dx = conv_backward_data(c, p, w, g);
    if (need_dw || need_db) {
        Tensor dw, db;
        conv_backward_weights(c, p, x, g, &dw, need_db ? &db : nullptr);
        if (need_dw) out.dw = dw;
        if (need_db) out.db = db;
    }
    return out;
}

}  // namespace nuance
