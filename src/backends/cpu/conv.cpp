// Shape letters: N batch, C in channels, O out channels, H/W spatial, kh/kw kernel, G groups.
// Layout follows the input: a channels-last input ([N, C, H, W] stored N, H, W, C, see Tensor::channels_last) runs
// oneDNN's direct NHWC kernels with weights packed once into the blocked layout they want and gives a channels-last
// output; a plain NCHW input gives a plain NCHW output. Models switch to channels-last once, at their entry.
// Precision: BF16 runs a bf16 convolution (input rounded to bf16, f32 accumulation and output), FP32 an f32 one;
// Auto follows the weight's dtype. Weights of any float dtype are converted and packed once (cpu::packed_weights).
#include "ops/conv.h"
#include "backends/cpu/cpu_backend.h"

#include "backends/cpu/dnnl_cache.h"
#include "backends/cpu/dnnl_context.h"
#include "backends/cpu/quantized_matmul.h"
#include "backends/cpu/winograd.h"
#include "core/op_stats.h"

namespace nuance {

using dnnl::memory;
using tag = memory::format_tag;
using dt = memory::data_type;

Tensor CpuBackend::conv2d(const Tensor& x_in, const Tensor& w_in, const Tensor& b_in, const Conv2dParams& p,
                          Precision compute) {
    OpTimer op_timer("conv2d");
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
    if (const auto q = quantized_weight_view(w_in)) {  // ggml blocks as stored: quantized_matmul.h
        NUANCE_CHECK(G == 1, "conv2d: quantized weight ", quantized_weight_str(w_in), " with groups ", G,
                     " (only groups = 1 is supported)");
        return cpu::quantized_conv2d(x_in, *q, w_in.shape(), b, p.stride, p.padding.data(), p.dilation, compute);
    }
    NUANCE_CHECK(!is_quantized_storage(w_in), "conv2d: weight ", quantized_weight_str(w_in),
                 " is a view of a quantized weight that no longer holds whole rows of blocks");
    NUANCE_CHECK(dtype_is_float(w_in.dtype()), "conv2d: weight dtype ", dtype_name(w_in.dtype()), " is not a float type");
    const bool bf16 = compute == Precision::BF16 || (compute == Precision::Auto && w_in.dtype() == DType::BF16);
    // bf16: F(2x2) with bf16 products where it applies (faster than F(4x4) f32 and the direct kernel at every shape
    // measured), then F(4x4) f32.
    if (bf16 && cpu::winograd2_bf16_applies(x_in, w_in, p)) return cpu::winograd2_bf16_conv2d(x_in, w_in, b, p);
    if (cpu::winograd_applies(x_in, w_in, p, bf16)) return cpu::winograd_conv2d(x_in, w_in, b, p);
    const bool cl_in = x_in.is_channels_last() && !x_in.is_contiguous();
    const bool cl = cl_in || bf16;  // bf16 kernels exist for NHWC only: NCHW inputs go through a channels-last copy
    const dt wdt = bf16 ? dt::bf16 : dt::f32;
    const Tensor w = w_in.contiguous();  // converted (once) by packed_weights
    // A bf16 channels-last input to a bf16 convolution (a GroupNorm that rounded its output for it) is used as is.
    Tensor x;
    if (bf16 && cl_in && x_in.dtype() == DType::BF16) {
        x = x_in;
    } else if (bf16) {  // one pass: layout and dtype together (NCHW f32 -> NHWC bf16 is what training feeds it)
        x = Tensor::empty_channels_last(x_in.shape(), DType::BF16);
        x.copy_(x_in.dtype() == DType::F32 || x_in.dtype() == DType::BF16 ? x_in : x_in.f32());
    } else {
        x = cl_in ? x_in.f32() : cl ? x_in.f32().channels_last() : x_in.f32().contiguous();
    }
    Tensor y = cl ? Tensor::empty_channels_last({N, O, Ho, Wo}) : Tensor::empty({N, O, Ho, Wo}, DType::F32);
    if (N == 0) return y;

    const tag act = cl ? tag::nhwc : tag::nchw;
    const memory::desc src_md({N, C, H, W}, wdt, act);
    const memory::desc dst_md({N, O, Ho, Wo}, dt::f32, act);
    const memory::dims wdims = G == 1 ? memory::dims{O, C, kh, kw} : memory::dims{G, O / G, C / G, kh, kw};
    const memory::desc w_plain(wdims, wdt, G == 1 ? tag::oihw : tag::goihw);
    // Channels-last runs oneDNN's direct kernels with weights in their own blocked layout; plain NCHW keeps plain
    // weights (tests, small tools: no packed copies).
    const memory::desc w_md = cl ? memory::desc(wdims, wdt, tag::any) : w_plain;
    const memory::desc b_md({O}, dt::f32, tag::x);
    const memory::dims strides{p.stride, p.stride};
    const memory::dims dil{p.dilation - 1, p.dilation - 1};
    const memory::dims pad_l{p.padding[0], p.padding[1]}, pad_r{p.padding[2], p.padding[3]};

    std::string key = "conv";
    cpu::key_add(key, src_md);
    cpu::key_add(key, w_md);
    cpu::key_add(key, dst_md);
    cpu::key_add(key, {b.defined(), p.stride, p.dilation, p.padding[0], p.padding[1], p.padding[2], p.padding[3]});
    struct Conv {
        dnnl::convolution_forward::primitive_desc pd;
        dnnl::convolution_forward prim;
    };
    Conv& conv = cpu::cached_primitive<Conv>(key, [&] {
        auto& eng = cpu::engine();
        auto d = b.defined()
            ? dnnl::convolution_forward::desc(dnnl::prop_kind::forward_inference, dnnl::algorithm::convolution_direct,
                                              src_md, w_md, b_md, dst_md, strides, dil, pad_l, pad_r)
            : dnnl::convolution_forward::desc(dnnl::prop_kind::forward_inference, dnnl::algorithm::convolution_direct,
                                              src_md, w_md, dst_md, strides, dil, pad_l, pad_r);
        dnnl::convolution_forward::primitive_desc pd(d, eng);
        return Conv{pd, dnnl::convolution_forward(pd)};
    });
    auto& eng = cpu::engine();
    const cpu::PackedWeight pw = cpu::packed_weights(w, w_plain, conv.pd.weights_desc());
    std::unordered_map<int, memory> args{
        {DNNL_ARG_SRC, memory(src_md, eng, x.raw())},
        {DNNL_ARG_WEIGHTS, pw.mem},
        {DNNL_ARG_DST, memory(dst_md, eng, y.raw())}};
    if (b.defined()) args.emplace(DNNL_ARG_BIAS, memory(b_md, eng, b.raw()));
    conv.prim.execute(cpu::stream(), args);
    cpu::stream().wait();
    count_flops(2.0 * (double)N * (double)O * (double)Ho * (double)Wo * (double)(C / G) * (double)kh * (double)kw);
    return cl && !cl_in ? y.contiguous() : y;
}

}  // namespace nuance
