// Noise schedules: the training schedule of a discrete-time diffusion model (betas -> alphas_cumprod -> sigmas) and
// the sampling Schedule (sigmas + model timesteps) built from it for a number of steps, exactly as diffusers builds
// them (diffusers 0.31: EulerDiscrete / DPMSolverMultistep / DDIM set_timesteps, FlowMatchEulerDiscrete).
//
// Conventions (k-diffusion, Karras et al. 2022):
//   * sigma is the VE noise level: x = x0 + sigma * eps. A VP model sample is x_vp = x / sqrt(sigma^2 + 1) and
//     sigma = sqrt((1 - alphas_cumprod[t]) / alphas_cumprod[t]).
//   * Flow-matching schedules (SD3, Flux) use x = (1 - sigma) * x0 + sigma * eps with sigma in [0, 1].
//   * A Schedule holds N+1 sigmas (descending; the last is usually 0) and the N timesteps the model is called with
//     at sigmas[0..N-1]. Samplers read only sigmas; the Denoiser maps each sigma back to its paired timestep.
//
// Float precision copies the reference: torch builds betas and alphas_cumprod in float32 (cumprod accumulates in
// double), the sigma table is float32, timestep/sigma arithmetic is float64 numpy, and the final tables are cast to
// float32. Reproducing this bit for bit is what makes the golden timesteps/sigmas match.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace nuance {

enum class BetaSchedule { Linear, ScaledLinear };

struct NoiseScheduleConfig {
    int num_train_timesteps = 1000;
    double beta_start = 0.00085;  // SD 1.x / 2.x / XL
    double beta_end = 0.012;
    BetaSchedule beta_schedule = BetaSchedule::ScaledLinear;
    bool rescale_zero_snr = false;  // Lin et al. 2023, "Common Diffusion Noise Schedules and Sample Steps are Flawed"
};

// Sigma used where alphas_cumprod is exactly 0 (zero terminal SNR; sigma would be +inf). Large enough that the
// denoiser's c_skip*x term (~ x_vp / sigma) is below float32 resolution; samplers must therefore combine x and the
// denoised estimate as weighted sums (see sampler.h), never as x + d*dt with a huge sigma.
constexpr double kZeroSnrSigma = 1e8;

// The training noise schedule of a discrete-time (DDPM-family) model.
class NoiseSchedule {
public:
    NoiseSchedule() : NoiseSchedule(NoiseScheduleConfig{}) {}
    explicit NoiseSchedule(const NoiseScheduleConfig& cfg);

    const NoiseScheduleConfig& config() const { return cfg_; }
    int num_train_timesteps() const { return cfg_.num_train_timesteps; }
    // All float32 values, exactly as torch computes them.
    const std::vector<float>& betas() const { return betas_; }
    const std::vector<float>& alphas_cumprod() const { return alphas_cumprod_; }  // last is 0 with zero SNR
    // sqrt((1 - a) / a) per training timestep (increasing with t). With zero SNR the terminal entry uses
    // a = 2^-24 as diffusers' sigma-based schedulers do (EulerDiscrete, DPMSolverMultistep, ...).
    const std::vector<float>& sigmas() const { return sigmas_; }
    const std::vector<float>& log_sigmas() const { return log_sigmas_; }
    double sigma_min() const { return sigmas_.front(); }
    double sigma_max() const { return sigmas_.back(); }

    // Sigma at a (fractional) timestep: np.interp over the table, linear in sigma (diffusers EulerDiscrete).
    double t_to_sigma(double t) const;
    // Timestep of a sigma: interpolation in log-sigma between the two neighbouring table entries, clamped to
    // [0, T-1] (diffusers _sigma_to_t == k-diffusion DiscreteSchedule.sigma_to_t).
    double sigma_to_t(double sigma) const;
    // sqrt((1 - alphas_cumprod[t]) / alphas_cumprod[t]) in float64 at an integer timestep; kZeroSnrSigma where
    // alphas_cumprod is 0. Used by the DDIM timestep set.
    double sigma_at(int t) const;
    // Sigma at a (fractional) timestep, interpolated linearly in log sigma (k-diffusion DiscreteSchedule.t_to_sigma,
    // ComfyUI ModelSamplingDiscrete.sigma); clamped to [0, T-1]. The inverse of sigma_to_t.
    double t_to_sigma_log(double t) const;

private:
    NoiseScheduleConfig cfg_;
    std::vector<float> betas_, alphas_cumprod_, sigmas_, log_sigmas_;
};

