#include "autograd/param_grads.h"

#include "core/quantized_weight.h"

namespace nuance {

namespace {
thread_local ParamGrads* t_bound = nullptr;
}  // namespace

ParamGrads::ParamGrads(Module& m, const std::string& prefix) {
    for_each_param(m, [&](const std::string& name, Param& p) { add(prefix + name, p); });
}

void ParamGrads::add(const std::string& name, Param& p) {
    NUANCE_CHECK(p.value.defined(), "ParamGrads: parameter '", name, "' ", p.shape,
                 " has no value (load or initialise the module first)");
    // A quantized weight (a GGUF base under a LoRA) is a frozen leaf: its blocks are read as they are.
    const bool quantized = is_quantized_storage(p.value);
    NUANCE_CHECK(quantized || p.value.dtype() == DType::F32, "ParamGrads: parameter '", name, "' is ", p.value.str(),
                 "; training needs F32 master weights");
    NUANCE_CHECK(!index_.count(&p), "ParamGrads: parameter '", name, "' added twice");
    index_[&p] = entries_.size();
    entries_.push_back({name, &p, Var(p.value, !quantized)});
}

const ParamGrads::Entry& ParamGrads::entry(const Param& p) const {
    auto it = index_.find(&p);
    NUANCE_CHECK(it != index_.end(), "ParamGrads: a parameter of shape ", p.shape,
                 " is not in this set (build the ParamGrads from the module that owns it)");
    return entries_[it->second];
}

Var ParamGrads::var(const Param& p) {
    const Entry& e = entry(p);
    Node& n = *e.leaf.node();
    if (n.value.storage() != p.value.storage() || n.value.offset() != p.value.offset() ||
        n.value.shape() != p.value.shape()) {
        NUANCE_CHECK(p.value.defined() && (p.value.dtype() == DType::F32 || is_quantized_storage(p.value)),
                     "ParamGrads: parameter '", e.name, "' now holds ",
                     p.value.defined() ? p.value.str() : std::string("no value"), "; expected F32");
        NUANCE_CHECK(!(n.requires_grad && is_quantized_storage(p.value)), "ParamGrads: parameter '", e.name,
                     "' is now quantized (", quantized_weight_str(p.value), ") and cannot be trained");
        if (n.grad.defined() && n.grad.shape() != p.value.shape()) n.grad = Tensor();
        n.value = p.value;
    }
    return e.leaf;
}

const Tensor& ParamGrads::grad(const Param& p) const { return entry(p).leaf.grad(); }

void ParamGrads::zero_grad() {
    for (Entry& e : entries_) e.leaf.zero_grad();
}

void ParamGrads::set_trainable(const Param& p, bool trainable) {
    const Entry& e = entry(p);
    NUANCE_CHECK(!(trainable && is_quantized_storage(p.value)), "ParamGrads: parameter '", e.name, "' is quantized (",
                 quantized_weight_str(p.value), ") and cannot be trained: train an adapter beside it (LoRA), or ",
                 "load the model unquantized");
    e.leaf.node()->requires_grad = trainable;
    if (!trainable) e.leaf.node()->grad = Tensor();
}

size_t ParamGrads::set_trainable(const std::string& prefix, bool trainable) {
    size_t n = 0;
    for (Entry& e : entries_)
        if (e.name.compare(0, prefix.size(), prefix) == 0) {
            set_trainable(*e.param, trainable);
            ++n;
        }
    return n;
}

int64_t ParamGrads::numel() const {
    int64_t n = 0;
    for (const Entry& e : entries_)
        if (e.leaf.requires_grad()) n += e.leaf.numel();
    return n;
}

ParamGrads::Bind::Bind(ParamGrads& g) : saved_(t_bound) { t_bound = &g; }
ParamGrads::Bind::~Bind() { t_bound = saved_; }

Var param_var(const Param& p) {
    if (t_bound) return t_bound->var(p);
    NUANCE_CHECK(!grad_enabled(), "param_var: no ParamGrads is bound on this thread (bind one with "
                 "ParamGrads::Bind for training, or use NoGradGuard for inference); parameter shape ", p.shape);
    NUANCE_CHECK(p.value.defined(), "param_var: parameter ", p.shape, " has no value");
    return Var(p.value, false);
}

Var param_var_opt(const Param& p) { return p.value.defined() ? param_var(p) : Var(); }

}  // namespace nuance
