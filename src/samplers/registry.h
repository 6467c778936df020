// Sampler registry: names users type -> sampler function, the schedule family its reference uses, the schedule
// types it supports, and its A1111 display name for PNG "parameters" metadata.
//
// Pipelines do:
//     const SamplerInfo& info = find_sampler(user_name);              // "Euler a", "dpmpp_2m", "k_euler", ...
//     Schedule s = make_sampler_schedule(info, model_noise_schedule, steps, parse_schedule_type(user_schedule));
//     x = randn * s.init_noise_sigma;  ...  x = run_sampler(info, denoiser, x, s, options);
// and never name a sampler in code, so adding one (see sampler.h) does not touch them.
#pragma once
#include <optional>
#include <string>
#include <vector>

#include "samplers/sampler.h"
#include "samplers/schedule.h"

namespace nuance {

struct SamplerInfo {
    std::string name;                  // canonical, sd.cpp/ComfyUI style: "euler_a", "dpmpp_2m"
    std::string display_name;          // A1111 "Sampler:" value: "Euler a", "DPM++ 2M"
    std::vector<std::string> aliases;  // other spellings (matching ignores case, spaces, '_' and '-'; "++" = "pp")
    SamplerFn fn = nullptr;
    ScheduleFamily family = ScheduleFamily::EulerDiscrete;  // the reference implementation's timestep set
    bool final_alpha_one = false;                           // Ddim family: step to alpha 1 at the end (DDPM)
    std::vector<ScheduleType> schedules;                    // supported schedule types; the first is the default
    bool stochastic = false;                                // needs SamplerOptions::rng at its default settings
    std::string description;                                // one line for `nuance samplers`
    bool discrete_only = false;     // tied to a DDPM timestep set: not for flow-matching models (SD3, Flux)
    std::optional<Spacing> spacing;  // forced timestep spacing (sd.cpp "ddim_trailing"); wins over the caller's
    bool round_typed_timesteps = false;  // see ScheduleConfig (dpm2, dpm2_a: diffusers KDPM2 parity)
};

// Every registered sampler, in display order.
const std::vector<SamplerInfo>& list_samplers();

// Lookup by any spelling: canonical name, A1111 display name, aliases, k-diffusion names ("k_dpmpp_2m",
// "sample_euler_ancestral"). Case-insensitive. Unknown -> Error (InvalidArgument) listing the valid names.
const SamplerInfo& find_sampler(const std::string& name);

// Old A1111 names carry the schedule: "DPM++ 2M Karras" -> {dpmpp_2m, karras}, "Euler a SGM Uniform" ->
// {euler_a, sgm_uniform} (any schedule name or alias as a suffix). Plain names give no schedule.
struct SamplerSpec {
    const SamplerInfo* sampler = nullptr;
    std::optional<ScheduleType> schedule;
};
SamplerSpec parse_sampler_spec(const std::string& name);

bool sampler_supports(const SamplerInfo& s, ScheduleType t);

// The schedule a sampler runs on, built like its reference scheduler. spacing/steps_offset default to the family's
// usual SD setting: linspace/0 for Euler-family and DPM-Solver samplers, leading/1 for DDIM/DDPM (a sampler with a
// forced spacing, ddim_trailing, ignores `spacing`). ScheduleType::Custom takes `custom_sigmas` (N+1 values, see
// parse_sigma_list; `steps` is then ignored); custom sigmas with another type are an error.
// Unsupported schedule type -> Error (Unsupported) naming the supported ones.
ScheduleConfig sampler_schedule_config(const SamplerInfo& s, int steps, ScheduleType type = ScheduleType::Normal,
                                       std::optional<Spacing> spacing = std::nullopt,
                                       std::optional<int> steps_offset = std::nullopt,
                                       const std::vector<double>& custom_sigmas = {});
Schedule make_sampler_schedule(const SamplerInfo& s, const NoiseSchedule& ns, int steps,
                               ScheduleType type = ScheduleType::Normal, std::optional<Spacing> spacing = std::nullopt,
                               std::optional<int> steps_offset = std::nullopt,
                               const std::vector<double>& custom_sigmas = {});

// The schedule type for a model family: align-your-steps has separate SD1.5 and SDXL tables, and "ays" typed by a
// user means the one for the loaded model. Other types are returned unchanged.
ScheduleType schedule_for_model(ScheduleType t, bool sdxl);

// Runs the sampler and returns the sample ready for the VAE: x itself when the schedule ends at sigma 0, else (DDIM
// set without set_alpha_to_one) the VP latent x / sqrt(sigma_last^2 + 1), which is what diffusers returns.
// A discrete-only sampler on a flow-matching schedule is an Error (Unsupported) listing the samplers that work.
Tensor run_sampler(const SamplerInfo& s, Denoiser& d, Tensor x, const Schedule& schedule, SamplerOptions& o);
Tensor run_sampler(const std::string& name, Denoiser& d, Tensor x, const Schedule& schedule, SamplerOptions& o);

// The VE sample at sigma_last -> what the decoder expects (identity when sigma_last is 0 or for flow schedules).
Tensor finalize_sample(const Tensor& x, const Schedule& schedule);

}  // namespace nuance