// How sigmas are spread between sigma_max and sigma_min. User-facing "schedule" names (A1111 "Schedule type",
// ComfyUI "scheduler", sd.cpp "--schedule").
enum class ScheduleType {
    Normal,       // "normal" / "discrete" / "default": the model's own timesteps (diffusers' default)
    Karras,       // "karras": rho = 7 between the schedule's sigma_min and sigma_max (Karras et al. 2022, eq. 5)
    Exponential,  // "exponential": uniform in log sigma between the same ends
    SgmUniform,   // "sgm_uniform": N timesteps uniform on [T-1, 0) (ComfyUI), sigma interpolated in log sigma
    Simple,       // "simple": every (T/N)-th sigma of the training table, from the top (ComfyUI)
    DdimUniform,  // "ddim_uniform": table sigmas at t = 1, 1 + T//N, ... (ComfyUI/A1111 "DDIM"; can give > N steps)
    Beta,         // "beta": timesteps at the Beta(0.6, 0.6) quantiles (Lee et al. 2024; ComfyUI), duplicates dropped
    AlignYourSteps,      // "align_your_steps" / "ays": NVIDIA's SD1.5 10-step table (Sabour et al. 2024)
    AlignYourStepsSdxl,  // "ays_sdxl": the SDXL table. Both are log-linearly interpolated to other step counts.
    Custom,       // "custom": ScheduleConfig::custom_sigmas verbatim (the CLI's --sigmas)
};
ScheduleType parse_schedule_type(const std::string& name);  // case-insensitive; unknown -> Error listing the valid
const char* schedule_type_name(ScheduleType t);              // "normal", "karras", "sgm_uniform", ...
const char* schedule_type_display_name(ScheduleType t);      // A1111 "Schedule type": "Normal", "SGM Uniform", ...
std::vector<std::string> list_schedule_types();              // canonical names, in enum order
std::string schedule_type_aliases(ScheduleType t);           // other accepted spellings, "" if none ("ays, ...")

// Timestep spacing (Lin et al. 2023, table 2) as diffusers' `timestep_spacing` config.
enum class Spacing { Linspace, Leading, Trailing };
Spacing parse_spacing(const std::string& name);  // "linspace" | "leading" | "trailing"
const char* spacing_name(Spacing s);

// Whose set_timesteps() the discretisation copies. Each sampler family has a reference scheduler in diffusers, and
// the families differ in small but visible ways (fractional vs rounded timesteps, N vs N+1 grid, final sigma).
enum class ScheduleFamily {
    EulerDiscrete,  // Euler, Euler a, Heun, LMS: fractional timesteps, sigmas by np.interp; final sigma 0
    DpmSolver,      // DPM-Solver(++) multistep, UniPC: integer timesteps from an N+1 grid; final sigma 0
    Ddim,           // DDIM, DDPM, PLMS: integer timesteps; final alpha = alphas_cumprod[0] (or 1 with final_alpha_one)
    Lcm,            // LCM: N timesteps picked from the distillation grid of lcm_original_steps; final sigma 0
    Tcd,            // TCD: the LCM timesteps, but the last step lands on alphas_cumprod[0] (TCDScheduler)
};
const char* schedule_family_name(ScheduleFamily f);

struct ScheduleConfig {
    int steps = 20;
    ScheduleType type = ScheduleType::Normal;
    ScheduleFamily family = ScheduleFamily::EulerDiscrete;
    Spacing spacing = Spacing::Linspace;
    int steps_offset = 0;          // added to 'leading' timesteps (SD 1.x/XL configs use 1)
    bool final_alpha_one = false;  // DDIM/PNDM set_alpha_to_one; DDPM always steps to alpha 1
    int lcm_original_steps = 50;   // Lcm/Tcd: the teacher's step count (original_inference_steps)
    // EulerDiscrete family, schedule types other than normal: round the model timesteps of the typed sigmas
    // (diffusers KDPM2 / KDPM2 ancestral round them; Euler, Heun and LMS keep them fractional).
    bool round_typed_timesteps = false;
    std::vector<double> custom_sigmas;  // Custom: N+1 strictly decreasing sigmas >= 0 (see parse_sigma_list); steps
                                        // is then ignored (N = custom_sigmas.size() - 1)
    double beta_alpha = 0.6, beta_beta = 0.6;  // Beta schedule parameters (ComfyUI defaults)
};

