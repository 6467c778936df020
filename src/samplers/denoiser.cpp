#include "samplers/denoiser.h"

#include <cctype>
#include <cmath>

#include "core/error.h"
#include "ops/elementwise.h"

namespace nuance {

Prediction parse_prediction(const std::string& name) {
    std::string k;
    for (char c : name)
        if (std::isalnum((unsigned char)c)) k += (char)std::tolower((unsigned char)c);
    if (k == "epsilon" || k == "eps") return Prediction::Epsilon;
    if (k == "vprediction" || k == "v") return Prediction::V;
    if (k == "sample" || k == "x0" || k == "originalsample") return Prediction::Sample;
    if (k == "flow" || k == "flowprediction") return Prediction::Flow;
    fail(ErrorCode::InvalidArgument, "unknown prediction type '", name,
         "': expected one of epsilon, v_prediction, sample, flow");
}

const char* prediction_name(Prediction p) {
    switch (p) {
        case Prediction::Epsilon: return "epsilon";
        case Prediction::V: return "v_prediction";
        case Prediction::Sample: return "sample";
        case Prediction::Flow: return "flow";
    }
    return "unknown";
}

Denoiser::Denoiser(ModelFn model, Prediction prediction, NoiseSchedule ns)
    : model_(std::move(model)), prediction_(prediction), ns_(std::move(ns)) {
    NUANCE_CHECK(model_ != nullptr, "Denoiser: model function is empty");
    NUANCE_CHECK(prediction != Prediction::Flow,
                 "Denoiser: flow-matching models take no noise schedule; use Denoiser::flow()");
}

Denoiser Denoiser::flow(ModelFn model, double timestep_scale) {
    NUANCE_CHECK(model != nullptr, "Denoiser: model function is empty");
    NUANCE_CHECK(std::isfinite(timestep_scale) && timestep_scale > 0, "Denoiser: timestep_scale must be > 0, got ",
                 timestep_scale);
    Denoiser d;
    d.model_ = std::move(model);
    d.prediction_ = Prediction::Flow;
    d.timestep_scale_ = timestep_scale;
    return d;
}

Denoiser Denoiser::direct(DenoiseFn fn, bool flow) {
    NUANCE_CHECK(fn != nullptr, "Denoiser: denoise function is empty");
    Denoiser d;
    d.direct_ = std::move(fn);
    d.prediction_ = flow ? Prediction::Flow : Prediction::Sample;
    return d;
}

void Denoiser::set_consistency_boundary(double timestep_scaling, double sigma_data) {
    NUANCE_CHECK(std::isfinite(timestep_scaling) && timestep_scaling > 0 && std::isfinite(sigma_data) && sigma_data > 0,
                 "Denoiser: consistency boundary needs timestep_scaling > 0 and sigma_data > 0, got ",
                 timestep_scaling, " and ", sigma_data);
    NUANCE_CHECK(!is_flow() && !direct_,
                 "Denoiser: the consistency boundary condition applies to discrete-time models only");
    boundary_scaling_ = timestep_scaling;
    boundary_sigma_data_ = sigma_data;
}

void Denoiser::set_schedule(const Schedule& s) {
    NUANCE_CHECK(s.sigmas.size() >= s.timesteps.size(), "Denoiser: schedule has ", s.timesteps.size(),
                 " timesteps but only ", s.sigmas.size(), " sigmas");
    NUANCE_CHECK(s.flow == is_flow(), "Denoiser: a ", s.flow ? "flow-matching" : "discrete-time",
                 " schedule cannot drive a ", is_flow() ? "flow-matching" : prediction_name(prediction_), " model");
    table_sigmas_.assign(s.sigmas.begin(), s.sigmas.begin() + (ptrdiff_t)s.timesteps.size());
    table_timesteps_ = s.timesteps;
}

double Denoiser::timestep(double sigma) const {
    for (size_t i = 0; i < table_sigmas_.size(); ++i)
        if (table_sigmas_[i] == sigma) return table_timesteps_[i];
    if (is_flow()) return sigma * timestep_scale_;
    return ns_.sigma_to_t(sigma);
}

double Denoiser::c_in(double sigma) const {
    if (is_flow()) return 1.0;
    const float s = (float)sigma;
    return 1.0 / (double)std::sqrt(s * s + 1.0f);
}

Tensor Denoiser::operator()(const Tensor& x, double sigma) {
    NUANCE_CHECK(x.defined(), "Denoiser: input x is undefined");
    NUANCE_CHECK(std::isfinite(sigma) && sigma >= 0, "Denoiser: sigma must be finite and >= 0, got ", sigma);
    if (direct_) {
        Tensor out = direct_(x, sigma);
        ++calls_;
        NUANCE_CHECK(out.defined() && out.shape() == x.shape(), "Denoiser: denoise function returned ",
                     out.defined() ? shape_str(out.shape()) : std::string("an undefined tensor"), " for input ",
                     shape_str(x.shape()), " at sigma ", sigma);
        last_output_ = eps_form(x, out, sigma);
        return out;
    }
    const double t = timestep(sigma);
    // float32 scalars, in the reference's order of operations (diffusers computes them from float32 sigmas).
    const float s = (float)sigma;
    const float s2p1 = s * s + 1.0f;
    const Tensor x_in = is_flow() ? x : x / Tensor::scalar(std::sqrt(s2p1));
    Tensor out = model_(x_in, t);
    ++calls_;
    NUANCE_CHECK(out.defined() && out.shape() == x.shape(), "Denoiser: model returned ",
                 out.defined() ? shape_str(out.shape()) : std::string("an undefined tensor"), " for input ",
                 shape_str(x.shape()), " at timestep ", t);
    Tensor denoised;
    switch (prediction_) {
        case Prediction::Epsilon:
        case Prediction::Flow: denoised = x - out * s; break;
        case Prediction::V: denoised = out * (-s / std::sqrt(s2p1)) + x / Tensor::scalar(s2p1); break;
        case Prediction::Sample: denoised = out.f32(); break;
    }
    if (boundary_scaling_ > 0) {
        const double st = t * boundary_scaling_, sd2 = boundary_sigma_data_ * boundary_sigma_data_;
        const float c_skip = (float)(sd2 / (st * st + sd2)), c_out = (float)(st / std::sqrt(st * st + sd2));
        denoised = denoised * c_out + x_in * c_skip;
    }
    last_output_ = prediction_ == Prediction::Sample ? eps_form(x, denoised, sigma) : out;
    return denoised;
}

Tensor Denoiser::eps_form(const Tensor& x, const Tensor& denoised, double sigma) {
    return sigma > 0 ? (x - denoised) / (float)sigma : denoised * 0.0f;
}

Tensor Denoiser::eps_from_output(const Tensor& output, const Tensor& x, double sigma) const {
    NUANCE_CHECK(std::isfinite(sigma) && sigma > 0, "Denoiser: eps_from_output needs sigma > 0, got ", sigma);
    const float s = (float)sigma;
    const float s2p1 = s * s + 1.0f;
    switch (prediction_) {
        case Prediction::Epsilon:
        case Prediction::Flow:
        case Prediction::Sample: return output;  // already eps (Sample: stored in eps form)
        case Prediction::V: return output / Tensor::scalar(std::sqrt(s2p1)) + x * (s / s2p1);
    }
    fail(ErrorCode::Internal, "Denoiser: unknown prediction type");
}

}  // namespace nuance
