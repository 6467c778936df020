// The tape engine: leaves, grad mode, recording an op, and the reverse sweep.
#include "autograd/var.h"

#include "core/op_stats.h"
#include "core/quantized_weight.h"

#include <unordered_map>
#include <unordered_set>

#include "ops/elementwise.h"

namespace nuance {

namespace {
thread_local bool t_grad_enabled = true;
}  // namespace

bool grad_enabled() { return t_grad_enabled; }

thread_local Precision t_compute = Precision::FP32;
Precision compute_precision() { return t_compute; }
ComputePrecisionGuard::ComputePrecisionGuard(Precision p) : saved_(t_compute) {
    t_compute = p == Precision::BF16 ? Precision::BF16 : Precision::FP32;
}
ComputePrecisionGuard::~ComputePrecisionGuard() { t_compute = saved_; }
NoGradGuard::NoGradGuard() : saved_(t_grad_enabled) { t_grad_enabled = false; }
NoGradGuard::~NoGradGuard() { t_grad_enabled = saved_; }

Node::~Node() {
    std::vector<std::shared_ptr<Node>> stack = std::move(parents);
    while (!stack.empty()) {
        std::shared_ptr<Node> p = std::move(stack.back());
        stack.pop_back();
        if (p && p.use_count() == 1) {  // the last owner: take its parents so its destructor has none to recurse into
            for (auto& q : p->parents) stack.push_back(std::move(q));
            p->parents.clear();
        }
    }
}

Var::Var(const Tensor& value, bool requires_grad) : n_(std::make_shared<Node>()) {
    NUANCE_CHECK(value.defined(), "Var: undefined tensor");
    if (is_quantized_storage(value)) {  // a frozen quantized weight (ggml blocks): the ops that take weights read it
        NUANCE_CHECK(!requires_grad, "Var: quantized weight ", quantized_weight_str(value),
                     " cannot require a gradient (train an adapter beside it)");
        n_->value = value;
        return;
    }
    NUANCE_CHECK(dtype_is_float(value.dtype()), "Var: value must be a float tensor, got ", value.str());
    n_->value = value.f32();
    n_->requires_grad = requires_grad;
}

const Tensor& Var::value() const {
    NUANCE_CHECK(n_ != nullptr, "Var: use of an undefined Var");
    return n_->value;
}

const Tensor& Var::grad() const {
    NUANCE_CHECK(n_ != nullptr, "Var: use of an undefined Var");
    return n_->grad;
}

Var Var::detach() const { return Var(value(), false); }

void Var::zero_grad() {
    if (n_) n_->grad = Tensor();
}

void Var::set_value(const Tensor& v) {
    NUANCE_CHECK(is_leaf(), "Var::set_value: only a leaf's value can be replaced, not the result of '", op(), "'");
    NUANCE_CHECK(v.defined() && v.shape() == n_->value.shape(), "Var::set_value: expected shape ", n_->value.shape(),
                 ", got ", v.defined() ? v.shape() : Shape{});
    n_->value = v.f32();
}

Var record(const char* op, Tensor value, const std::vector<Var>& inputs, BackwardFn fn) {
    auto n = std::make_shared<Node>();
    n->value = std::move(value);
    n->op = op;
    bool any = false;
    if (grad_enabled())
        for (const Var& v : inputs) any = any || v.requires_grad();
    if (any) {
        n->requires_grad = true;
        n->parents.reserve(inputs.size());
        for (const Var& v : inputs) n->parents.push_back(v.node());  // nullptr for an absent input
        n->backward = std::move(fn);
    }
    return Var(std::move(n));
}

Tensor reduce_to_shape(const Tensor& g, const Shape& shape) {
    if (g.shape() == shape) return g;
    const int64_t lead = g.dim() - (int64_t)shape.size();
    NUANCE_CHECK(lead >= 0, "reduce_to_shape: gradient ", g.shape(), " has fewer dims than ", shape);
    Tensor r = g;
    for (int64_t i = 0; i < lead; ++i) r = sum(r, 0, false);
    for (int64_t d = 0; d < (int64_t)shape.size(); ++d)
        if (shape[(size_t)d] == 1 && r.size(d) != 1) r = sum(r, d, true);
    NUANCE_CHECK(r.shape() == shape, "reduce_to_shape: cannot reduce gradient ", g.shape(), " to ", shape);
    return r;
}

namespace {

// Nodes reachable from root through parents that require grad, parents before children (iterative DFS: a UNet's
// graph is thousands of nodes deep). Owning pointers: releasing a node during the sweep drops its links to its
// parents, which must stay alive until the sweep reaches them.
std::vector<std::shared_ptr<Node>> topo_order(const std::shared_ptr<Node>& root) {
    std::vector<std::shared_ptr<Node>> order;
    std::unordered_set<Node*> seen{root.get()};
    std::vector<std::pair<std::shared_ptr<Node>, size_t>> stack{{root, 0}};
    while (!stack.empty()) {
        Node* n = stack.back().first.get();
        size_t& i = stack.back().second;
        if (i < n->parents.size()) {
            const std::shared_ptr<Node>& p = n->parents[i++];
            if (p && p->requires_grad && seen.insert(p.get()).second) stack.emplace_back(p, 0);
        } else {
            order.push_back(std::move(stack.back().first));
            stack.pop_back();
        }
    }
    return order;
}

// A new contiguous F32 tensor holding g's values (a leaf's gradient is written in place by optimizers and clipping).
Tensor owned_copy(const Tensor& g) {
    Tensor t = Tensor::empty(g.shape(), DType::F32);
    t.copy_(g);
    return t;
}

void accumulate(Tensor& slot, const Tensor& g) {
    // Out of place: a gradient handed over by a backward rule may share memory with other gradients.
    slot = slot.defined() ? add(slot, g) : g;
}

}  // namespace

void backward(const Var& loss, const BackwardOptions& o) {
    NUANCE_CHECK(loss.defined(), "backward: the loss is an undefined Var");
    NUANCE_CHECK(loss.numel() == 1, "backward: the loss must be a scalar (one element), got shape ", loss.shape(),
                 " from '", loss.op(), "'; reduce it first (mean or sum)");
    NUANCE_CHECK(loss.requires_grad(), "backward: the loss (from '", loss.op(),
                 "') does not require grad: no input requires grad, or it was computed under NoGradGuard");
    Node* root = loss.node().get();
    NUANCE_CHECK(!root->released, "backward: the graph through '", root->op,
                 "' was already freed by an earlier backward(); pass retain_graph = true to run it twice");
    const std::vector<std::shared_ptr<Node>> order = topo_order(loss.node());
    std::unordered_map<Node*, Tensor> grads;
    grads[root] = Tensor::full(root->value.shape(), 1.0f);
    for (auto it = order.rbegin(); it != order.rend(); ++it) {
        Node* n = it->get();
        auto gi = grads.find(n);
        if (gi == grads.end()) continue;
        const Tensor g = std::move(gi->second);
        grads.erase(gi);
        if (n->released)
            fail(ErrorCode::InvalidArgument, "backward: the graph through '", n->op,
                 "' was already freed by an earlier backward(); pass retain_graph = true to run it twice");
        if (!n->backward) {  // a leaf: accumulate into an owned, contiguous gradient
            if (!n->grad.defined()) n->grad = owned_copy(g);
            else axpy_(n->grad, 1.0f, g);
            continue;
        }
        std::vector<bool> needs(n->parents.size());
        for (size_t i = 0; i < needs.size(); ++i) needs[i] = n->parents[i] && n->parents[i]->requires_grad;
        std::vector<Tensor> gin;
        if (current_op_profile()) {  // `nuance train --profile`: each rule's own time as "<op> backward"
            const std::string name = std::string(n->op) + " backward";
            OpTimer timer(name.c_str());
            gin = n->backward(g, needs);
        } else {
            gin = n->backward(g, needs);
        }
        NUANCE_ASSERT(gin.size() == n->parents.size(), "op '", n->op, "' returned ", gin.size(), " gradients for ",
                      n->parents.size(), " inputs");
        for (size_t i = 0; i < gin.size(); ++i) {
            if (!needs[i] || !gin[i].defined()) continue;
            Node* p = n->parents[i].get();
            NUANCE_ASSERT(gin[i].shape() == p->value.shape(), "op '", n->op, "' gave input ", i, " a gradient of shape ",
                          gin[i].shape(), " for a value of shape ", p->value.shape());
            accumulate(grads[p], gin[i]);
        }
        if (!o.retain_graph) {
            n->backward = nullptr;
            n->parents.clear();
            n->released = true;
        }
    }
}

}  // namespace nuance
