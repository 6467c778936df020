#include "samplers/registry.h"

#include <algorithm>
#include <cctype>
#include <cmath>

#include "core/error.h"
#include "ops/elementwise.h"

namespace nuance {

namespace {

using ST = ScheduleType;
using SF = ScheduleFamily;

const std::vector<ST> kAnySigmas = {ST::Normal,      ST::Karras, ST::Exponential,    ST::SgmUniform,
                                     ST::Simple,      ST::DdimUniform, ST::Beta,     ST::AlignYourSteps,
                                     ST::AlignYourStepsSdxl, ST::Custom};
const std::vector<ST> kTimestepSetOnly = {ST::Normal};

// One row per sampler. To add one: write sample_<name>.cpp, declare it in sampler.h, add a row here.
// Columns: name, A1111 name, aliases, fn, family, final_alpha_one, schedules, stochastic, description,
// discrete_only, forced spacing.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"  // rows leave trailing columns at their defaults
std::vector<SamplerInfo> build_table() {
    std::vector<SamplerInfo> t;
    t.push_back({"euler", "Euler", {"k_euler", "sample_euler"}, sample_euler, SF::EulerDiscrete, false, kAnySigmas,
                 false, "Euler (Karras et al. 2022); deterministic unless s_churn > 0"});
    t.push_back({"euler_a", "Euler a", {"euler_ancestral", "k_euler_a", "k_euler_ancestral", "sample_euler_ancestral"},
                 sample_euler_ancestral, SF::EulerDiscrete, false, kAnySigmas, true,
                 "Euler ancestral: Euler step plus fresh noise each step (eta, default 1)"});
    t.push_back({"heun", "Heun", {"k_heun", "sample_heun"}, sample_heun, SF::EulerDiscrete, false, kAnySigmas, false,
                 "Heun's 2nd-order method: 2 model calls per step"});
    t.push_back({"dpm2", "DPM2", {"dpm_2", "k_dpm_2", "sample_dpm_2"}, sample_dpm2, SF::EulerDiscrete, false,
                 kAnySigmas, false, "DPM-Solver-2 style midpoint method (k-diffusion): 2 model calls per step"});
    t.push_back({"dpm2_a", "DPM2 a",
                 {"dpm_2_ancestral", "dpm2_ancestral", "k_dpm_2_a", "k_dpm_2_ancestral", "sample_dpm_2_ancestral"},
                 sample_dpm2_ancestral, SF::EulerDiscrete, false, kAnySigmas, true,
                 "DPM2 ancestral: midpoint step to sigma_down plus fresh noise (eta, default 1)"});
    t.push_back({"lms", "LMS", {"k_lms", "sample_lms"}, sample_lms, SF::EulerDiscrete, false, kAnySigmas, false,
                 "Linear multistep (order 4)"});
    t.push_back({"ddim", "DDIM", {"sample_ddim"}, sample_ddim, SF::Ddim, false, kAnySigmas, false,
                 "DDIM (Song et al. 2020) on the DDIM timestep set; eta default 0", true});
    t.push_back({"ddim_trailing", "DDIM Trailing", {}, sample_ddim, SF::Ddim, false,
                 kTimestepSetOnly, false, "DDIM on 'trailing' timesteps (Lin et al. 2023; sd.cpp ddim_trailing)", true,
                 Spacing::Trailing});
    t.push_back({"ddpm", "DDPM", {"sample_ddpm"}, sample_ddpm, SF::Ddim, true, kAnySigmas, true,
                 "DDPM ancestral sampling (= DDIM with eta 1, stepping to alpha 1)", true});
    t.push_back({"dpmpp_2m", "DPM++ 2M", {"k_dpmpp_2m", "sample_dpmpp_2m", "dpmsolver++"}, sample_dpmpp_2m,
                 SF::DpmSolver, false, kAnySigmas, false, "DPM-Solver++(2M) multistep, 2nd order"});
    t.push_back({"dpmpp_2m_v2", "DPM++ 2M v2", {"dpmpp_2mv2", "dpm++2mv2"}, sample_dpmpp_2m_v2, SF::DpmSolver, false,
                 kAnySigmas, false, "DPM++ 2M with the averaged step (sd.cpp dpm++2mv2, A1111 discussion 8457)"});
    t.push_back({"dpmpp_2m_sde", "DPM++ 2M SDE",
                 {"k_dpmpp_2m_sde", "sample_dpmpp_2m_sde", "sde-dpmsolver++", "dpmpp_2m_sde_gpu"}, sample_dpmpp_2m_sde,
                 SF::DpmSolver, false, kAnySigmas, true,
                 "DPM-Solver++(2M) SDE, midpoint (eta default 1; Gaussian noise per step, as diffusers)"});
    t.push_back({"dpmpp_2s", "DPM++ 2S", {"dpm_singlestep", "dpmsolver_singlestep", "sample_dpmpp_2s"},
                 sample_dpmpp_2s, SF::DpmSolver, false, kAnySigmas, false,
                 "DPM-Solver++(2S) singlestep (diffusers DPMSolverSinglestep; not the ancestral 'DPM++ 2S a')"});
    t.push_back({"dpmpp_2s_a", "DPM++ 2S a",
                 {"dpmpp_2s_ancestral", "dpm++2s_a", "k_dpmpp_2s_a", "k_dpmpp_2s_ancestral",
                  "sample_dpmpp_2s_ancestral"},
                 sample_dpmpp_2s_ancestral, SF::EulerDiscrete, false, kAnySigmas, true,
                 "DPM-Solver++(2S) ancestral (k-diffusion): 2 model calls per step, eta default 1"});
    t.push_back({"dpmpp_sde", "DPM++ SDE", {"k_dpmpp_sde", "sample_dpmpp_sde", "dpmpp_sde_gpu"}, sample_dpmpp_sde,
                 SF::EulerDiscrete, false, kAnySigmas, true,
                 "DPM-Solver++ SDE (stochastic 2S, k-diffusion): 2 calls per step; independent Gaussian noise, "
                 "not a Brownian tree"});
    t.push_back({"dpmpp_3m_sde", "DPM++ 3M SDE", {"k_dpmpp_3m_sde", "sample_dpmpp_3m_sde", "dpmpp_3m_sde_gpu"},
                 sample_dpmpp_3m_sde, SF::EulerDiscrete, false, kAnySigmas, true,
                 "DPM-Solver++(3M) SDE (k-diffusion), 3rd order; eta default 1, 0 = ODE"});
    t.push_back({"unipc", "UniPC", {"uni_pc", "uni_pc_bh2", "sample_unipc"}, sample_unipc, SF::DpmSolver, false,
                 kAnySigmas, false, "UniPC predictor-corrector, order 2, B2(h) (Zhao et al. 2023)"});
    t.push_back({"ipndm", "iPNDM", {"sample_ipndm"}, sample_ipndm, SF::EulerDiscrete, false, kAnySigmas, false,
                 "Improved PNDM (Zhang & Chen 2023): 4th-order Adams-Bashforth, one call per step"});
    t.push_back({"plms", "PLMS", {"pndm", "sample_plms"}, sample_plms, SF::Ddim, false, kTimestepSetOnly, false,
                 "Pseudo linear multistep (PNDM without Runge-Kutta warm-up): N+1 model calls", true});
    t.push_back({"lcm", "LCM", {"sample_lcm"}, sample_lcm, SF::Lcm, false, kTimestepSetOnly, true,
                 "Latent consistency model sampling: denoise, then re-noise to the next sigma", true});
    t.push_back({"tcd", "TCD", {"sample_tcd"}, sample_tcd, SF::Tcd, false, kTimestepSetOnly, true,
                 "Trajectory consistency distillation sampling (Zheng et al. 2024), gamma = eta (default 0.3)", true});
    // diffusers' KDPM2 schedulers round the timesteps of Karras (and other typed) sigmas; its midpoints stay
    // fractional (the denoiser's sigma_to_t).
    for (SamplerInfo& s : t)
        if (s.name == "dpm2" || s.name == "dpm2_a") s.round_typed_timesteps = true;
    return t;
}
#pragma GCC diagnostic pop

// Lower case, "++" -> "pp", only letters and digits kept; a leading "k" / "sample" prefix written with a separator
// ("k_euler", "sample_euler") is dropped.
std::string normalize(const std::string& raw) {
    std::string s;
    for (char c : raw) s += (char)std::tolower((unsigned char)c);
    for (const char* prefix : {"k_", "k-", "k ", "sample_"})
        if (s.rfind(prefix, 0) == 0) {
            s = s.substr(std::char_traits<char>::length(prefix));
            break;
        }
    std::string out;
    for (size_t i = 0; i < s.size(); ++i) {
        if (s[i] == '+' && i + 1 < s.size() && s[i + 1] == '+') {
            out += "pp";
            ++i;
        } else if (std::isalnum((unsigned char)s[i])) {
            out += s[i];
        }
    }
    return out;
}

const SamplerInfo* lookup(const std::string& name) {
    const std::string k = normalize(name);
    if (k.empty()) return nullptr;
    for (const SamplerInfo& s : list_samplers()) {
        if (normalize(s.name) == k || normalize(s.display_name) == k) return &s;
        for (const std::string& a : s.aliases)
            if (normalize(a) == k) return &s;
    }
    return nullptr;
}

std::string valid_names() {
    std::string out;
    for (const SamplerInfo& s : list_samplers()) {
        if (!out.empty()) out += ", ";
        out += s.name + " ('" + s.display_name + "')";
    }
    return out;
}

std::string schedule_list(const SamplerInfo& s) {
    std::string out;
    for (ST t : s.schedules) out += std::string(out.empty() ? "" : ", ") + schedule_type_name(t);
    return out;
}

}  // namespace

const std::vector<SamplerInfo>& list_samplers() {
    static const std::vector<SamplerInfo> table = build_table();
    return table;
}

const SamplerInfo& find_sampler(const std::string& name) {
    if (const SamplerInfo* s = lookup(name)) return *s;
    fail(ErrorCode::InvalidArgument, "unknown sampler '", name, "': expected one of ", valid_names(),
         " (case, spaces, '_' and '-' are ignored; k-diffusion names like 'k_dpmpp_2m' work too)");
}

SamplerSpec parse_sampler_spec(const std::string& name) {
    if (const SamplerInfo* s = lookup(name)) return {s, std::nullopt};
    const std::string k = normalize(name);
    // "<sampler><schedule>": the longest sampler prefix whose rest is a schedule name (custom needs a list: no).
    for (size_t p = k.size(); p-- > 1;) {
        const SamplerInfo* s = lookup(k.substr(0, p));
        if (!s) continue;
        try {
            const ST t = parse_schedule_type(k.substr(p));
            if (t != ST::Custom) return {s, t};
        } catch (const Error&) {
        }
    }
    return {&find_sampler(name), std::nullopt};  // throws with the list of valid names
}

bool sampler_supports(const SamplerInfo& s, ScheduleType t) {
    return std::find(s.schedules.begin(), s.schedules.end(), t) != s.schedules.end();
}

ScheduleConfig sampler_schedule_config(const SamplerInfo& s, int steps, ScheduleType type,
                                       std::optional<Spacing> spacing, std::optional<int> steps_offset,
                                       const std::vector<double>& custom_sigmas) {
    NUANCE_CHECK_CODE(sampler_supports(s, type), Unsupported, "sampler '", s.name, "' does not support schedule '",
                      schedule_type_name(type), "' (supported: ", schedule_list(s), ")");
    NUANCE_CHECK(type != ScheduleType::Custom || !custom_sigmas.empty(),
                 "schedule 'custom' needs a sigma list (e.g. --sigmas \"14.6, 7.0, 3.1, 0\")");
    NUANCE_CHECK(type == ScheduleType::Custom || custom_sigmas.empty(), "a custom sigma list was given with schedule '",
                 schedule_type_name(type), "': use schedule 'custom' (the list replaces the schedule)");
    ScheduleConfig c;
    c.steps = steps;
    c.type = type;
    c.family = s.family;
    c.final_alpha_one = s.final_alpha_one;
    c.round_typed_timesteps = s.round_typed_timesteps;
    c.custom_sigmas = custom_sigmas;
    if (type == ScheduleType::Custom) {
        validate_custom_sigmas(custom_sigmas);
        c.steps = (int)custom_sigmas.size() - 1;
    }
    const bool ddim = s.family == ScheduleFamily::Ddim;
    c.spacing = s.spacing ? *s.spacing : spacing.value_or(ddim ? Spacing::Leading : Spacing::Linspace);
    c.steps_offset = steps_offset.value_or(ddim && c.spacing == Spacing::Leading ? 1 : 0);
    if (s.spacing) c.steps_offset = *s.spacing == Spacing::Leading ? steps_offset.value_or(1) : 0;
    return c;
}

Schedule make_sampler_schedule(const SamplerInfo& s, const NoiseSchedule& ns, int steps, ScheduleType type,
                               std::optional<Spacing> spacing, std::optional<int> steps_offset,
                               const std::vector<double>& custom_sigmas) {
    return make_schedule(ns, sampler_schedule_config(s, steps, type, spacing, steps_offset, custom_sigmas));
}

ScheduleType schedule_for_model(ScheduleType t, bool sdxl) {
    if (t == ScheduleType::AlignYourSteps && sdxl) return ScheduleType::AlignYourStepsSdxl;
    return t;
}

Tensor finalize_sample(const Tensor& x, const Schedule& schedule) {
    NUANCE_CHECK(!schedule.sigmas.empty(), "finalize_sample: schedule has no sigmas");
    const double last = schedule.sigmas.back();
    if (schedule.flow || last == 0) return x;
    return x / Tensor::scalar((float)std::sqrt(last * last + 1.0));
}

Tensor run_sampler(const SamplerInfo& s, Denoiser& d, Tensor x, const Schedule& schedule, SamplerOptions& o) {
    NUANCE_CHECK(s.fn != nullptr, "sampler '", s.name, "' has no implementation");
    if (schedule.flow && s.discrete_only) {
        std::string ok;
        for (const SamplerInfo& i : list_samplers())
            if (!i.discrete_only) ok += std::string(ok.empty() ? "" : ", ") + i.name;
        fail(ErrorCode::Unsupported, "sampler '", s.name, "' is discrete-time only (it needs a DDPM timestep set) and "
             "cannot sample a flow-matching model (SD3, Flux); use one of ", ok,
             " (stochastic ones with eta 0)");
    }
    return finalize_sample(s.fn(d, std::move(x), schedule, o), schedule);
}

Tensor run_sampler(const std::string& name, Denoiser& d, Tensor x, const Schedule& schedule, SamplerOptions& o) {
    return run_sampler(find_sampler(name), d, std::move(x), schedule, o);
}

}  // namespace nuance
