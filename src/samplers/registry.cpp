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

const std::vector<ST> kAnySigmas = {ST::Normal, ST::Karras, ST::Exponential};
const std::vector<ST> kTimestepSetOnly = {ST::Normal};

// One row per sampler. To add one: write sample_<name>.cpp, declare it in sampler.h, add a row here.
std::vector<SamplerInfo> build_table() {
    std::vector<SamplerInfo> t;
    t.push_back({"euler", "Euler", {"k_euler", "sample_euler"}, sample_euler, SF::EulerDiscrete, false, kAnySigmas,
                 false, "Euler (Karras et al. 2022); deterministic unless s_churn > 0"});
    t.push_back({"euler_a", "Euler a", {"euler_ancestral", "k_euler_a", "k_euler_ancestral", "sample_euler_ancestral"},
                 sample_euler_ancestral, SF::EulerDiscrete, false, kAnySigmas, true,
                 "Euler ancestral: Euler step plus fresh noise each step (eta, default 1)"});
    t.push_back({"heun", "Heun", {"k_heun", "sample_heun"}, sample_heun, SF::EulerDiscrete, false, kAnySigmas, false,
                 "Heun's 2nd-order method: 2 model calls per step"});
    t.push_back({"lms", "LMS", {"k_lms", "sample_lms"}, sample_lms, SF::EulerDiscrete, false, kAnySigmas, false,
                 "Linear multistep (order 4)"});
    t.push_back({"ddim", "DDIM", {"sample_ddim"}, sample_ddim, SF::Ddim, false, kTimestepSetOnly, false,
                 "DDIM (Song et al. 2020) on the DDIM timestep set; eta default 0"});
    t.push_back({"ddpm", "DDPM", {"sample_ddpm"}, sample_ddpm, SF::Ddim, true, kTimestepSetOnly, true,
                 "DDPM ancestral sampling (= DDIM with eta 1, stepping to alpha 1)"});
    t.push_back({"dpmpp_2m", "DPM++ 2M", {"k_dpmpp_2m", "sample_dpmpp_2m", "dpmsolver++"}, sample_dpmpp_2m,
                 SF::DpmSolver, false, kAnySigmas, false, "DPM-Solver++(2M) multistep, 2nd order"});
    t.push_back({"dpmpp_2m_sde", "DPM++ 2M SDE", {"k_dpmpp_2m_sde", "sample_dpmpp_2m_sde", "sde-dpmsolver++"},
                 sample_dpmpp_2m_sde, SF::DpmSolver, false, kAnySigmas, true,
                 "DPM-Solver++(2M) SDE, midpoint (eta default 1; Gaussian noise per step, as diffusers)"});
    t.push_back({"dpmpp_2s", "DPM++ 2S", {"dpm_singlestep", "dpmsolver_singlestep", "sample_dpmpp_2s"},
                 sample_dpmpp_2s, SF::DpmSolver, false, kAnySigmas, false,
                 "DPM-Solver++(2S) singlestep (diffusers DPMSolverSinglestep; not the ancestral 'DPM++ 2S a')"});
    t.push_back({"unipc", "UniPC", {"uni_pc", "uni_pc_bh2", "sample_unipc"}, sample_unipc, SF::DpmSolver, false,
                 kAnySigmas, false, "UniPC predictor-corrector, order 2, B2(h) (Zhao et al. 2023)"});
    t.push_back({"plms", "PLMS", {"pndm", "sample_plms"}, sample_plms, SF::Ddim, false, kTimestepSetOnly, false,
                 "Pseudo linear multistep (PNDM without Runge-Kutta warm-up): N+1 model calls"});
    t.push_back({"lcm", "LCM", {"sample_lcm"}, sample_lcm, SF::Lcm, false, kTimestepSetOnly, true,
                 "Latent consistency model sampling: denoise, then re-noise to the next sigma"});
    return t;
}

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
    for (ST t : {ST::Karras, ST::Exponential}) {
        const std::string suffix = schedule_type_name(t);
        if (k.size() > suffix.size() && k.compare(k.size() - suffix.size(), suffix.size(), suffix) == 0) {
            if (const SamplerInfo* s = lookup(k.substr(0, k.size() - suffix.size()))) return {s, t};
        }
    }
    return {&find_sampler(name), std::nullopt};  // throws with the list of valid names
}

bool sampler_supports(const SamplerInfo& s, ScheduleType t) {
    return std::find(s.schedules.begin(), s.schedules.end(), t) != s.schedules.end();
}

ScheduleConfig sampler_schedule_config(const SamplerInfo& s, int steps, ScheduleType type,
                                       std::optional<Spacing> spacing, std::optional<int> steps_offset) {
    NUANCE_CHECK_CODE(sampler_supports(s, type), Unsupported, "sampler '", s.name, "' does not support schedule '",
                      schedule_type_name(type), "' (supported: ", schedule_list(s), ")");
    ScheduleConfig c;
    c.steps = steps;
    c.type = type;
    c.family = s.family;
    c.final_alpha_one = s.final_alpha_one;
    const bool ddim = s.family == ScheduleFamily::Ddim;
    c.spacing = spacing.value_or(ddim ? Spacing::Leading : Spacing::Linspace);
    c.steps_offset = steps_offset.value_or(ddim && c.spacing == Spacing::Leading ? 1 : 0);
    return c;
}

Schedule make_sampler_schedule(const SamplerInfo& s, const NoiseSchedule& ns, int steps, ScheduleType type,
                               std::optional<Spacing> spacing, std::optional<int> steps_offset) {
    return make_schedule(ns, sampler_schedule_config(s, steps, type, spacing, steps_offset));
}

Tensor finalize_sample(const Tensor& x, const Schedule& schedule) {
    NUANCE_CHECK(!schedule.sigmas.empty(), "finalize_sample: schedule has no sigmas");
    const double last = schedule.sigmas.back();
    if (schedule.flow || last == 0) return x;
    return x / Tensor::scalar((float)std::sqrt(last * last + 1.0));
}

Tensor run_sampler(const SamplerInfo& s, Denoiser& d, Tensor x, const Schedule& schedule, SamplerOptions& o) {
    NUANCE_CHECK(s.fn != nullptr, "sampler '", s.name, "' has no implementation");
    return finalize_sample(s.fn(d, std::move(x), schedule, o), schedule);
}

Tensor run_sampler(const std::string& name, Denoiser& d, Tensor x, const Schedule& schedule, SamplerOptions& o) {
    return run_sampler(find_sampler(name), d, std::move(x), schedule, o);
}

}  // namespace nuance
