// Differentiable forwards of the model classes the SD path uses (UNet2DConditionModel, AutoencoderKL, ClipTextModel):
// the Var instantiations of the same one-definition templates the Tensor forwards run (models/unet/unet_forward.h,
// models/vae/vae_forward.h, models/clip/clip_forward.h over nn/apply.h), so training computes exactly the inference
// structure while recording the tape. Weights are taken through param_var(), so the ParamGrads bound to the thread
// collects their gradients. Activations are NCHW here (the autograd ops' layout); the Tensor path runs channels-last.
// Shape letters: B batch, C channels, H/W spatial, L tokens, D width.
#pragma once
#include "autograd/nn_layers.h"
#include "models/clip/clip_text.h"
#include "models/unet/unet2d.h"
#include "models/vae/autoencoder_kl.h"

namespace nuance {

// x [B, in, h, w] latents, t [B] or [1] timesteps (no gradient), context [B, L, cross_attention_dim] -> [B, out, h, w].
Var unet_forward(UNet2DConditionModel& m, const Var& x, const Tensor& t, const Var& context);
// The same with a guidance embedding [B or 1, time_cond_proj_dim] for a guidance-conditioned UNet (LCM students,
// UNetExtra::timestep_cond); undefined: none.
Var unet_forward(UNet2DConditionModel& m, const Var& x, const Tensor& t, const Var& context,
                 const Tensor& timestep_cond);
// The same with every extra input (SDXL's pooled text_embeds and time_ids, ControlNet residuals, timestep_cond):
// constants, no gradient.
Var unet_forward(UNet2DConditionModel& m, const Var& x, const Tensor& t, const Var& context, const UNetExtra& extra);

// image [B, 3, H, W] in [-1, 1] -> moments [B, 2C, h, w] (encoder, quant_conv).
Var vae_encode_moments(AutoencoderKL& m, const Var& x);
// unscaled latent [B, C, h, w] -> image [B, 3, H, W] (post_quant_conv, decoder).
Var vae_decode(AutoencoderKL& m, const Var& z);

// ids [B, L] -> final_layer_norm(layer (layers - clip_skip + 1)) [B, L, D]: the SD1/SD2 conditioning (clip skip 1 =
// the last layer; SD2's 24-layer OpenCLIP-H takes the penultimate, clip skip 2).
Var clip_encode(ClipTextModel& m, const Tensor& ids, int clip_skip = 1);

}  // namespace nuance
