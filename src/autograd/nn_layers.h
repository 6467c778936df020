// The nn building blocks (src/nn) applied to Vars: the same parameters and math as their Tensor operator(), with
// the weights taken through param_var() so a bound ParamGrads collects their gradients.
#pragma once
#include "autograd/functions.h"
#include "autograd/param_grads.h"
#include "nn/attention.h"
#include "nn/layers.h"

namespace nuance {

Var forward(Linear& l, const Var& x);
Var forward(Conv2d& c, const Var& x);
Var forward(GroupNorm& g, const Var& x, bool fuse_silu = false);
Var forward(LayerNorm& l, const Var& x);
// diffusers' Attention: to_out(mha(to_q(x), to_k(c), to_v(c))), c = context or x.
Var forward(Attention& a, const Var& x, const Var& context = Var(), bool causal = false);

}  // namespace nuance
