// Eager reverse-mode autograd (design.md §1 "autograd": eager tape, grad mode guard, gradcheck).
//
// A Var is a small handle to a Node: the forward value (an F32 Tensor), the accumulated gradient, and, for a value
// computed by a differentiable op, the op's parents and its backward rule (a closure written beside the forward in
// src/autograd/ops_*.cpp). There is no global tape: the graph is the web of Nodes reachable from the loss, so a
// graph lives exactly as long as some Var refers to it, and backward() walks it in reverse topological order.
#pragma once
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "core/tensor.h"

namespace nuance {

// Backward rule of one op: given dL/d(output), return dL/d(input i) for each input (same order as the inputs the op
// was recorded with). An entry may be left undefined when needs[i] is false (the input needs no gradient) or when the
// gradient is zero. Returned gradients must have the input's shape (any strides, F32).
using BackwardFn = std::function<std::vector<Tensor>(const Tensor& grad_out, const std::vector<bool>& needs)>;

struct Node {
    Tensor value;               // F32
    Tensor grad;                // leaves only (after backward): F32, contiguous, owned; undefined until set
    bool requires_grad = false;
    std::vector<std::shared_ptr<Node>> parents;  // inputs of the op that made this value (empty for leaves)
    BackwardFn backward;                          // empty for leaves and constants
    const char* op = "leaf";                      // for messages
    bool released = false;  // backward() already ran through this op and dropped its saved tensors

    Node() = default;
    ~Node();  // iterative: dropping a graph thousands of nodes deep must not recurse that deep
    Node(const Node&) = delete;
    Node& operator=(const Node&) = delete;
};

class Var {
public:
    Var() = default;  // undefined: defined() == false (e.g. an absent bias)
    // A leaf. The value is converted to F32 (a view is kept as is: the Var shares the tensor's memory).
    explicit Var(const Tensor& value, bool requires_grad = false);

    bool defined() const { return n_ != nullptr; }
    const Tensor& value() const;
    const Tensor& grad() const;  // accumulated dL/dvalue of a leaf; undefined before backward()
    bool requires_grad() const { return n_ && n_->requires_grad; }
    bool is_leaf() const { return n_ && !n_->backward && !n_->released; }
    const char* op() const { return n_ ? n_->op : "undefined"; }
    const Shape& shape() const { return value().shape(); }
    int64_t dim() const { return value().dim(); }
    int64_t size(int64_t d) const { return value().size(d); }
    int64_t numel() const { return value().numel(); }
    float item() const { return value().item(); }

    Var detach() const;  // same value, no history, no grad
    void zero_grad();    // drops the accumulated gradient of this leaf
    // Replaces the value of a leaf (e.g. after an optimizer step that produced a new tensor).
    void set_value(const Tensor& v);

    // Views and reshapes (ops_shape.cpp). Dims may be negative.
    Var reshape(const Shape& shape) const;  // one -1 allowed
    Var view(const Shape& shape) const { return reshape(shape); }
    Var permute(const std::vector<int64_t>& dims) const;
    Var transpose(int64_t a, int64_t b) const;
    Var slice(int64_t dim, int64_t start, int64_t end) const;
    Var narrow(int64_t dim, int64_t start, int64_t len) const { return slice(dim, start, start + len); }
    Var select(int64_t dim, int64_t index) const;
    Var unsqueeze(int64_t dim) const;
    Var squeeze(int64_t dim) const;
    Var flatten(int64_t start = 0, int64_t end = -1) const;
    Var expand(const Shape& shape) const;
    Var contiguous() const;
    Var channels_last() const;  // rank 4: [N, C, H, W] stored N, H, W, C (the gradient passes through as it comes)

    const std::shared_ptr<Node>& node() const { return n_; }
    explicit Var(std::shared_ptr<Node> n) : n_(std::move(n)) {}

private:
    std::shared_ptr<Node> n_;
};

// Grad mode (per thread). While a NoGradGuard is alive, ops record nothing: results are constants.
bool grad_enabled();
class NoGradGuard {
public:
    NoGradGuard();
    ~NoGradGuard();
    NoGradGuard(const NoGradGuard&) = delete;
    NoGradGuard& operator=(const NoGradGuard&) = delete;

private:
    bool saved_;
};

// Precision of the forward products (linear, conv2d, attention) of autograd ops on this thread: BF16 is mixed
// precision (operands rounded to bf16, f32 accumulation, f32 values, gradients and master weights; the backward
// products stay f32). FP32 (the default) everywhere else.
Precision compute_precision();
class ComputePrecisionGuard {
public:
    explicit ComputePrecisionGuard(Precision p);
    ~ComputePrecisionGuard();
    ComputePrecisionGuard(const ComputePrecisionGuard&) = delete;
    ComputePrecisionGuard& operator=(const ComputePrecisionGuard&) = delete;

private:
    Precision saved_;
};

// Records the result of a differentiable op. If grad mode is on and some input requires grad, the result keeps the
// inputs and `fn`; otherwise it is a constant and `fn` is dropped. Undefined inputs (an absent bias) are allowed and
// never receive a gradient.
Var record(const char* op, Tensor value, const std::vector<Var>& inputs, BackwardFn fn);

struct BackwardOptions {
    // Keep every op's saved tensors and rules so backward can run again over the same graph (costs memory).
    bool retain_graph = false;
};

// dL/dleaf for every leaf that requires grad, accumulated (+=) into the leaf's grad. `loss` must hold one element.
void backward(const Var& loss, const BackwardOptions& o = {});

// Sums `g` over the dims that broadcasting expanded, giving a gradient of shape `shape` (numpy broadcasting rules).
Tensor reduce_to_shape(const Tensor& g, const Shape& shape);

}  // namespace nuance
