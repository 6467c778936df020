// Module tree: each module names its parameters and children once, in visit(), with the checkpoint's key names
// (diffusers/transformers layout), so loading, saving, random init and listing all fall out of one walk.
#pragma once
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace nuance {

// A weight slot: the shape the config expects, and the tensor once loaded/initialised.
struct Param {
    Shape shape;
    Tensor value;
    // Weight matrices of Linear/Conv2d: `compute` is the precision their products run in. Such a
    // weight may stay in its file's dtype and mmap'd: the op converts and packs it once, on first use.
    bool matrix = false;
    Precision compute = Precision::FP32;
    Param() = default;
    explicit Param(Shape s, bool matrix_ = false) : shape(std::move(s)), matrix(matrix_) {}
    const Tensor& operator*() const { return value; }
    bool defined() const { return value.defined(); }
};

class Module;

class ParamVisitor {
public:
    virtual ~ParamVisitor() = default;
    virtual void param(const std::string& full_name, Param& p) = 0;

    void operator()(const std::string& name, Param& p) { param(join(name), p); }
    void operator()(const std::string& name, Module& m);
    template <class M>
    void operator()(const std::string& name, std::vector<M>& ms) {
        for (size_t i = 0; i < ms.size(); ++i) (*this)(join_index(name, i), ms[i]);
    }
    const std::string& prefix() const { return prefix_; }

private:
    std::string join(const std::string& name) const { return prefix_.empty() ? name : prefix_ + "." + name; }
    std::string join_index(const std::string& name, size_t i) const { return name + "." + std::to_string(i); }
    std::string prefix_;
};

class Module {
public:
    virtual ~Module() = default;
    virtual void visit(ParamVisitor& v) = 0;
};

inline void ParamVisitor::operator()(const std::string& name, Module& m) {
    const std::string saved = prefix_;
    prefix_ = join(name);
    m.visit(*this);
    prefix_ = saved;
}

// Calls f(name, param) for every parameter of the tree.
void for_each_param(Module& m, const std::function<void(const std::string&, Param&)>& f);

// Moves every defined parameter to `device` (a copy through its backend; a no-op for those already there). Other
// tensors a model holds (position tables, ids) stay on the host: ops accept host operands beside device ones.
void to_device(Module& m, Device device);

struct LoadOptions {
    DType compute = DType::F32;  // weights are converted to this once, at load
    // Inference loads: weight matrices keep the file's tensor (no copy at load) and run in `matrix_compute`;
    // the ops pack them once (the backend's packed-weight cache) and let the file's pages go.
    bool matrices_as_stored = false;
    Precision matrix_compute = Precision::FP32;
    std::string source;          // file name for messages
    bool allow_missing = false;  // leave absent tensors undefined instead of failing
};

// Loads every parameter from `tensors`; checks that each exists and has the expected shape (a tensor of the
// same element count but other shape, such as a 1x1 conv stored for a Linear, is reshaped).
// Returns the names in `tensors` that the module did not use.
std::vector<std::string> load_module(Module& m, const std::map<std::string, Tensor>& tensors, const LoadOptions& o);

// Fills every parameter with N(0, std^2) (or ones for norm weights, zeros for biases when `plain` is set).
void init_random(Module& m, uint64_t seed, float std = 0.02f);

// (name, tensor) pairs in visit order, for save_safetensors.
std::vector<std::pair<std::string, Tensor>> state_dict(Module& m);

}  // namespace nuance
