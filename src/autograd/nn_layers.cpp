#include "autograd/nn_layers.h"

namespace nuance {

namespace {
thread_local LayerAdapters* t_adapters = nullptr;

Var with_delta(Var y, const Var& d) { return d.defined() ? y + d : y; }
}  // namespace

LayerAdapters::Bind::Bind(LayerAdapters& a) : saved_(t_adapters) { t_adapters = &a; }
LayerAdapters::Bind::~Bind() { t_adapters = saved_; }

Var forward(Linear& l, const Var& x) {
    Var y = linear(x, param_var(l.weight), l.has_bias ? param_var(l.bias) : Var());
    return t_adapters ? with_delta(y, t_adapters->delta(l, x)) : y;
}

Var forward(Conv2d& c, const Var& x) {
    Var y = conv2d(x, param_var(c.weight), c.has_bias ? param_var(c.bias) : Var(), c.p);
    return t_adapters ? with_delta(y, t_adapters->delta(c, x)) : y;
}

Var forward(GroupNorm& g, const Var& x, bool fuse_silu) {
    return group_norm(x, g.groups, param_var(g.weight), param_var(g.bias), g.eps, fuse_silu);
}

Var forward(LayerNorm& l, const Var& x) {
    return l.affine ? layer_norm(x, param_var(l.weight), param_var(l.bias), l.eps) : layer_norm(x, Var(), Var(), l.eps);
}

Var forward(Attention& a, const Var& x, const Var& context, bool causal) {
    const Var& c = context.defined() ? context : x;
    return forward(a.to_out,
                   multi_head_attention(forward(a.to_q, x), forward(a.to_k, c), forward(a.to_v, c), a.heads, causal));
}

}  // namespace nuance
