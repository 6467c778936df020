// Samplers: the k-diffusion contract (Crowson, k-diffusion/sampling.py; design.md §2).
//
//   Tensor sample_X(Denoiser& d, Tensor x, const Schedule& s, SamplerOptions& o);
//
// x enters at noise level s.sigmas[0] in VE scaling (x = x0 + sigma * eps; flow schedules: x = (1-s) x0 + s eps)
// and leaves at s.sigmas.back(). A sampler only ever calls d(x, sigma); all randomness comes from o.rng; progress
// and cancellation go through o. Pipelines never call sample_X directly: they call run_sampler() (registry.h).
//
// Matched against diffusers on tests/data/golden/schedulers: euler (both churn orders), euler_a, heun, lms, ddim,
// ddpm, plms, lcm, dpmpp_2m, dpmpp_2m_sde, dpmpp_2s, unipc; euler on a flow schedule is SD3/Flux sampling. The
// scheduler_sweep case (tools/make_sampler_sweep_golden.py) checks those plus dpm2 (KDPM2), dpm2_a (KDPM2
// ancestral) and tcd over step counts 1..150, every spacing, eps/v, zero SNR, Karras and eta (open divergences
// are listed in tests/samplers/test_sampler_sweep_golden.cpp).
// Without a reference entry (tested against hand-derived steps and by convergence on a Gaussian whose exact
// denoiser is known, tests/samplers/test_convergence.cpp): dpmpp_2s_a, dpmpp_sde (diffusers' DPMSolverSDE draws
// from a torchsde Brownian tree), dpmpp_3m_sde, dpmpp_2m_v2, ipndm (diffusers' IPNDMScheduler is another method). (No ipndm_v: the reference's variable-step coefficients, ComfyUI/zju-pi, are not the
// Adams-Bashforth ones, 3rd order even on equal steps; the exact variable-step 4th-order rule is `lms`.)
//
// Flow-matching schedules (x = (1-s) x0 + s eps) have the same probability-flow ODE as VE ones,
// dx/dsigma = (x - D) / sigma, so every deterministic sampler runs on them unchanged. Noise injection is VE-only:
// a sampler that would draw noise (eta > 0, s_churn > 0, SDE) on a flow schedule is an error (SamplerLoop::
// uses_noise), and samplers tied to a DDPM timestep set (ddim, ddpm, plms, lcm, tcd) refuse flow schedules
// (SamplerLoop::require_discrete).
//
// Adding a sampler:
//   1. Write src/samplers/sample_<name>.cpp with `Tensor sample_<name>(Denoiser&, Tensor, const Schedule&,
//      SamplerOptions&)`. Start it with `SamplerLoop loop("<name>", d, x, s, o);`, call loop.denoise(x, sigma)
//      for every model evaluation (it polls cancellation), loop.step_done(i, x, denoised) once per step (the
//      progress callback), and loop.noise(x) for every random draw (one torch.randn of x's shape, in the
//      reference's order). Declare it below.
//   2. Add one row to the table in registry.cpp: canonical name, A1111 display name, aliases, the function, the
//      ScheduleFamily whose timesteps match the reference implementation, and the schedule types it supports.
//   3. If the reference data has it, map its entry in src/eval/golden/schedulers_golden.cpp (run_entry) and add a
//      test line in tests/samplers/test_samplers_golden.cpp.
// Nothing in pipelines changes.
//
// Numerics: sigmas[0] can be huge (kZeroSnrSigma for zero-terminal-SNR DDIM). Write steps as weighted sums of x
// and the denoised estimate (euler_step below), not x + d*dt, so nothing cancels catastrophically.
#pragma once
#include <atomic>
#include <functional>
#include <limits>
#include <optional>
#include <string>

#include "core/rng.h"
#include "core/tensor.h"
#include "samplers/denoiser.h"
#include "samplers/schedule.h"

