// `nuance train --model lcm`: latent consistency distillation (Luo et al. 2023, "Latent Consistency Models",
// Algorithm 1; diffusers' examples/consistency_distillation/train_lcm_distill_sd_wds.py).
//   student  f_θ(z, t, c, ω) = c_skip(t) z + c_out(t) x0_θ(z, t, c, ω): the teacher's UNet with a guidance-scale
//            embedding of ω (time_embedding.cond_proj, zero-initialised, so the student starts as the teacher)
//   solver   one skipping DDIM step k = T / N timesteps back on the teacher with CFG at ω:
//            x0 = x0_c + ω (x0_c - x0_u), ε = ε_c + ω (ε_c - ε_u), z_prev = sqrt(ᾱ_prev) x0 + sqrt(1 - ᾱ_prev) ε
//   target   f_θ⁻(z_prev, t - k, c, ω), θ⁻ = EMA of θ (decay --ema-decay)
//   loss     Huber sqrt(d² + c²) - c (c = 0.001) or L2, mean over the batch
// ω ~ U[ω_min, ω_max] per image, in the paper's convention: the CFG output is (1 + ω) cond - ω uncond, so a
// guidance scale s (`--cfg-scale`) is ω = s - 1 (diffusers' LatentConsistencyModelPipeline does the same).
// The VAE and the text encoder are the teacher's, frozen. The run folder is a trainer's (checkpoints/,
// train_log.jsonl, --resume) and exports <out>/model: the teacher's folder with the student UNet and an
// LCMScheduler config, sampled with `nuance generate -m <out>/model --sampler lcm --steps 4`.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "train/trainer.h"

namespace nuance {

class NoiseSchedule;

struct LcmOptions {
    std::string teacher;            // a diffusers SD folder (models/nuance-emoji, a `--model ldm` run's model/)
    float w_min = 3.0f, w_max = 15.0f;  // ω range (CFG scale = 1 + ω)
    int num_ddim_steps = 50;        // N: the solver's timestep grid (diffusers' num_ddim_timesteps)
    float target_ema = 0.95f;       // target network decay (diffusers' --ema_decay)
    std::string loss = "huber";     // "huber" | "l2"
    float huber_c = 0.001f;
    int64_t w_embedding_dim = 256;  // the student's time_cond_proj_dim
    // The exported model's default guidance scale (`--cfg-scale`); 0: the teacher's default, clamped to 1 + [ω].
    // LCM-LoRA: the baked guidance scale g (ω = g - 1) instead; 0: the teacher's default.
    float default_guidance = 0.0f;
    // LCM-LoRA: distil into adapters on the teacher's UNet (TrainOptions::lora_rank, lora_alpha, lora_targets) instead
    // of a full guidance-conditioned student; target_ema and w_embedding_dim do not apply. The teacher's guidance is
    // one baked scale (default_guidance), or with lora_w_range each sample's ω drawn from [w_min, w_max] as diffusers'
    // train_lcm_distill_lora_sd_wds.py does (the LoRA has no guidance input: it learns the range's average).
    bool lora = false;
    bool lora_w_range = false;
};

// Every LCM-specific option in range and the common ones (validate_train_options); Error naming the flag.
void validate_lcm_options(const TrainOptions& o, const LcmOptions& l);

// Runs the distillation: `o` carries the common options (data, output, steps, batch, lr, warmup, seed, precision,
// checkpoints, resume); o.model must be "lcm". Returns the trainer's report.
TrainReport train_lcm(const TrainOptions& o, const LcmOptions& l, const TrainCallback& on_step = {});

// ---- the pieces, exposed for tests ----

// diffusers' scalings_for_boundary_conditions(t, sigma_data = 0.5, timestep_scaling): with s = t * scaling,
// c_skip = σ_d² / (s² + σ_d²), c_out = s / sqrt(s² + σ_d²); c_skip(0) = 1, c_out(0) = 0.
struct BoundaryScalings {
    double c_skip, c_out;
};
BoundaryScalings consistency_boundary(double timestep, double timestep_scaling = 10.0, double sigma_data = 0.5);

// diffusers' DDIMSolver: N timesteps t_i = round((i + 1) T / N) - 1 (i < N) and, per index, ᾱ at t_i and at the
// previous grid point (ᾱ[0] for i = 0). step(): z_prev = sqrt(ᾱ_prev) x0 + sqrt(1 - ᾱ_prev) ε.
class DdimSolver {
public:
    DdimSolver(const NoiseSchedule& schedule, int num_ddim_steps);
    int steps() const { return (int)timesteps_.size(); }
    int64_t timestep(int index) const;       // t_i
    int64_t prev_timestep(int index) const;  // t_i - T / N, clamped at 0 (the target's timestep)
    float alpha_cumprod_prev(int index) const;
    // x0, eps [B, C, h, w]; index: B grid indices.
    Tensor step(const Tensor& x0, const Tensor& eps, const std::vector<int>& index) const;

private:
    std::vector<int64_t> timesteps_;
    std::vector<float> ac_prev_;
    int64_t skip_ = 1;
};

}  // namespace nuance
