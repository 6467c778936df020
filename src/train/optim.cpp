// AdamW, gradient clipping, LR schedule and EMA. The arithmetic mirrors torch's single-tensor AdamW
// (torch/optim/adamw.py, foreach=False) operation by operation in f32, with the bias corrections in double as
// Python computes them, so a run matches torch step for step.
#include "train/optim.h"

#include "core/quantized_weight.h"

#include <cmath>

#include "backends/backend.h"
#include "core/op_stats.h"
#include "ops/elementwise.h"

namespace nuance {

namespace {

constexpr double kPi = 3.14159265358979323846;

// The parameter's value as owned, contiguous F32 memory that updates may write into.
Tensor& writable(Param& p) {
    if (!p.value.is_contiguous() || !p.value.storage()->owned()) {
        Tensor t = Tensor::empty(p.value.shape(), DType::F32);
        t.copy_(p.value);
        p.value = t;
    }
    return p.value;
}

}  // namespace

AdamW::AdamW(ParamGrads& params, const AdamWOptions& o) : params_(params), o_(o) {
    NUANCE_CHECK(o.lr >= 0 && o.eps >= 0 && o.weight_decay >= 0, "AdamW: lr ", o.lr, ", eps ", o.eps,
                 ", weight_decay ", o.weight_decay, " must be >= 0");
    NUANCE_CHECK(o.beta1 >= 0 && o.beta1 < 1 && o.beta2 >= 0 && o.beta2 < 1, "AdamW: betas (", o.beta1, ", ",
                 o.beta2, ") must be in [0, 1)");
    state_.resize(params.size());
    for (auto& e : params.entries())
        if (!is_quantized_storage(e.param->value)) writable(*e.param);  // quantized: frozen blocks, never updated
}

void AdamW::step() {
    OpTimer op_timer("adamw");
    NUANCE_CHECK(state_.size() == params_.size(), "AdamW: the parameter set changed size (", state_.size(), " -> ",
                 params_.size(), ")");
    for (size_t i = 0; i < state_.size(); ++i) {
        auto& e = params_.entries()[i];
        const Tensor& g_in = e.leaf.grad();
        if (!e.leaf.requires_grad() || !g_in.defined()) continue;
        Tensor& p = writable(*e.param);
        NUANCE_CHECK(g_in.shape() == p.shape(), "AdamW: gradient ", g_in.shape(), " for parameter '", e.name, "' ",
                     p.shape());
        State& s = state_[i];
        if (!s.exp_avg.defined()) {
            s.exp_avg = Tensor::zeros(p.shape());
            s.exp_avg_sq = Tensor::zeros(p.shape());
        }
        const int64_t t = ++s.step;
        const double bc1 = 1.0 - std::pow((double)o_.beta1, (double)t);
        const double bc2 = 1.0 - std::pow((double)o_.beta2, (double)t);
        const float decay = (float)(1.0 - (double)o_.lr * (double)o_.weight_decay);  // param.mul_(1 - lr·wd)
        const float step_size = (float)((double)o_.lr / bc1);
        const float bc2_sqrt = (float)std::sqrt(bc2);
        const float w1 = (float)(1.0 - (double)o_.beta1), b2 = o_.beta2, w2 = (float)(1.0 - (double)o_.beta2);
        const float eps = o_.eps;
        const Tensor g = g_in.f32().contiguous();
        const float* pg = g.data<float>();
        float* pp = p.data<float>();
        float* pm = s.exp_avg.data<float>();
        float* pv = s.exp_avg_sq.data<float>();
        const int64_t n = p.numel();
        // Vectorised (this file is compiled with -fno-math-errno, so std::sqrt needs no branch); the same operations
        // in the same order per element as the scalar loop, so the result does not depend on the vector width.
#pragma omp parallel for simd schedule(static) if (n > 65536)
        for (int64_t j = 0; j < n; ++j) {
            pp[j] *= decay;
            pm[j] += w1 * (pg[j] - pm[j]);                       // exp_avg.lerp_(grad, 1 - beta1)
            pv[j] = pv[j] * b2 + w2 * (pg[j] * pg[j]);           // exp_avg_sq.mul_(beta2).addcmul_(g, g, 1 - beta2)
            const float denom = std::sqrt(pv[j]) / bc2_sqrt + eps;  // (v.sqrt() / sqrt(bc2)).add_(eps)
            pp[j] += -step_size * (pm[j] / denom);              // param.addcdiv_(m, denom, value=-lr/bc1)
        }
    }
    clear_packed_weights();  // the weights changed in place: oneDNN's packed copies of them are stale
}

std::vector<std::pair<std::string, Tensor>> AdamW::state_dict() const {
    std::vector<std::pair<std::string, Tensor>> out;
    for (size_t i = 0; i < state_.size(); ++i) {
        const State& s = state_[i];
        if (!s.exp_avg.defined()) continue;
        const std::string& name = params_.entries()[i].name;
        out.emplace_back(name + ".exp_avg", s.exp_avg);
        out.emplace_back(name + ".exp_avg_sq", s.exp_avg_sq);
        out.emplace_back(name + ".step", Tensor::from_vector({(float)s.step}, {1}));
    }
    return out;
}

void AdamW::load_state_dict(const std::map<std::string, Tensor>& state) {
    std::vector<State> loaded(params_.size());
    size_t used = 0;
    for (size_t i = 0; i < loaded.size(); ++i) {
        const auto& e = params_.entries()[i];
        const auto m = state.find(e.name + ".exp_avg"), v = state.find(e.name + ".exp_avg_sq"),
                   st = state.find(e.name + ".step");
        const int found = (m != state.end()) + (v != state.end()) + (st != state.end());
        if (found == 0) continue;
        NUANCE_CHECK(found == 3, "AdamW state: parameter '", e.name, "' has ", found,
                     " of its 3 entries (exp_avg, exp_avg_sq, step)");
        NUANCE_CHECK(m->second.shape() == e.param->value.shape() && v->second.shape() == e.param->value.shape(),
                     "AdamW state: '", e.name, "' moments ", m->second.shape(), " / ", v->second.shape(),
                     " for a parameter of shape ", e.param->value.shape());
        NUANCE_CHECK(st->second.numel() == 1, "AdamW state: '", e.name, ".step' has shape ", st->second.shape());
        const float step = st->second.f32().item();
        NUANCE_CHECK(step >= 0 && step < 1e9f && step == std::floor(step), "AdamW state: '", e.name,
                     ".step' = ", step, " is not a step count");
        loaded[i] = {m->second.f32().contiguous().clone(), v->second.f32().contiguous().clone(), (int64_t)step};
        used += 3;
    }
    if (used != state.size())
        for (const auto& [k, t] : state) {
            bool known = false;
            for (const auto& e : params_.entries())
                for (const char* suffix : {".exp_avg", ".exp_avg_sq", ".step"})
                    known = known || k == e.name + suffix;
            NUANCE_CHECK(known, "AdamW state: entry '", k, "' matches no parameter of the model");
        }
    state_ = std::move(loaded);
}

double grad_norm(const ParamGrads& params) {
    OpTimer op_timer("grad_norm");
    // Sums of squares in double over fixed chunks (summed in a fixed order), so the norm does not depend on the
    // thread count; the chunks run in parallel, each vectorised.
    constexpr int64_t kChunk = 1 << 14;
    struct Piece {
        const float* p;
        int64_t n;
    };
    std::vector<Piece> pieces;
    std::vector<Tensor> held;  // dense f32 copies of gradients that are neither (none in nuance's own training)
    for (const auto& e : params.entries()) {
        const Tensor& g0 = e.leaf.grad();
        if (!e.leaf.requires_grad() || !g0.defined()) continue;
        // A dense gradient in any dimension order holds its elements in numel() consecutive floats.
        const Tensor& g = g0.dtype() == DType::F32 && g0.is_dense() ? g0 : held.emplace_back(g0.f32().contiguous());
        const float* p = g.data<float>();
        for (int64_t j = 0; j < g.numel(); j += kChunk) pieces.push_back({p + j, std::min(kChunk, g.numel() - j)});
    }
    std::vector<double> part(pieces.size());
#pragma omp parallel for schedule(static) if (pieces.size() > 8)
    for (size_t i = 0; i < pieces.size(); ++i) {
        const float* p = pieces[i].p;
        double s = 0;
#pragma omp simd reduction(+ : s)
        for (int64_t j = 0; j < pieces[i].n; ++j) s += (double)p[j] * (double)p[j];
        part[i] = s;
    }
    double total = 0;
    for (double v : part) total += v;
    return std::sqrt(total);
}

double clip_grad_norm(ParamGrads& params, double max_norm, bool allow_nonfinite) {
    NUANCE_CHECK(max_norm > 0, "clip_grad_norm: max_norm must be > 0, got ", max_norm);
    const double norm = grad_norm(params);
    NUANCE_CHECK(allow_nonfinite || std::isfinite(norm), "clip_grad_norm: the gradient norm is ", norm,
                 " (a NaN or Inf in the gradients; lower the learning rate or check the loss)");
    const double coef = max_norm / (norm + 1e-6);
    if (coef < 1.0)
        for (auto& e : params.entries()) {
            Tensor g = e.leaf.grad();  // owned by the leaf: scaled in place
            if (e.leaf.requires_grad() && g.defined()) mul_(g, (float)coef);
        }
    return norm;
}

float lr_warmup_cosine(int64_t step, int64_t warmup, int64_t total, float base_lr, float min_lr) {
    NUANCE_CHECK(warmup >= 0 && total >= 0 && step >= 0, "lr_warmup_cosine: step ", step, ", warmup ", warmup,
                 ", total ", total, " must be >= 0");
    if (step < warmup) return (float)((double)base_lr * (double)step / (double)std::max<int64_t>(1, warmup));
    const double progress = (double)(step - warmup) / (double)std::max<int64_t>(1, total - warmup);
    const double f = std::max(0.0, 0.5 * (1.0 + std::cos(kPi * std::min(progress, 1.0))));
    return (float)((double)min_lr + ((double)base_lr - (double)min_lr) * f);
}

Ema::Ema(ParamGrads& params, const EmaOptions& o) : params_(params), o_(o) {
    NUANCE_CHECK(o.decay >= 0 && o.decay <= 1, "Ema: decay ", o.decay, " must be in [0, 1]");
    for (const auto& e : params.entries())
        shadow_.push_back(e.leaf.requires_grad() ? e.param->value.f32().contiguous().clone() : Tensor());
}

float Ema::current_decay() const {
    const double t = (double)(updates_ + 1);
    return o_.warmup ? (float)std::min((double)o_.decay, (1.0 + t) / (10.0 + t)) : o_.decay;
}

void Ema::update() {
    OpTimer op_timer("ema");
    NUANCE_CHECK(shadow_.size() == params_.size(), "Ema: the parameter set changed size");
    const float w = 1.0f - current_decay();
    for (size_t i = 0; i < shadow_.size(); ++i) {
        if (!shadow_[i].defined()) continue;
        const Tensor p = params_.entries()[i].param->value.f32().contiguous();
        float* s = shadow_[i].data<float>();
        const float* pp = p.data<float>();
        const int64_t n = p.numel();
#pragma omp parallel for schedule(static) if (n > 65536)
        for (int64_t j = 0; j < n; ++j) s[j] -= w * (s[j] - pp[j]);
    }
    ++updates_;
}

std::vector<std::pair<std::string, Tensor>> Ema::state_dict() const {
    std::vector<std::pair<std::string, Tensor>> out;
    for (size_t i = 0; i < shadow_.size(); ++i)
        if (shadow_[i].defined()) out.emplace_back(params_.entries()[i].name, shadow_[i]);
    return out;
}

void Ema::load_state_dict(const std::map<std::string, Tensor>& state, int64_t updates) {
    NUANCE_CHECK(updates >= 0, "Ema: update count ", updates, " must be >= 0");
    std::vector<Tensor> loaded(shadow_.size());
    for (size_t i = 0; i < shadow_.size(); ++i) {
        if (!shadow_[i].defined()) continue;
        const auto& e = params_.entries()[i];
        const auto it = state.find(e.name);
        NUANCE_CHECK_CODE(it != state.end(), NotFound, "Ema state: no weights for '", e.name, "'");
        NUANCE_CHECK(it->second.shape() == shadow_[i].shape(), "Ema state: '", e.name, "' is ", it->second.shape(),
                     ", expected ", shadow_[i].shape());
        loaded[i] = it->second.f32().contiguous().clone();
    }
    shadow_ = std::move(loaded);
    updates_ = updates;
}

void Ema::swap_into_params() {
    for (size_t i = 0; i < shadow_.size(); ++i) {
        if (!shadow_[i].defined()) continue;
        Tensor& p = writable(*params_.entries()[i].param);
        const Tensor live = p.clone();
        p.copy_(shadow_[i]);
        shadow_[i].copy_(live);
    }
    clear_packed_weights();  // weights changed in place
}

}  // namespace nuance