namespace nuance {

// Called once per sampler step (not per model call), after the step: step in [0, total), x the new sample
// (VE scaling), denoised the x0 estimate the step used.
using StepCallback = std::function<void(int step, int total, const Tensor& x, const Tensor& denoised)>;

// Where Karras churn (s_churn > 0) evaluates the model. k-diffusion (and A1111/ComfyUI) adds the churn noise first
// and evaluates D at the raised level sigma_hat; diffusers' EulerDiscreteScheduler gets the model output at x and
// sigma (the pipeline calls the model before step()), then adds the noise and steps from sigma_hat with that
// output as the ODE direction d = (x - D) / sigma. Same noise draws, different images.
enum class ChurnMode { KDiffusion, Diffusers };

struct SamplerOptions {
    Rng* rng = nullptr;           // required by stochastic samplers (eta > 0, s_churn > 0, SDE); noise only from it
    std::optional<double> eta;    // ancestral / SDE noise amount; unset = the sampler's default (see registry)
    double s_noise = 1.0;         // noise multiplier (k-diffusion)
    double s_churn = 0.0;         // Euler/Heun churn (Karras et al. 2022, alg. 2): gamma = min(s_churn/N, sqrt2-1)
    double s_tmin = 0.0;
    double s_tmax = std::numeric_limits<double>::infinity();
    ChurnMode churn_mode = ChurnMode::KDiffusion;  // Euler only
    bool lower_order_final = true;  // DPM-Solver: first-order last step when steps < 15 (diffusers default)
    int lms_order = 4;              // LMS: number of past derivatives
    StepCallback callback;          // progress; may set a cancel flag
    const std::atomic<bool>* cancel_flag = nullptr;  // polled before every model call and after every step
    std::function<bool()> should_cancel;             // same, as a callable
};

using SamplerFn = Tensor (*)(Denoiser& d, Tensor x, const Schedule& s, SamplerOptions& o);

// Per-run bookkeeping shared by every sampler: validates inputs, binds the schedule's timesteps to the denoiser,
// polls cancellation (throws Error{Cancelled}), reports progress and draws noise.
class SamplerLoop {
public:
    SamplerLoop(const char* sampler, Denoiser& d, const Tensor& x, const Schedule& s, SamplerOptions& o);
    int steps() const { return s_.steps(); }
    double sigma(int i) const { return s_.sigmas[(size_t)i]; }
    // Where step i lands: sigma(i + 1), or on the DDIM timestep set the sigma of timesteps[i] - T // N
    // (Schedule::step_sigmas). land(x, i) takes the landed sample, as the VP latent it is, to sigma(i + 1), where
    // the model is called next: x * sqrt(sigma(i+1)^2 + 1) / sqrt(target(i)^2 + 1) (x itself when they agree).
    double target(int i) const;
    Tensor land(const Tensor& x, int i) const;
    Tensor denoise(const Tensor& x, double sigma);                   // cancellation check, then d(x, sigma)
    void step_done(int i, const Tensor& x, const Tensor& denoised);  // callback, then cancellation check
    Tensor noise(const Tensor& like);                                // one randn of like's shape from o.rng
    void check_cancel() const;
    double eta_or(double fallback) const;  // o.eta if set (checked >= 0), else fallback
    // Call on entry with whether this run will draw noise: on a flow-matching schedule that is an error
    // (Unsupported) naming the sampler and the way out (eta 0 / a deterministic sampler).
    void uses_noise(bool draws, const char* what = "eta");
    // Samplers tied to a DDPM noise schedule / timestep set: a flow-matching schedule is an error (Unsupported).
    void require_discrete() const;
    // Churn (Karras et al. 2022, alg. 2), for samplers that offer s_churn: uses_churn() on entry checks s_churn and
    // the schedule; churn_gamma(i) = min(s_churn / N, sqrt2 - 1) when s_tmin <= sigma_i <= s_tmax, else 0;
    // churn(x, i) adds the noise that raises x from sigma_i to sigma_hat = sigma_i (1 + gamma) (one randn when
    // gamma > 0) and returns sigma_hat.
    void uses_churn();
    double churn_gamma(int i) const;
    double churn(Tensor& x, int i);
    const Schedule& schedule() const { return s_; }
    Denoiser& denoiser() { return d_; }

private:
    const char* name_;
    Denoiser& d_;
    const Schedule& s_;
    SamplerOptions& o_;
};

// Ancestral split of a step sigma_from -> sigma_to (k-diffusion get_ancestral_step): go deterministically down to
// sigma_down, then add fresh noise of std sigma_up, sigma_down^2 + sigma_up^2 = sigma_to^2.
struct AncestralStep {
    double sigma_down = 0;
    double sigma_up = 0;
};
AncestralStep get_ancestral_step(double sigma_from, double sigma_to, double eta);

// The Euler step from sigma to sigma_next along the ODE direction (x - denoised) / sigma, written as
// denoised + (sigma_next / sigma) * (x - denoised). Also the DDIM (eta = 0) update and the DPM-Solver++ update
// with the (extrapolated) denoised estimate.
Tensor euler_step(const Tensor& x, const Tensor& denoised, double sigma, double sigma_next);

// One ancestral (eta) step: Euler to sigma_down, plus sigma_up * noise drawn from loop (drawn whenever eta > 0,
// even when sigma_up is 0 on the last step, as diffusers' EulerAncestral/DDIM/DDPM do).
Tensor ancestral_euler_step(SamplerLoop& loop, const Tensor& x, const Tensor& denoised, double sigma,
                            double sigma_next, double eta, double s_noise);
// The whole loop of Euler ancestral, DDIM and DDPM: they differ only in their default eta and their timestep set
// (steps land on SamplerLoop::target(i)). draws(i) false: step i is deterministic (DDPM at timestep 0).
Tensor ancestral_euler_loop(SamplerLoop& loop, Tensor x, double eta, double s_noise,
                            const std::function<bool(int)>& draws = nullptr);

// ---- the samplers (one file each) ----
Tensor sample_euler(Denoiser& d, Tensor x, const Schedule& s, SamplerOptions& o);            // churn: s_churn
Tensor sample_euler_ancestral(Denoiser& d, Tensor x, const Schedule& s, SamplerOptions& o);  // eta default 1
Tensor sample_heun(Denoiser& d, Tensor x, const Schedule& s, SamplerOptions& o);             // 2 calls/step
Tensor sample_lms(Denoiser& d, Tensor x, const Schedule& s, SamplerOptions& o);              // lms_order
Tensor sample_ddim(Denoiser& d, Tensor x, const Schedule& s, SamplerOptions& o);             // eta default 0
Tensor sample_ddpm(Denoiser& d, Tensor x, const Schedule& s, SamplerOptions& o);             // eta default 1
Tensor sample_dpmpp_2m(Denoiser& d, Tensor x, const Schedule& s, SamplerOptions& o);
Tensor sample_dpmpp_2m_sde(Denoiser& d, Tensor x, const Schedule& s, SamplerOptions& o);     // eta default 1
Tensor sample_dpmpp_2s(Denoiser& d, Tensor x, const Schedule& s, SamplerOptions& o);         // singlestep pairs
Tensor sample_unipc(Denoiser& d, Tensor x, const Schedule& s, SamplerOptions& o);            // UniPC bh2, order 2
Tensor sample_plms(Denoiser& d, Tensor x, const Schedule& s, SamplerOptions& o);             // N+1 calls
Tensor sample_lcm(Denoiser& d, Tensor x, const Schedule& s, SamplerOptions& o);              // noise per step
Tensor sample_dpm2(Denoiser& d, Tensor x, const Schedule& s, SamplerOptions& o);             // 2 calls/step
Tensor sample_dpm2_ancestral(Denoiser& d, Tensor x, const Schedule& s, SamplerOptions& o);   // eta default 1
Tensor sample_dpmpp_2s_ancestral(Denoiser& d, Tensor x, const Schedule& s, SamplerOptions& o);  // eta default 1
Tensor sample_dpmpp_sde(Denoiser& d, Tensor x, const Schedule& s, SamplerOptions& o);        // eta default 1
Tensor sample_dpmpp_3m_sde(Denoiser& d, Tensor x, const Schedule& s, SamplerOptions& o);     // eta default 1
Tensor sample_dpmpp_2m_v2(Denoiser& d, Tensor x, const Schedule& s, SamplerOptions& o);      // sd.cpp dpm++2mv2
Tensor sample_ipndm(Denoiser& d, Tensor x, const Schedule& s, SamplerOptions& o);            // order 4, fixed
Tensor sample_tcd(Denoiser& d, Tensor x, const Schedule& s, SamplerOptions& o);              // eta (gamma) 0.3

}  // namespace nuance