// A sampling schedule: what a sampler walks through.
struct Schedule {
    std::vector<double> sigmas;     // N+1, descending; sigmas[N] is 0 except for the DDIM set (sigma of alpha[0])
    std::vector<double> timesteps;  // N: the model's timestep at sigmas[i] (diffusers' scheduler.timesteps)
    // The DDIM timestep set (diffusers DDIM, DDPM, PNDM): step i goes from timesteps[i] to timesteps[i] - stride,
    // stride = T // N, which is not the next listed timestep when N does not divide T or the spacing is not
    // 'leading' (e.g. trailing, 12 steps: 999 -> 916 -> 833 -> 750, but the model is next called at 749). The sample
    // that step lands on (step_sigmas[i], the sigma of timesteps[i] - stride, or the final sigma when that is < 0)
    // is then taken as it stands, as a VP latent, to the next listed timestep: samplers call SamplerLoop::target(i)
    // and SamplerLoop::land(). Empty (every other family): step i lands on sigmas[i+1]. sigmas[N] equals the last
    // step sigma.
    std::vector<double> step_sigmas;
    int timestep_stride = 0;        // T // N for the DDIM set, else 0
    double init_noise_sigma = 1.0;  // txt2img starts from x = randn * init_noise_sigma (VE scaling)
    bool flow = false;              // flow-matching sigmas in [0, 1] (x = (1-s) x0 + s eps)
    int steps() const { return (int)timesteps.size(); }
};

Schedule make_schedule(const NoiseSchedule& ns, const ScheduleConfig& cfg);

// FlowMatchEulerDiscrete (SD3: static shift; Flux: dynamic shift mu, optional custom sigmas).
struct FlowScheduleConfig {
    int steps = 28;
    double shift = 3.0;                 // SD3 3.0; ignored when dynamic
    bool dynamic = false;               // Flux: time_shift(mu) = e^mu / (e^mu + (1/s - 1))
    double mu = 0.0;                    // see flux_mu()
    std::vector<double> custom_sigmas;  // Flux pipelines pass linspace(1, 1/N, N); empty -> the scheduler's own
    int num_train_timesteps = 1000;
};
Schedule make_flow_schedule(const FlowScheduleConfig& cfg);
// diffusers calculate_shift(): mu linear in the packed image sequence length.
double flux_mu(int64_t image_seq_len, int64_t base_seq_len = 256, int64_t max_seq_len = 4096,
               double base_shift = 0.5, double max_shift = 1.15);

// Building blocks (float64; n values, no trailing 0).
// np.linspace(start, stop, num): i*step + start, the last value set to stop exactly.
std::vector<double> np_linspace(double start, double stop, int num);
std::vector<double> karras_sigmas(int n, double sigma_min, double sigma_max, double rho = 7.0);
std::vector<double> exponential_sigmas(int n, double sigma_min, double sigma_max);
// The ComfyUI schedulers on a training table (sigma_schedules.cpp); no trailing 0. sgm_uniform, simple and
// align-your-steps give n values; ddim_uniform gives ceil((T-1) / (T//n)) values and beta at most n (repeated
// timesteps are dropped), exactly as ComfyUI / A1111 do.
std::vector<double> sgm_uniform_sigmas(const NoiseSchedule& ns, int n);
std::vector<double> simple_sigmas(const NoiseSchedule& ns, int n);
std::vector<double> ddim_uniform_sigmas(const NoiseSchedule& ns, int n);
std::vector<double> beta_sigmas(const NoiseSchedule& ns, int n, double alpha = 0.6, double beta = 0.6);
std::vector<double> align_your_steps_sigmas(int n, bool sdxl);
// np.interp in log space of a decreasing table to n points (ComfyUI/NVIDIA loglinear_interp).
std::vector<double> loglinear_interp(const std::vector<double>& decreasing, int n);
// Regularised incomplete beta I_x(a, b) and its inverse (scipy.stats.beta.cdf / .ppf), to ~1e-13.
double beta_cdf(double x, double a, double b);
double beta_ppf(double p, double a, double b);

// "14.6, 7.0, 3.1, 0" -> sigmas (commas and/or spaces; optional [ ]). Errors (InvalidArgument) name the offending
// entry: non-numeric, non-finite, negative, fewer than 2 values, not strictly decreasing.
std::vector<double> parse_sigma_list(const std::string& text);
void validate_custom_sigmas(const std::vector<double>& sigmas);

// img2img / hires: the tail of a schedule starting at step `start` (0 <= start < steps).
Schedule slice_schedule(const Schedule& s, int start);

// Checks the invariants every sampler relies on (sizes, finite, non-negative, non-increasing); throws
// InvalidArgument naming `what` and the offending index.
void validate_schedule(const Schedule& s, const char* what);

}  // namespace nuance
