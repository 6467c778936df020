// 2-D convolution on Var, backward through oneDNN (convolution_backward_data / convolution_backward_weights).
// Shape letters: N batch, C in channels, O out channels, G groups, H/W input, Ho/Wo output, kh/kw kernel.
#include "autograd/functions.h"
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

Var conv2d(const Var& x, const Var& w, const Var& b, const Conv2dParams& p) {
    NUANCE_CHECK(x.defined() && w.defined(), "conv2d: undefined input or weight");
    Tensor y = conv2d(x.value(), w.value(), b.defined() ? b.value() : Tensor(), p, compute_precision());  // checks shapes and params
    NUANCE_CHECK(p.padding[0] >= 0 && p.padding[1] >= 0 && p.padding[2] >= 0 && p.padding[3] >= 0,
                 "conv2d: negative padding");
    const Tensor xv = x.value().contiguous(), wv = w.value().contiguous();
    const ConvGeom c{xv.size(0), xv.size(1), xv.size(2), xv.size(3), wv.size(0), wv.size(2), wv.size(3),
                     y.size(2),  y.size(3),  p.groups};
    return record("conv2d", std::move(y), {x, w, b}, [xv, wv, c, p](const Tensor& g_in, const std::vector<bool>& need) {
        std::vector<Tensor> out(3);
        if (c.N == 0) return out;
        const Tensor g = g_in.f32().contiguous();
        if (need[0]) out[0] = conv_backward_data(c, p, wv, g);
        if (need[1] || need[2]) {
            Tensor dw, db;
            conv_backward_weights(c, p, xv, g, &dw, need[2] ? &db : nullptr);
            if (need[1]) out[1] = dw;
            if (need[2]) out[2] = db;
        }
        // backward data + backward weights: twice the forward's 2·MAC flops
        count_flops(4.0 * (double)c.N * (double)c.O * (double)c.Ho * (double)c.Wo * (double)(c.C / c.G) *
                    (double)c.kh * (double)c.kw);
        return out;
    });
}

}  // namespace nuance
