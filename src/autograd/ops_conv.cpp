// 2-D convolution on Var; the gradients come from the backend of the operands' device (Backend::conv2d_backward:
// oneDNN's convolution_backward_data / convolution_backward_weights on the CPU).
// Shape letters: N batch, C in channels, O out channels, G groups, H/W input, Ho/Wo output, kh/kw kernel.
#include "autograd/functions.h"
#include "backends/backend.h"
#include "core/quantized_weight.h"
#include "core/op_stats.h"

namespace nuance {

Var conv2d(const Var& x, const Var& w, const Var& b, const Conv2dParams& p) {
    NUANCE_CHECK(x.defined() && w.defined(), "conv2d: undefined input or weight");
    Tensor y = conv2d(x.value(), w.value(), b.defined() ? b.value() : Tensor(), p, compute_precision());  // checks shapes and params
    NUANCE_CHECK(p.padding[0] >= 0 && p.padding[1] >= 0 && p.padding[2] >= 0 && p.padding[3] >= 0,
                 "conv2d: negative padding");
    // x is kept as it comes when NCHW or channels-last (the backward reads both layouts)
    const Tensor xv = x.value().is_contiguous() || x.value().is_channels_last() ? x.value() : x.value().contiguous();
    // A quantized weight (a frozen GGUF base under a LoRA) stays a handle; its backward dequantizes it for that call.
    const bool quantized = is_quantized_storage(w.value());
    const Tensor wv = quantized ? w.value() : w.value().contiguous();
    struct { int64_t N, C, O, kh, kw, Ho, Wo, G; } c{xv.size(0), xv.size(1), wv.size(0), wv.size(2), wv.size(3),
                                                       y.size(2),  y.size(3),  p.groups};
    // Mixed precision (ComputePrecisionGuard BF16) runs the backward products in bf16 too, as torch.autocast does.
    const Precision prec = compute_precision();
    return record("conv2d", std::move(y), {x, w, b}, [xv, wv, c, p, prec, quantized](const Tensor& g_in,
                                                                                     const std::vector<bool>& need) {
        std::vector<Tensor> out(3);
        if (c.N == 0) return out;
        NUANCE_CHECK(!(quantized && need[1]), "conv2d backward: weight ", quantized_weight_str(wv),
                     " is quantized and cannot be trained (freeze it, or train an adapter beside it)");
        const Tensor wd = quantized ? dequantize_weight(wv) : wv;
        const Tensor g32 = g_in.f32();
        const Tensor g = g32.is_contiguous() || g32.is_channels_last() ? g32 : g32.contiguous();
        OpNameScope op_name("conv2d backward");
        Conv2dGrads gr = backend_for(op_device("conv2d backward", {&xv, &wd, &g}))
                             .conv2d_backward(xv, wd, g, p, need[0], need[1], need[2], prec);
        out[0] = gr.dx;
        out[1] = gr.dw;
        out[2] = gr.db;
        // backward data + backward weights: twice the forward's 2·MAC flops
        count_flops(4.0 * (double)c.N * (double)c.O * (double)c.Ho * (double)c.Wo * (double)(c.C / c.G) *
                    (double)c.kh * (double)c.kw);
        return out;
    });
}

}  // namespace nuance
