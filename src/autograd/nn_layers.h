// The nn building blocks (src/nn) applied to Vars: the same parameters and math as their Tensor operator(), with
// the weights taken through param_var() so a bound ParamGrads collects their gradients.
#pragma once
#include "autograd/functions.h"
#include "autograd/param_grads.h"
#include "nn/attention.h"
#include "nn/layers.h"

namespace nuance {

// Layer adapters (LoRA while training, train/lora_network.h): while a LayerAdapters is bound to the thread,
// forward(Linear) and forward(Conv2d) add adapter->delta(layer, x) to the layer's output for the layers it adapts
// (an undefined Var: none). The model code stays one definition; the adapter decides per layer.
class LayerAdapters {
public:
    virtual ~LayerAdapters() = default;
    virtual Var delta(Linear& layer, const Var& x) = 0;
    virtual Var delta(Conv2d& layer, const Var& x) = 0;

    class Bind {  // RAII: binds `a` on this thread, restores the previous binding on destruction
    public:
        explicit Bind(LayerAdapters& a);
        ~Bind();
        Bind(const Bind&) = delete;
        Bind& operator=(const Bind&) = delete;

    private:
        LayerAdapters* saved_;
    };
};

Var forward(Linear& l, const Var& x);
Var forward(Conv2d& c, const Var& x);
Var forward(GroupNorm& g, const Var& x, bool fuse_silu = false);
Var forward(LayerNorm& l, const Var& x);
// diffusers' Attention: to_out(mha(to_q(x), to_k(c), to_v(c))), c = context or x.
Var forward(Attention& a, const Var& x, const Var& context = Var(), bool causal = false);

}  // namespace nuance
