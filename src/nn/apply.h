// One definition per forward (design.md): the overload set model forwards are written against.
//
// A model block's forward is written once, as a template over the value type V, calling only the functions below
// (and ops that exist for both types: silu, gelu, cat, multi_head_attention, embedding, +, views):
//   V = Tensor: inference on the fast kernels: channels-last activations, fused norm+SiLU, bf16 handover through
//               `out` (a norm feeding only products rounds its output for them), residuals added in place into
//               fresh outputs. This header is the Tensor half: each call is exactly what the Tensor forwards ran
//               before they became templates, so inference runs the same kernels in the same order.
//   V = Var:    training, the autograd ops that record the tape (src/autograd/nn_layers.h is the Var half, with
//               the same signatures; `out` dtypes are ignored there since Vars are F32, and the thread's
//               ComputePrecisionGuard decides the products' precision).
// The templates live beside the Tensor classes (models/unet/unet_forward.h, models/vae/vae_forward.h,
// models/clip/clip_forward.h) and are instantiated for both types in the models' .cpp files; train/model_graph.h
// exposes the Var instantiations to training.
// The functions are free (named apply/run, never a member name like forward) so a block's own members never hide
// them from a template's unqualified calls.
#pragma once
#include "nn/attention.h"
#include "nn/layers.h"

namespace nuance {

inline Tensor apply(const Linear& l, const Tensor& x, DType out = DType::F32) { return l(x, out); }
inline Tensor apply(const Conv2d& c, const Tensor& x) { return c(x); }
inline Tensor apply(const GroupNorm& g, const Tensor& x, bool fuse_silu = false, DType out = DType::F32) {
    return g(x, fuse_silu, out);
}
inline Tensor apply(const LayerNorm& n, const Tensor& x, DType out = DType::F32) { return n(x, out); }

// Linear -> SiLU -> Linear.
template <class V>
V apply(const MlpEmbedder& m, const V& x) {
    return apply(m.linear_2, silu(apply(m.linear_1, x)));
}

// diffusers' Attention: to_out(mha(to_q(x), to_k(c), to_v(c))), c = context if defined, else x. bf16 attention:
// the projections hand over bf16 q/k/v directly.
template <class V>
V apply(const Attention& a, const V& x, const V& context, bool causal = false) {
    const V& c = context.defined() ? context : x;
    const DType qkv = a.to_q.input_dtype();
    return apply(a.to_out, multi_head_attention(apply(a.to_q, x, qkv), apply(a.to_k, c, qkv), apply(a.to_v, c, qkv),
                                                a.heads, causal, 0.0f, a.to_q.weight.compute));
}

// h + x where h is the fresh output of the op before it (Tensor: added in place into h's memory).
inline Tensor residual_add(Tensor h, const Tensor& x) { return add_(h, x); }

// A permuted token view [B, H, W, C] -> [B, C, H, W] handed to the next conv or residual: both paths keep the
// (channels-last) view as it is (autograd/nn_layers.h has the Var overload).
inline Tensor image_layout(const Tensor& x) { return x; }

// A model's input image/latent in the layout its blocks run in: channels-last (oneDNN's direct convolutions; norms,
// elementwise ops, cat and upsampling keep it), on the Var path too (training: the convolution and GroupNorm
// gradients read and write NHWC).
inline Tensor compute_layout(const Tensor& x) { return x.channels_last(); }

// A constant input (timestep embeddings, ids, conditioning computed outside the graph) as a value of type V.
template <class V>
V constant(const Tensor& t) {
    return V(t);
}

// The value of a module weight as a V: the Tensor itself, or (Var) the leaf of the ParamGrads bound to the thread.
// Called as param_value(p, (const V*)nullptr): the tag picks the overload.
inline Tensor param_value(const Param& p, const Tensor* /*tag*/) { return *p; }

}  // namespace nuance
