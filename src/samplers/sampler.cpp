#include "samplers/sampler.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "ops/elementwise.h"

namespace nuance {

SamplerLoop::SamplerLoop(const char* sampler, Denoiser& d, const Tensor& x, const Schedule& s, SamplerOptions& o)
    : name_(sampler), d_(d), s_(s), o_(o) {
    NUANCE_CHECK(x.defined(), "sampler '", sampler, "': input x is undefined");
    NUANCE_CHECK(x.dtype() == DType::F32, "sampler '", sampler, "': x must be F32, got ", x.str());
    validate_schedule(s, sampler);
    NUANCE_CHECK(s.flow == d.is_flow(), "sampler '", sampler, "': a ", s.flow ? "flow-matching" : "discrete-time",
                 " schedule cannot drive a ", d.is_flow() ? "flow-matching" : prediction_name(d.prediction()),
                 " model");
    NUANCE_CHECK(std::isfinite(o.s_noise) && o.s_noise >= 0, "sampler '", sampler, "': s_noise must be >= 0, got ",
                 o.s_noise);
    d.set_schedule(s);
    check_cancel();
}

void SamplerLoop::check_cancel() const {
    const bool cancel = (o_.cancel_flag && o_.cancel_flag->load()) || (o_.should_cancel && o_.should_cancel());
    if (cancel) fail(ErrorCode::Cancelled, "sampler '", name_, "': cancelled");
}

Tensor SamplerLoop::denoise(const Tensor& x, double sigma) {
    check_cancel();
    return d_(x, sigma);
}

void SamplerLoop::step_done(int i, const Tensor& x, const Tensor& denoised) {
    if (o_.callback) o_.callback(i, steps(), x, denoised);
    check_cancel();
}

Tensor SamplerLoop::noise(const Tensor& like) {
    NUANCE_CHECK(o_.rng != nullptr, "sampler '", name_, "' draws noise (eta / s_churn / SDE) but options.rng is null");
    return o_.rng->randn(like.shape());
}

void SamplerLoop::uses_noise(bool draws, const char* what) {
    if (!draws || !s_.flow) return;
    fail(ErrorCode::Unsupported, "sampler '", name_, "' adds variance-exploding noise (", what,
         ") that a flow-matching schedule (SD3/Flux) cannot take: set eta 0 / s_churn 0 or use a deterministic "
         "sampler (euler, heun, dpmpp_2m, ...)");
}

void SamplerLoop::uses_churn() {
    NUANCE_CHECK(std::isfinite(o_.s_churn) && o_.s_churn >= 0, "sampler '", name_, "': s_churn must be >= 0, got ",
                 o_.s_churn);
    uses_noise(o_.s_churn > 0, "s_churn");
}

double SamplerLoop::churn_gamma(int i) const {
    const double sigma = this->sigma(i);
    return (o_.s_churn > 0 && o_.s_tmin <= sigma && sigma <= o_.s_tmax)
               ? std::min(o_.s_churn / steps(), std::sqrt(2.0) - 1.0)
               : 0.0;
}

double SamplerLoop::churn(Tensor& x, int i) {
    const double sigma = this->sigma(i), gamma = churn_gamma(i);
    const double sigma_hat = sigma * (gamma + 1.0);
    if (gamma > 0) x = x + noise(x) * (float)(o_.s_noise * std::sqrt(sigma_hat * sigma_hat - sigma * sigma));
    return sigma_hat;
}

void SamplerLoop::require_discrete() const {
    if (!s_.flow) return;
    fail(ErrorCode::Unsupported, "sampler '", name_, "' works on a DDPM timestep set and needs a discrete-time "
         "(SD 1.x/2.x/XL) model; flow-matching models (SD3, Flux) take euler, heun, dpmpp_2m, ... instead");
}

double SamplerLoop::target(int i) const {
    return s_.step_sigmas.empty() ? sigma(i + 1) : s_.step_sigmas[(size_t)i];
}

Tensor SamplerLoop::land(const Tensor& x, int i) const {
    const double from = target(i), to = sigma(i + 1);
    if (from == to) return x;
    return x * (float)(std::sqrt(to * to + 1.0) / std::sqrt(from * from + 1.0));
}

double SamplerLoop::eta_or(double fallback) const {
    const double eta = o_.eta.value_or(fallback);
    NUANCE_CHECK(std::isfinite(eta) && eta >= 0, "sampler '", name_, "': eta must be finite and >= 0, got ", eta);
    return eta;
}

AncestralStep get_ancestral_step(double sigma_from, double sigma_to, double eta) {
    if (eta == 0 || sigma_from <= 0) return {sigma_to, 0.0};
    const double up = std::min(
        sigma_to, eta * std::sqrt(sigma_to * sigma_to * (sigma_from * sigma_from - sigma_to * sigma_to) /
                                  (sigma_from * sigma_from)));
    return {std::sqrt(std::max(0.0, sigma_to * sigma_to - up * up)), up};
}

Tensor euler_step(const Tensor& x, const Tensor& denoised, double sigma, double sigma_next) {
    const float r = (float)(sigma_next / sigma);
    return denoised + (x - denoised) * r;
}

Tensor ancestral_euler_step(SamplerLoop& loop, const Tensor& x, const Tensor& denoised, double sigma,
                            double sigma_next, double eta, double s_noise) {
    if (eta == 0) return euler_step(x, denoised, sigma, sigma_next);
    const AncestralStep a = get_ancestral_step(sigma, sigma_next, eta);
    Tensor out = euler_step(x, denoised, sigma, a.sigma_down);
    const Tensor n = loop.noise(x);
    return out + n * (float)(a.sigma_up * s_noise);
}

Tensor ancestral_euler_loop(SamplerLoop& loop, Tensor x, double eta, double s_noise,
                            const std::function<bool(int)>& draws) {
    for (int i = 0; i < loop.steps(); ++i) {
        const Tensor denoised = loop.denoise(x, loop.sigma(i));
        const double e = (!draws || draws(i)) ? eta : 0.0;
        x = loop.land(ancestral_euler_step(loop, x, denoised, loop.sigma(i), loop.target(i), e, s_noise), i);
        loop.step_done(i, x, denoised);
    }
    return x;
}

}  // namespace nuance
