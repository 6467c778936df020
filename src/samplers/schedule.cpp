// Schedules, bit-compatible with torch/numpy/diffusers 0.31 (see schedule.h).
//
// Expression contraction (a*b+c -> fma) is switched off for this file: the reference (numpy, torch's scalar code)
// rounds products and sums separately, and where torch does contract (its AVX2 linspace kernel) we call std::fma
// explicitly. With contraction left to the compiler, -mfma builds would differ in the last bit.
#include "samplers/schedule.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "core/error.h"

#pragma GCC optimize("fp-contract=off")

namespace nuance {

namespace {

// torch.linspace(start, end, steps, dtype=float32) on CPU as torch 1.13+ computes it with its AVX2 kernel: the
// first half counts up from start, the second half down from end, 8-lane vectors built as base + j*step (the
// compiler contracts these into FMAs), the 1000 % 16 tail element-wise. Verified bit-exact against the golden
// alphas_cumprod (the AVX-512 build, 16 lanes, gives the same values for these sizes).
std::vector<float> torch_linspace_f32(double start_d, double end_d, int64_t steps) {
    std::vector<float> out((size_t)steps);
    if (steps == 1) {
        out[0] = (float)start_d;
        return out;
    }
    const float start = (float)start_d, end = (float)end_d;
    const float step = (end - start) / (float)(steps - 1);
    const int64_t halfway = steps / 2;
    auto base_at = [&](int64_t idx) -> float {
        return idx < halfway ? std::fma(step, (float)idx, start) : std::fma(-step, (float)(steps - idx - 1), end);
    };
    constexpr int64_t kLanes = 8;
    int64_t i = 0;
    for (; i + 2 * kLanes <= steps; i += 2 * kLanes) {
        for (int64_t v = i; v < i + 2 * kLanes; v += kLanes) {
            const float base = base_at(v);
            out[(size_t)v] = base;
            for (int64_t j = 1; j < kLanes; ++j) out[(size_t)(v + j)] = std::fma((float)j, step, base);
        }
    }
    for (; i < steps; ++i) out[(size_t)i] = base_at(i);
    return out;
}

// torch.cumprod on CPU accumulates float32 inputs in double and rounds each output to float32.
std::vector<float> torch_cumprod_f32(const std::vector<float>& v) {
    std::vector<float> out(v.size());
    double acc = 1.0;
    for (size_t i = 0; i < v.size(); ++i) {
        acc *= (double)v[i];
        out[i] = (float)acc;
    }
    return out;
}

// diffusers rescale_zero_terminal_snr(betas), float32 torch ops.
std::vector<float> rescale_zero_terminal_snr(const std::vector<float>& betas) {
    const size_t n = betas.size();
    std::vector<float> alphas(n);
    for (size_t i = 0; i < n; ++i) alphas[i] = 1.0f - betas[i];
    std::vector<float> s = torch_cumprod_f32(alphas);
    for (float& x : s) x = std::sqrt(x);
    const float s0 = s.front(), s_t = s.back();
    for (float& x : s) x -= s_t;
    const float k = s0 / (s0 - s_t);
    for (float& x : s) x *= k;
    std::vector<float> bar(n);
    for (size_t i = 0; i < n; ++i) bar[i] = s[i] * s[i];
    std::vector<float> out(n);
    out[0] = 1.0f - bar[0];
    for (size_t i = 1; i < n; ++i) out[i] = 1.0f - bar[i] / bar[i - 1];
    return out;
}


// np.round / ndarray.round(): round half to even.
double np_round(double x) { return std::nearbyint(x); }

// np.arange(start, stop, step)[:n] for float64 (n values; numpy fills start + i*(buf[1]-buf[0])).
std::vector<double> np_arange(double start, double step, int n) {
    std::vector<double> y((size_t)n);
    const double delta = (start + step) - start;
    for (int i = 0; i < n; ++i) y[(size_t)i] = i == 0 ? start : start + (double)i * delta;
    return y;
}

void check_steps(int steps, int num_train, const char* what) {
    NUANCE_CHECK(steps >= 1, what, ": number of steps must be >= 1, got ", steps);
    NUANCE_CHECK(steps <= num_train, what, ": number of steps (", steps, ") exceeds the model's ", num_train,
                 " training timesteps");
}

std::vector<double> f32_round(std::vector<double> v) {
    for (double& x : v) x = (double)(float)x;
    return v;
}

}  // namespace

std::vector<double> np_linspace(double start, double stop, int num) {
    std::vector<double> y((size_t)num);
    if (num == 1) {
        y[0] = start;
        return y;
    }
    const double step = (stop - start) / (double)(num - 1);
    for (int i = 0; i < num; ++i) y[(size_t)i] = (double)i * step + start;
    y[(size_t)num - 1] = stop;
    return y;
}

// ---------------------------------------------------------------------------------------------------------------
// NoiseSchedule

NoiseSchedule::NoiseSchedule(const NoiseScheduleConfig& cfg) : cfg_(cfg) {
    const int n = cfg.num_train_timesteps;
    NUANCE_CHECK(n >= 2 && n <= 100000, "noise schedule: num_train_timesteps must be in [2, 100000], got ", n);
    NUANCE_CHECK(std::isfinite(cfg.beta_start) && std::isfinite(cfg.beta_end) && cfg.beta_start > 0 &&
                     cfg.beta_end < 1 && cfg.beta_start <= cfg.beta_end,
                 "noise schedule: need 0 < beta_start <= beta_end < 1, got beta_start=", cfg.beta_start,
                 " beta_end=", cfg.beta_end);
    if (cfg.beta_schedule == BetaSchedule::Linear) {
        betas_ = torch_linspace_f32(cfg.beta_start, cfg.beta_end, n);
    } else {
        betas_ = torch_linspace_f32(std::sqrt(cfg.beta_start), std::sqrt(cfg.beta_end), n);
        for (float& b : betas_) b = b * b;
    }
    if (cfg.rescale_zero_snr) betas_ = rescale_zero_terminal_snr(betas_);
    std::vector<float> alphas(betas_.size());
    for (size_t i = 0; i < betas_.size(); ++i) alphas[i] = 1.0f - betas_[i];
    alphas_cumprod_ = torch_cumprod_f32(alphas);

    sigmas_.resize(alphas_cumprod_.size());
    log_sigmas_.resize(alphas_cumprod_.size());
    for (size_t i = 0; i < alphas_cumprod_.size(); ++i) {
        float a = alphas_cumprod_[i];
        if (cfg.rescale_zero_snr && i + 1 == alphas_cumprod_.size()) a = 1.0f / 16777216.0f;  // 2^-24 (diffusers)
        NUANCE_CHECK(a > 0.0f && a <= 1.0f, "noise schedule: alphas_cumprod[", i, "] = ", a, " is not in (0, 1]");
        sigmas_[i] = std::sqrt((1.0f - a) / a);
        log_sigmas_[i] = (float)std::log((double)sigmas_[i]);
    }
    NUANCE_CHECK(sigmas_.front() > 0.0f, "noise schedule: sigma at t=0 is 0 (beta_start too small)");
}

double NoiseSchedule::t_to_sigma(double t) const {
    // np.interp(t, arange(T), sigmas): left/right clamp, exact hits return the table value.
    const int64_t n = (int64_t)sigmas_.size();
    if (std::isnan(t)) return t;
    if (t <= 0.0) return sigmas_.front();
    if (t >= (double)(n - 1)) return sigmas_.back();
    const int64_t j = (int64_t)std::floor(t);
    if ((double)j == t) return sigmas_[(size_t)j];
    const double y0 = sigmas_[(size_t)j], y1 = sigmas_[(size_t)j + 1];
    const double slope = (y1 - y0) / 1.0;
    return slope * (t - (double)j) + y0;
}

double NoiseSchedule::sigma_to_t(double sigma) const {
    const int64_t n = (int64_t)log_sigmas_.size();
    const double log_sigma = std::log(std::max(sigma, 1e-10));
    // low_idx: the last table index whose log sigma is <= log_sigma (0 if none), at most n-2.
    const auto it = std::upper_bound(log_sigmas_.begin(), log_sigmas_.end(), log_sigma,
                                     [](double v, float e) { return v < (double)e; });
    int64_t low = (int64_t)(it - log_sigmas_.begin()) - 1;
    low = std::clamp<int64_t>(low, 0, n - 2);
    const float lo = log_sigmas_[(size_t)low], hi = log_sigmas_[(size_t)low + 1];
    double w = ((double)lo - log_sigma) / (double)(float)(lo - hi);
    w = std::clamp(w, 0.0, 1.0);
    return (1.0 - w) * (double)low + w * (double)(low + 1);
}

double NoiseSchedule::sigma_at(int t) const {
    NUANCE_CHECK(t >= 0 && t < (int)alphas_cumprod_.size(), "noise schedule: timestep ", t, " outside [0, ",
                 alphas_cumprod_.size(), ")");
    const double a = alphas_cumprod_[(size_t)t];
    if (a <= 0.0) return kZeroSnrSigma;
    return std::sqrt((1.0 - a) / a);
}

// ---------------------------------------------------------------------------------------------------------------
// Building blocks

std::vector<double> karras_sigmas(int n, double sigma_min, double sigma_max, double rho) {
    NUANCE_CHECK(n >= 1, "karras sigmas: n must be >= 1, got ", n);
    NUANCE_CHECK(sigma_min > 0 && sigma_max >= sigma_min && std::isfinite(sigma_max) && rho > 0,
                 "karras sigmas: need 0 < sigma_min <= sigma_max and rho > 0, got sigma_min=", sigma_min,
                 " sigma_max=", sigma_max, " rho=", rho);
    const std::vector<double> ramp = np_linspace(0.0, 1.0, n);
    const double min_inv_rho = std::pow(sigma_min, 1.0 / rho);
    const double max_inv_rho = std::pow(sigma_max, 1.0 / rho);
    std::vector<double> out((size_t)n);
    for (int i = 0; i < n; ++i)
        out[(size_t)i] = std::pow(max_inv_rho + ramp[(size_t)i] * (min_inv_rho - max_inv_rho), rho);
    return out;
}

std::vector<double> exponential_sigmas(int n, double sigma_min, double sigma_max) {
    NUANCE_CHECK(n >= 1, "exponential sigmas: n must be >= 1, got ", n);
    NUANCE_CHECK(sigma_min > 0 && sigma_max >= sigma_min && std::isfinite(sigma_max),
                 "exponential sigmas: need 0 < sigma_min <= sigma_max, got sigma_min=", sigma_min,
                 " sigma_max=", sigma_max);
    std::vector<double> out = np_linspace(std::log(sigma_max), std::log(sigma_min), n);
    for (double& x : out) x = std::exp(x);
    return out;
}

// ---------------------------------------------------------------------------------------------------------------
// Schedules

namespace {

// Spacing of the model timesteps, float64, before any cast. `grid` is the number of points taken from the training
// range: N for EulerDiscrete/DDIM, N+1 (last dropped) for DPM-Solver.
std::vector<double> spaced_timesteps(const ScheduleConfig& c, int num_train, bool plus_one, bool round_linspace) {
    const int n = c.steps;
    const int g = plus_one ? n + 1 : n;
    std::vector<double> t;
    switch (c.spacing) {
        case Spacing::Linspace: {
            std::vector<double> v = np_linspace(0.0, (double)(num_train - 1), g);
            if (round_linspace)
                for (double& x : v) x = np_round(x);
            t.assign(v.rbegin(), v.rend());
            break;
        }
        case Spacing::Leading: {
            const int ratio = num_train / g;
            for (int i = g - 1; i >= 0; --i) t.push_back((double)i * ratio + c.steps_offset);
            break;
        }
        case Spacing::Trailing: {
            const double ratio = (double)num_train / n;
            for (double x : np_arange((double)num_train, -ratio, n)) t.push_back(np_round(x) - 1.0);
            return t;  // always N values
        }
    }
    if (plus_one) t.resize((size_t)n);
    return t;
}

// Sigmas of a non-Normal schedule type (no trailing 0; `final_sigma` receives the sigma after the last step: 0, or
// the last entry of a custom list). Karras/exponential span [smin, smax], which depends on the family.
std::vector<double> typed_sigmas(const NoiseSchedule& ns, const ScheduleConfig& c, double smin, double smax,
                                 double& final_sigma) {
    final_sigma = 0.0;
    switch (c.type) {
        case ScheduleType::Normal: break;
        case ScheduleType::Karras: return karras_sigmas(c.steps, smin, smax);
        case ScheduleType::Exponential: return exponential_sigmas(c.steps, smin, smax);
        case ScheduleType::SgmUniform: return sgm_uniform_sigmas(ns, c.steps);
        case ScheduleType::Simple: return simple_sigmas(ns, c.steps);
        case ScheduleType::DdimUniform: return ddim_uniform_sigmas(ns, c.steps);
        case ScheduleType::Beta: return beta_sigmas(ns, c.steps, c.beta_alpha, c.beta_beta);
        case ScheduleType::AlignYourSteps: return align_your_steps_sigmas(c.steps, false);
        case ScheduleType::AlignYourStepsSdxl: return align_your_steps_sigmas(c.steps, true);
        case ScheduleType::Custom: {
            validate_custom_sigmas(c.custom_sigmas);
            std::vector<double> s = c.custom_sigmas;
            final_sigma = s.back();
            s.pop_back();
            return s;
        }
    }
    fail(ErrorCode::Internal, "typed_sigmas: schedule type 'normal' has no closed form");
}

// The non-Normal schedule of the integer-timestep families (DPM-Solver, DDIM): typed sigmas between the training
// table's ends, timesteps rounded (diffusers DPMSolverMultistep use_karras_sigmas / use_exponential_sigmas).
Schedule rounded_typed_schedule(const NoiseSchedule& ns, const ScheduleConfig& c) {
    double final_sigma = 0;
    const std::vector<double> sig = typed_sigmas(ns, c, ns.sigma_min(), ns.sigma_max(), final_sigma);
    Schedule s;
    for (double x : sig) s.timesteps.push_back(np_round(ns.sigma_to_t(x)));
    s.sigmas = sig;
    s.sigmas.push_back(final_sigma);
    s.sigmas = f32_round(std::move(s.sigmas));
    s.init_noise_sigma = std::sqrt(s.sigmas[0] * s.sigmas[0] + 1.0);  // the reference starts from x_vp = noise
    return s;
}

Schedule euler_discrete_schedule(const NoiseSchedule& ns, const ScheduleConfig& c) {
    const int T = ns.num_train_timesteps();
    std::vector<double> ts = spaced_timesteps(c, T, false, false);
    for (double& x : ts) x = (double)(float)x;  // the reference keeps these as float32
    std::vector<double> sig(ts.size());
    for (size_t i = 0; i < ts.size(); ++i) sig[i] = ns.t_to_sigma(ts[i]);
    double final_sigma = 0.0;
    if (c.type != ScheduleType::Normal) {
        sig = typed_sigmas(ns, c, sig.back(), sig.front(), final_sigma);
        ts.resize(sig.size());
        for (size_t i = 0; i < sig.size(); ++i) {
            const double t = ns.sigma_to_t(sig[i]);
            ts[i] = (double)(float)(c.round_typed_timesteps ? np_round(t) : t);
        }
    }
    Schedule s;
    s.sigmas = sig;
    s.sigmas.push_back(final_sigma);
    s.sigmas = f32_round(std::move(s.sigmas));
    s.timesteps = ts;
    // init_noise_sigma: sigma_max for linspace/trailing, sqrt(sigma_max^2 + 1) for leading (float32 math).
    const float smax = (float)*std::max_element(s.sigmas.begin(), s.sigmas.end());
    s.init_noise_sigma = c.spacing == Spacing::Leading ? (double)std::sqrt(smax * smax + 1.0f) : (double)smax;
    return s;
}

Schedule dpm_solver_schedule(const NoiseSchedule& ns, const ScheduleConfig& c) {
    const int T = ns.num_train_timesteps();
    // Other types: the ends come from the whole training table, whatever the spacing.
    if (c.type != ScheduleType::Normal) return rounded_typed_schedule(ns, c);
    std::vector<double> ts = spaced_timesteps(c, T, true, true);
    std::vector<double> sig;
    for (double t : ts) sig.push_back(ns.t_to_sigma(t));
    Schedule s;
    s.sigmas = sig;
    s.sigmas.push_back(0.0);
    s.sigmas = f32_round(std::move(s.sigmas));
    s.timesteps = ts;
    s.init_noise_sigma = std::sqrt(s.sigmas[0] * s.sigmas[0] + 1.0);  // the reference starts from x_vp = noise
    return s;
}

// The DDIM timestep set; other schedule types give sigma-based schedules ending at 0 (k-diffusion/ComfyUI "ddim").
Schedule ddim_schedule(const NoiseSchedule& ns, const ScheduleConfig& c) {
    if (c.type != ScheduleType::Normal) return rounded_typed_schedule(ns, c);
    const int T = ns.num_train_timesteps();
    std::vector<double> ts = spaced_timesteps(c, T, false, true);
    Schedule s;
    for (double t : ts) {
        NUANCE_CHECK(t >= 0 && t < T, "DDIM schedule: timestep ", t, " outside [0, ", T, ") (steps=", c.steps,
                     ", spacing=", spacing_name(c.spacing), ", steps_offset=", c.steps_offset, ")");
        s.sigmas.push_back(ns.sigma_at((int)t));
    }
    // diffusers steps from t to t - T // N (DDIMScheduler.step, DDPMScheduler.previous_timestep, PNDMScheduler),
    // whatever the next listed timestep is; below 0 it lands on alphas_cumprod[0] (set_alpha_to_one=False) or on
    // alpha 1 (sigma 0; DDPM always).
    s.timestep_stride = T / c.steps;
    const double final_sigma = c.final_alpha_one ? 0.0 : ns.sigma_at(0);
    for (double t : ts) {
        const int prev = (int)t - s.timestep_stride;
        s.step_sigmas.push_back(prev >= 0 ? ns.sigma_at(prev) : final_sigma);
    }
    s.sigmas.push_back(s.step_sigmas.back());
    s.timesteps = ts;
    s.init_noise_sigma = std::sqrt(s.sigmas[0] * s.sigmas[0] + 1.0);
    return s;
}

// LCMScheduler.set_timesteps: the distillation grid t_k = k * (T / orig) - 1, k = 1..orig, newest first, sampled at
// floor(linspace(0, orig, N, endpoint=False)). TCDScheduler uses the same set; its last step goes to timestep 0
// (sigma of alphas_cumprod[0]) instead of to a clean sample.
Schedule lcm_schedule(const NoiseSchedule& ns, const ScheduleConfig& c, bool tcd) {
    NUANCE_CHECK_CODE(c.type == ScheduleType::Normal, Unsupported, "schedule '", schedule_type_name(c.type),
                      "' is not available for the ", tcd ? "TCD" : "LCM", " timestep set (use 'normal')");
    const int T = ns.num_train_timesteps();
    const int orig = c.lcm_original_steps;
    NUANCE_CHECK(orig >= 1 && orig <= T, "LCM schedule: original steps must be in [1, ", T, "], got ", orig);
    NUANCE_CHECK(c.steps <= orig, "LCM schedule: ", c.steps, " steps exceed the ", orig,
                 " original (distillation) steps");
    const int k = T / orig;
    Schedule s;
    for (int i = 0; i < c.steps; ++i) {
        const int idx = (int)std::floor((double)i * ((double)orig / c.steps));
        const int t = (orig - idx) * k - 1;
        s.timesteps.push_back(t);
        s.sigmas.push_back(ns.sigma_at(t));
    }
    s.sigmas.push_back(tcd ? ns.sigma_at(0) : 0.0);
    s.init_noise_sigma = std::sqrt(s.sigmas[0] * s.sigmas[0] + 1.0);
    return s;
}

}  // namespace

Schedule make_schedule(const NoiseSchedule& ns, const ScheduleConfig& cfg) {
    ScheduleConfig c = cfg;
    if (c.type == ScheduleType::Custom) {
        validate_custom_sigmas(c.custom_sigmas);
        c.steps = (int)c.custom_sigmas.size() - 1;
    }
    check_steps(c.steps, ns.num_train_timesteps(), "schedule");
    NUANCE_CHECK(c.steps_offset >= 0 && c.steps_offset < ns.num_train_timesteps(),
                 "schedule: steps_offset must be in [0, ", ns.num_train_timesteps(), "), got ", c.steps_offset);
    Schedule s;
    switch (c.family) {
        case ScheduleFamily::EulerDiscrete: s = euler_discrete_schedule(ns, c); break;
        case ScheduleFamily::DpmSolver: s = dpm_solver_schedule(ns, c); break;
        case ScheduleFamily::Ddim: s = ddim_schedule(ns, c); break;
        case ScheduleFamily::Lcm: s = lcm_schedule(ns, c, false); break;
        case ScheduleFamily::Tcd: s = lcm_schedule(ns, c, true); break;
    }
    validate_schedule(s, "schedule");
    return s;
}

Schedule make_flow_schedule(const FlowScheduleConfig& c) {
    const int T = c.num_train_timesteps;
    NUANCE_CHECK(T >= 2 && T <= 100000, "flow schedule: num_train_timesteps must be in [2, 100000], got ", T);
    NUANCE_CHECK(c.steps >= 1 && c.steps <= 10000, "flow schedule: number of steps must be in [1, 10000], got ",
                 c.steps);
    NUANCE_CHECK(c.dynamic || (std::isfinite(c.shift) && c.shift > 0), "flow schedule: shift must be > 0, got ",
                 c.shift);
    NUANCE_CHECK(!c.dynamic || std::isfinite(c.mu), "flow schedule: mu must be finite, got ", c.mu);
    std::vector<double> s;
    if (!c.custom_sigmas.empty()) {
        NUANCE_CHECK((int)c.custom_sigmas.size() == c.steps, "flow schedule: ", c.custom_sigmas.size(),
                     " custom sigmas given for ", c.steps, " steps");
        for (double x : c.custom_sigmas)
            NUANCE_CHECK(x > 0 && x <= 1, "flow schedule: custom sigma ", x, " outside (0, 1]");
        s = c.custom_sigmas;
    } else {
        // The training table is float32 torch: sigma = t / T for t = T..1, shifted unless dynamic; its ends are
        // then shifted AGAIN below (diffusers FlowMatchEulerDiscrete behaviour, kept for parity).
        const float shift = (float)c.shift;
        auto shift_f32 = [&](float x) { return c.dynamic ? x : (shift * x) / (1.0f + (shift - 1.0f) * x); };
        const double smax = shift_f32(1.0f), smin = shift_f32(1.0f / (float)T);
        s = np_linspace(smax * T, smin * T, c.steps);
        for (double& x : s) x /= T;
    }
    for (double& x : s) {
        if (c.dynamic) x = std::exp(c.mu) / (std::exp(c.mu) + (1.0 / x - 1.0));
        else x = c.shift * x / (1.0 + (c.shift - 1.0) * x);
    }
    Schedule out;
    for (double x : s) {
        const float f = (float)x;
        out.sigmas.push_back(f);
        out.timesteps.push_back((double)(f * (float)T));
    }
    out.sigmas.push_back(0.0);
    out.init_noise_sigma = 1.0;
    out.flow = true;
    validate_schedule(out, "flow schedule");
    return out;
}

double flux_mu(int64_t image_seq_len, int64_t base_seq_len, int64_t max_seq_len, double base_shift,
               double max_shift) {
    NUANCE_CHECK(max_seq_len != base_seq_len, "flux_mu: max_seq_len must differ from base_seq_len");
    const double m = (max_shift - base_shift) / (double)(max_seq_len - base_seq_len);
    const double b = base_shift - m * (double)base_seq_len;
    return (double)image_seq_len * m + b;
}

Schedule slice_schedule(const Schedule& s, int start) {
    NUANCE_CHECK(start >= 0 && start < s.steps(), "slice_schedule: start step ", start, " outside [0, ", s.steps(),
                 ")");
    Schedule out = s;
    out.sigmas.assign(s.sigmas.begin() + start, s.sigmas.end());
    out.timesteps.assign(s.timesteps.begin() + start, s.timesteps.end());
    if (!s.step_sigmas.empty()) out.step_sigmas.assign(s.step_sigmas.begin() + start, s.step_sigmas.end());
    return out;
}

void validate_schedule(const Schedule& s, const char* what) {
    const size_t n = s.timesteps.size();
    NUANCE_CHECK(n >= 1, what, ": schedule has no steps");
    NUANCE_CHECK(s.sigmas.size() == n + 1, what, ": expected ", n + 1, " sigmas for ", n, " timesteps, got ",
                 s.sigmas.size());
    for (size_t i = 0; i < s.sigmas.size(); ++i) {
        const double x = s.sigmas[i];
        NUANCE_CHECK(std::isfinite(x) && x >= 0, what, ": sigmas[", i, "] = ", x, " is not a finite sigma >= 0");
        if (i < n) NUANCE_CHECK(std::isfinite(s.timesteps[i]), what, ": timesteps[", i, "] is not finite");
    }
    for (size_t i = 0; i < n; ++i) {
        NUANCE_CHECK(s.sigmas[i] > 0, what, ": sigmas[", i, "] = 0 before the last step");
        NUANCE_CHECK(s.sigmas[i + 1] <= s.sigmas[i], what, ": sigmas must not increase, but sigmas[", i, "] = ",
                     s.sigmas[i], " < sigmas[", i + 1, "] = ", s.sigmas[i + 1]);
    }
    NUANCE_CHECK(s.step_sigmas.empty() || s.step_sigmas.size() == n, what, ": expected ", n,
                 " step sigmas (or none), got ", s.step_sigmas.size());
    for (size_t i = 0; i < s.step_sigmas.size(); ++i)
        NUANCE_CHECK(std::isfinite(s.step_sigmas[i]) && s.step_sigmas[i] >= 0 && s.step_sigmas[i] <= s.sigmas[i],
                     what, ": step_sigmas[", i, "] = ", s.step_sigmas[i], " is not a sigma in [0, sigmas[", i, "] = ",
                     s.sigmas[i], "]");
    NUANCE_CHECK(s.step_sigmas.empty() || s.step_sigmas.back() == s.sigmas.back(), what,
                 ": the last step sigma ", s.step_sigmas.empty() ? 0.0 : s.step_sigmas.back(),
                 " differs from the final sigma ", s.sigmas.back());
    NUANCE_CHECK(s.timestep_stride >= 0, what, ": timestep_stride ", s.timestep_stride, " is negative");
    NUANCE_CHECK(std::isfinite(s.init_noise_sigma) && s.init_noise_sigma > 0, what, ": init_noise_sigma ",
                 s.init_noise_sigma, " is not > 0");
}

}  // namespace nuance
