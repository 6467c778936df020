// Shape letters: N batch, C in channels, O out channels, H/W spatial, kh/kw kernel.
#include "ops/conv.h"

#include "backends/cpu/dnnl_context.h"
#include "core/op_stats.h"

namespace nuance {

using dnnl::memory;
using tag = memory::format_tag;
using dt = memory::data_type;

Tensor conv2d(const Tensor& x_in, const Tensor& w_in, const Tensor& b_in, const Conv2dParams& p) {
    NUANCE_CHECK(x_in.dim() == 4, "conv2d: input must be [N, C, H, W], got ", x_in.shape());
    NUANCE_CHECK(w_in.dim() == 4, "conv2d: weight must be [O, C/groups, kh, kw], got ", w_in.shape());
    const int64_t N = x_in.size(0), C = x_in.size(1), H = x_in.size(2), W = x_in.size(3);
    const int64_t O = w_in.size(0), kh = w_in.size(2), kw = w_in.size(3), G = p.groups;
    NUANCE_CHECK(G >= 1 && C % G == 0 && O % G == 0 && w_in.size(1) == C / G, "conv2d: input ", x_in.shape(),
                 " does not match weight ", w_in.shape(), " with groups ", G);
    NUANCE_CHECK(p.stride >= 1 && p.dilation >= 1, "conv2d: bad stride/dilation");
    const int64_t ekh = (kh - 1) * p.dilation + 1, ekw = (kw - 1) * p.dilation + 1;
    const int64_t Ho = (H + p.padding[0] + p.padding[2] - ekh) / p.stride + 1;
    const int64_t Wo = (W + p.padding[1] + p.padding[3] - ekw) / p.stride + 1;
    NUANCE_CHECK(Ho > 0 && Wo > 0, "conv2d: input ", x_in.shape(), " too small for kernel ", kh, "x", kw);
    Tensor b;
    if (b_in.defined()) {
        NUANCE_CHECK(b_in.numel() == O, "conv2d: bias ", b_in.shape(), " for ", O, " output channels");
        b = b_in.f32().contiguous();
    }
    const Tensor x = x_in.f32().contiguous();
    const Tensor w = w_in.f32().contiguous();
    Tensor y = Tensor::empty({N, O, Ho, Wo}, DType::F32);
    if (N == 0) return y;

    auto& eng = cpu::engine();
    memory::desc src_md({N, C, H, W}, dt::f32, tag::nchw);
    memory::desc dst_md({N, O, Ho, Wo}, dt::f32, tag::nchw);
    memory::desc w_md = G == 1 ? memory::desc({O, C, kh, kw}, dt::f32, tag::oihw)
                               : memory::desc({G, O / G, C / G, kh, kw}, dt::f32, tag::goihw);
    memory::desc b_md({O}, dt::f32, tag::x);
    const memory::dims strides{p.stride, p.stride};
    const memory::dims dil{p.dilation - 1, p.dilation - 1};
    const memory::dims pad_l{p.padding[0], p.padding[1]}, pad_r{p.padding[2], p.padding[3]};
    auto d = b.defined()
        ? dnnl::convolution_forward::desc(dnnl::prop_kind::forward_inference, dnnl::algorithm::convolution_direct,
                                          src_md, w_md, b_md, dst_md, strides, dil, pad_l, pad_r)
        : dnnl::convolution_forward::desc(dnnl::prop_kind::forward_inference, dnnl::algorithm::convolution_direct,
                                          src_md, w_md, dst_md, strides, dil, pad_l, pad_r);
    dnnl::convolution_forward::primitive_desc pd(d, eng);
    dnnl::convolution_forward prim(pd);
    std::unordered_map<int, memory> args{
        {DNNL_ARG_SRC, memory(src_md, eng, const_cast<float*>(x.data<float>()))},
        {DNNL_ARG_WEIGHTS, memory(w_md, eng, const_cast<float*>(w.data<float>()))},
        {DNNL_ARG_DST, memory(dst_md, eng, y.data<float>())}};
    if (b.defined()) args.emplace(DNNL_ARG_BIAS, memory(b_md, eng, const_cast<float*>(b.data<float>())));
    prim.execute(cpu::stream(), args);
    cpu::stream().wait();
    count_flops(2.0 * (double)N * (double)O * (double)Ho * (double)Wo * (double)(C / G) * (double)kh * (double)kw);
    return y;
}

}  // namespace nuance
