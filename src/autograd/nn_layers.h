// The nn building blocks (src/nn) applied to Vars: the same parameters and math as their Tensor operator(), with
// the weights taken through param_var() so a bound ParamGrads collects their gradients. With nn/apply.h (the Tensor
// half) this is the overload set the models' one-definition forwards are written against.
#pragma once
#include "autograd/functions.h"
#include "autograd/param_grads.h"
#include "nn/apply.h"

namespace nuance {

// Layer adapters (LoRA while training, train/lora_network.h): while a LayerAdapters is bound to the thread,
// apply(Linear) and apply(Conv2d) add adapter->delta(layer, x) to the layer's output for the layers it adapts
// (an undefined Var: none). The model code stays one definition; the adapter decides per layer.
// An adapter may instead hand the layer a whole adapted weight (weight(layer) defined): the layer then runs one
// product with it and delta() is not asked (LyCORIS' LoHa / LoKr merge their delta into the weight this way).
class LayerAdapters {
public:
    virtual ~LayerAdapters() = default;
    virtual Var delta(const Linear& layer, const Var& x) = 0;
    virtual Var delta(const Conv2d& layer, const Var& x) = 0;
    virtual Var weight(const Linear& /*layer*/) { return Var(); }
    virtual Var weight(const Conv2d& /*layer*/) { return Var(); }
    // The layer's bias as adapted (LyCORIS full's diff_b), or undefined: the layer's own.
    virtual Var bias(const Linear& /*layer*/) { return Var(); }
    virtual Var bias(const Conv2d& /*layer*/) { return Var(); }
    // A norm's affine weight / bias as adapted (LyCORIS' norm modules: w_norm, b_norm), or undefined: its own.
    virtual Var weight(const GroupNorm& /*layer*/) { return Var(); }
    virtual Var bias(const GroupNorm& /*layer*/) { return Var(); }
    virtual Var weight(const LayerNorm& /*layer*/) { return Var(); }
    virtual Var bias(const LayerNorm& /*layer*/) { return Var(); }

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

// The Var half of the overload set the model forwards are written against (nn/apply.h, "One definition per
// forward"): the same signatures as the Tensor overloads, `out` dtypes ignored (Vars are F32).
Var apply(const Linear& l, const Var& x, DType out = DType::F32);
Var apply(const Conv2d& c, const Var& x);
Var apply(const GroupNorm& g, const Var& x, bool fuse_silu = false, DType out = DType::F32);
Var apply(const LayerNorm& l, const Var& x, DType out = DType::F32);
// nn/apply.h's Attention template on Vars, with the context optional.
Var apply(const Attention& a, const Var& x, const Var& context = Var(), bool causal = false);
inline Var residual_add(const Var& h, const Var& x) { return h + x; }
inline Var image_layout(const Var& x) { return x; }
inline Var compute_layout(const Var& x) { return x.channels_last(); }
inline Var param_value(const Param& p, const Var* /*tag*/) { return param_var(p); }
// GEGLU: hidden * gelu(gate), the two halves of x's last dim (ops/elementwise.h geglu).
Var geglu(const Var& x, DType out = DType::F32);
inline Var interpolate_nearest(const Var& x, int64_t oh, int64_t ow, DType /*out*/) {
    return interpolate_nearest(x, oh, ow);
}
// The products' precision comes from the thread's ComputePrecisionGuard on the Var path.
inline Var multi_head_attention(const Var& q, const Var& k, const Var& v, int64_t heads, bool causal, float scale,
                                Precision /*compute*/) {
    return multi_head_attention(q, k, v, heads, causal, scale);
}

}  // namespace nuance
