// Denoiser: turns a raw network (eps / v / x0 / flow-velocity prediction at a model timestep) into the k-diffusion
// denoiser D(x, sigma) ~ E[x0 | x], the only thing samplers call (Karras et al. 2022, "Elucidating the Design
// Space of Diffusion-Based Generative Models", table 1; sigma_data = 1 for the VP models here).
//
//   VP models (x in VE scaling, x = x0 + sigma * eps):
//     x_in = c_in * x,  c_in = 1 / sqrt(sigma^2 + 1)            (diffusers scale_model_input)
//     eps:     D = x - sigma * F(x_in, t)
//     v:       D = c_skip * x + c_out * F(x_in, t),  c_skip = 1 / (sigma^2 + 1),  c_out = -sigma / sqrt(sigma^2 + 1)
//     sample:  D = F(x_in, t)
//   Flow models (x = (1 - sigma) x0 + sigma * eps, F predicts eps - x0):
//     x_in = x,  D = x - sigma * F(x, t)
//
// The model timestep t for a sigma is the one the active Schedule pairs with that sigma (diffusers' own timesteps,
// fractional or rounded); sigmas a sampler invents between schedule points fall back to the training schedule's
// log-sigma interpolation (sigma_to_t), or sigma * timestep_scale for flow models.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "samplers/schedule.h"

namespace nuance {

// The network as the sampler sees it: x_in already scaled by c_in; returns the raw prediction with x_in's shape.
// Classifier-free guidance, ControlNet residuals etc. live inside this function (pipeline code).
using ModelFn = std::function<Tensor(const Tensor& x_in, double timestep)>;

enum class Prediction { Epsilon, V, Sample, Flow };
// "epsilon" / "eps", "v_prediction" / "v", "sample" / "x0" / "original_sample", "flow" / "flow_prediction";
// case-insensitive; unknown -> Error listing the valid names.
Prediction parse_prediction(const std::string& name);
const char* prediction_name(Prediction p);  // diffusers spelling: "epsilon", "v_prediction", "sample", "flow"

class Denoiser {
public:
    // A discrete-time VP model trained on `ns` (SD 1.x / 2.x / XL). prediction must not be Flow.
    Denoiser(ModelFn model, Prediction prediction, NoiseSchedule ns);
    // A flow-matching model (SD3, Flux): timestep = sigma * timestep_scale unless the schedule pairs it.
    static Denoiser flow(ModelFn model, double timestep_scale = 1000.0);
    // A denoiser given directly as D(x, sigma) (k-diffusion style: EDM-type models, analytic test distributions).
    // No input scaling, no timesteps; `flow` says which kind of schedule it accepts. noise_schedule() is the
    // default (SD) table, which only TCD reads.
    using DenoiseFn = std::function<Tensor(const Tensor& x, double sigma)>;
    static Denoiser direct(DenoiseFn fn, bool flow = false);

    // D(x, sigma): the x0 estimate. x: any shape, F32; sigma >= 0 and finite.
    Tensor operator()(const Tensor& x, double sigma);

    // Consistency-model boundary condition of LCM / TCD distilled models (Song et al. 2023; diffusers LCMScheduler):
    // D' = c_skip(t) * x_vp + c_out(t) * D with c_skip = sd^2 / ((t*k)^2 + sd^2), c_out = t*k / sqrt((t*k)^2 + sd^2),
    // k = timestep_scaling, sd = sigma_data. Off by default (it changes D by < 1e-5 for t >= 19 with k = 10).
    void set_consistency_boundary(double timestep_scaling = 10.0, double sigma_data = 0.5);

    // Use the schedule's (sigma, timestep) pairs verbatim. Samplers call this on entry (SamplerLoop does).
    void set_schedule(const Schedule& s);
    double timestep(double sigma) const;

    double c_in(double sigma) const;  // input scaling (1 for flow models)
    // The network's raw output of the last call (eps models: eps, v models: v, flow models: the velocity; x0 models
    // and direct denoisers: the eps form (x - D) / sigma), and the noise estimate eps that such an output (or a
    // linear combination of them) means for a sample x at sigma (v: out / sqrt(s^2+1) + s x / (s^2+1); the others:
    // itself). Multistep methods that combine raw outputs before converting them (diffusers PNDM) need both.
    const Tensor& last_output() const { return last_output_; }
    Tensor eps_from_output(const Tensor& output, const Tensor& x, double sigma) const;

private:
    static Tensor eps_form(const Tensor& x, const Tensor& denoised, double sigma);

public:
    Prediction prediction() const { return prediction_; }
    bool is_flow() const { return prediction_ == Prediction::Flow; }
    const NoiseSchedule& noise_schedule() const { return ns_; }
    int64_t calls() const { return calls_; }  // model evaluations so far

private:
    Denoiser() = default;
    ModelFn model_;
    DenoiseFn direct_;
    Prediction prediction_ = Prediction::Epsilon;
    NoiseSchedule ns_;
    double timestep_scale_ = 1000.0;
    double boundary_scaling_ = 0.0;  // 0 = no consistency boundary condition
    double boundary_sigma_data_ = 0.5;
    std::vector<double> table_sigmas_, table_timesteps_;
    int64_t calls_ = 0;
    Tensor last_output_;
};

}  // namespace nuance
