// The Var entry points of the models' one-definition forwards (nn/apply.h): the blocks' structure lives once, in
// models/unet, models/vae and models/clip, as templates instantiated for Tensor and Var.
#include "train/model_graph.h"

#include "models/clip/clip_forward.h"
#include "models/vae/vae_forward.h"

namespace nuance {

Var unet_forward(UNet2DConditionModel& m, const Var& x, const Tensor& t, const Var& context) {
    return unet_forward(m, x, t, context, Tensor());
}

// unet_forward(m, x, t, context, timestep_cond): models/unet/unet2d.cpp (a friend of the model).

Var vae_encode_moments(AutoencoderKL& m, const Var& x) { return run_encode_moments(m, x); }

Var vae_decode(AutoencoderKL& m, const Var& z) { return run_decode(m, z); }

Var clip_encode(ClipTextModel& m, const Tensor& ids) {
    return apply(m.final_layer_norm, run_layers<Var>(m, ids, m.config().layers, Tensor(), nullptr));
}

}  // namespace nuance
