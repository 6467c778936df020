// Trainable parameters as autograd leaves. A ParamGrads holds one persistent leaf Var per module Param, so every use
// of a weight in a forward pass feeds the same gradient, and an optimizer finds (name, Param, grad) triples in one
// list. Module code asks for a weight's Var with param_var(p), which looks in the ParamGrads bound to the thread.
#pragma once
#include <string>
#include <unordered_map>
#include <vector>

#include "autograd/var.h"
#include "nn/module.h"

namespace nuance {

class ParamGrads {
public:
    struct Entry {
        std::string name;
        Param* param;
        Var leaf;  // requires_grad unless frozen
    };

    ParamGrads() = default;
    // Every parameter of the tree, in visit order. Parameters must hold F32 values (the master weights).
    explicit ParamGrads(Module& m, const std::string& prefix = "");
    ParamGrads(const ParamGrads&) = delete;
    ParamGrads& operator=(const ParamGrads&) = delete;

    void add(const std::string& name, Param& p);
    // The leaf for p. If p.value was replaced since the last call, the leaf follows it (and its grad is kept).
    Var var(const Param& p);
    bool contains(const Param& p) const { return index_.count(&p) != 0; }
    // dL/dp accumulated by backward(); undefined when p took no part in the loss since the last zero_grad().
    const Tensor& grad(const Param& p) const;
    void zero_grad();
    // Frozen parameters are constants in the graph (no gradient, skipped by optimizers).
    void set_trainable(const Param& p, bool trainable);
    // Freezes/unfreezes every parameter whose name starts with `prefix`; returns how many matched.
    size_t set_trainable(const std::string& prefix, bool trainable);

    std::vector<Entry>& entries() { return entries_; }
    const std::vector<Entry>& entries() const { return entries_; }
    size_t size() const { return entries_.size(); }
    int64_t numel() const;  // total trainable elements

    // While a Bind is alive, param_var() on this thread resolves through this set.
    class Bind {
    public:
        explicit Bind(ParamGrads& g);
        ~Bind();
        Bind(const Bind&) = delete;
        Bind& operator=(const Bind&) = delete;

    private:
        ParamGrads* saved_;
    };

private:
    const Entry& entry(const Param& p) const;
    std::vector<Entry> entries_;
    std::unordered_map<const Param*, size_t> index_;
};

// The Var for a module weight: the bound ParamGrads' leaf; with no set bound and grad mode off (inference through
// the Var path), a constant. With no set bound and grad mode on it is an error (the gradient would be lost).
Var param_var(const Param& p);
// Same, for an optional weight: undefined Var when the param holds no value (e.g. a Linear without bias).
Var param_var_opt(const Param& p);

}  // namespace nuance
