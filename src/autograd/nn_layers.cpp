#include "autograd/nn_layers.h"

namespace nuance {

namespace {
thread_local LayerAdapters* t_adapters = nullptr;

Var with_delta(Var y, const Var& d) { return d.defined() ? y + d : y; }
}  // namespace

LayerAdapters::Bind::Bind(LayerAdapters& a) : saved_(t_adapters) { t_adapters = &a; }
LayerAdapters::Bind::~Bind() { t_adapters = saved_; }

Var apply(const Linear& l, const Var& x, DType) {
    Var b = l.has_bias ? param_var(l.bias) : Var();
    if (t_adapters) {
        if (const Var ab = t_adapters->bias(l); ab.defined()) b = ab;
        const Var w = t_adapters->weight(l);
        if (w.defined()) return linear(x, w, b);
    }
    Var y = linear(x, param_var(l.weight), b);
    return t_adapters ? with_delta(y, t_adapters->delta(l, x)) : y;
}

Var apply(const Conv2d& c, const Var& x) {
    Var b = c.has_bias ? param_var(c.bias) : Var();
    if (t_adapters) {
        if (const Var ab = t_adapters->bias(c); ab.defined()) b = ab;
        const Var w = t_adapters->weight(c);
        if (w.defined()) return conv2d(x, w, b, c.p);
    }
    Var y = conv2d(x, param_var(c.weight), b, c.p);
    return t_adapters ? with_delta(y, t_adapters->delta(c, x)) : y;
}

namespace {
// The bound adapters' version of a norm's parameter, else the parameter itself.
template <typename Norm>
std::pair<Var, Var> norm_affine(const Norm& n) {
    Var w, b;
    if (t_adapters) {
        w = t_adapters->weight(n);
        b = t_adapters->bias(n);
    }
    if (!w.defined()) w = param_var(n.weight);
    if (!b.defined()) b = param_var(n.bias);
    return {w, b};
}
}  // namespace

Var apply(const GroupNorm& g, const Var& x, bool fuse_silu, DType) {
    const auto [w, b] = norm_affine(g);
    return group_norm(x, g.groups, w, b, g.eps, fuse_silu);
}

Var apply(const LayerNorm& l, const Var& x, DType) {
    if (!l.affine) return layer_norm(x, Var(), Var(), l.eps);
    const auto [w, b] = norm_affine(l);
    return layer_norm(x, w, b, l.eps);
}

Var apply(const Attention& a, const Var& x, const Var& context, bool causal) {
    return apply<Var>(a, x, context, causal);
}

Var geglu(const Var& x, DType) {
    auto [hidden, gate] = chunk<2>(x, -1);
    return hidden * gelu(gate);
}

}  // namespace nuance
