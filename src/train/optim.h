// Optimisation: AdamW (Loshchilov & Hutter 2019, decoupled weight decay) matching torch.optim.AdamW step for step,
// global-norm gradient clipping (torch.nn.utils.clip_grad_norm_), warmup + cosine learning rate (diffusers'
// get_cosine_schedule_with_warmup), and an exponential moving average of the weights (diffusers' EMAModel).
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "autograd/param_grads.h"

namespace nuance {

struct AdamWOptions {
    float lr = 1e-4f;
    float beta1 = 0.9f;
    float beta2 = 0.999f;
    float eps = 1e-8f;
    float weight_decay = 1e-2f;
};

class AdamW {
public:
    // step() updates the weights in place and then drops oneDNN's packed weight copies (clear_packed_weights),
    // which would otherwise keep serving the old values to linear/conv2d.
    // Parameters held in memory nuance does not own (an mmap'd weight file) or in a strided view are copied once
    // here, so updates never write into a file mapping.
    AdamW(ParamGrads& params, const AdamWOptions& o);

    // One update of every trainable parameter that has a gradient (others are skipped, and their step count stays,
    // as in torch). Updates the parameters' F32 values in place.
    void step();
    void set_lr(float lr) { o_.lr = lr; }
    float lr() const { return o_.lr; }
    const AdamWOptions& options() const { return o_; }

    // Optimizer state for checkpoints: "<param>.exp_avg", "<param>.exp_avg_sq" and "<param>.step" (a [1] F32).
    // Parameters never stepped have no entries.
    std::vector<std::pair<std::string, Tensor>> state_dict() const;
    // Restores state_dict(); every entry must name a parameter of the set with the right shape.
    void load_state_dict(const std::map<std::string, Tensor>& state);

private:
    struct State {
        Tensor exp_avg, exp_avg_sq;  // F32, the parameter's shape
        int64_t step = 0;
    };
    ParamGrads& params_;
    AdamWOptions o_;
    std::vector<State> state_;  // one per ParamGrads entry
};

// Scales all gradients so their global L2 norm is at most max_norm (coef = max_norm / (norm + 1e-6), applied only
// when < 1, like torch). Returns the norm before clipping. A non-finite norm is an error (the step would poison the
// weights) unless allow_nonfinite is set.
double clip_grad_norm(ParamGrads& params, double max_norm, bool allow_nonfinite = false);
double grad_norm(const ParamGrads& params);  // global L2 norm of the gradients that exist

// Learning rate at `step` (0-based): linear warmup from 0 over `warmup` steps, then half a cosine from base_lr down to
// min_lr at `total` steps (constant min_lr after). With min_lr = 0 it is diffusers' cosine schedule.
float lr_warmup_cosine(int64_t step, int64_t warmup, int64_t total, float base_lr, float min_lr = 0.0f);

struct EmaOptions {
    float decay = 0.9999f;
    // diffusers' use_ema_warmup=False default: decay_t = min(decay, (1 + t) / (10 + t)) at update t (1-based).
    bool warmup = true;
};

// Shadow copies of the trainable weights: shadow -= (1 - decay_t) · (shadow − param).
class Ema {
public:
    Ema(ParamGrads& params, const EmaOptions& o);
    void update();
    int64_t updates() const { return updates_; }
    float current_decay() const;  // decay the next update() will use
    // (name, shadow tensor) for every tracked parameter, in the set's order: save these as the EMA weights.
    std::vector<std::pair<std::string, Tensor>> state_dict() const;
    void load_state_dict(const std::map<std::string, Tensor>& state, int64_t updates);
    // Swaps the contents of shadow and live weights (call again to swap back): sample with the EMA weights, then
    // keep training the live ones. Contents, not handles, so the parameters' memory stays where it is.
    void swap_into_params();

private:
    ParamGrads& params_;
    EmaOptions o_;
    std::vector<Tensor> shadow_;  // one per ParamGrads entry (undefined for frozen ones)
    int64_t updates_ = 0;
};

}  // namespace nuance
