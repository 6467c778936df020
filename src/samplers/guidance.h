// Classifier-free guidance (Ho & Salimans 2022) and guidance rescale (Lin et al. 2023, "Common Diffusion Noise
// Schedules and Sample Steps are Flawed", §3.4, eq. 15-16; diffusers rescale_noise_cfg).
//
// Both act on the raw network output (eps / v / flow velocity), batch-first: [N, ...].
#pragma once
#include "core/tensor.h"

namespace nuance {

// uncond + scale * (cond - uncond). Shapes must match.
Tensor cfg_combine(const Tensor& uncond, const Tensor& cond, double scale);

// Guidance rescale with factor phi in [0, 1] (0 = off, returns guided unchanged; the paper uses 0.7):
//   rescaled = guided * std(cond) / std(guided),  out = phi * rescaled + (1 - phi) * guided
// std per batch item over all other dims, unbiased (torch.std default), as diffusers computes it. An item whose
// guided std is 0 is left unchanged.
Tensor rescale_noise_cfg(const Tensor& guided, const Tensor& cond, double phi);

}  // namespace nuance
