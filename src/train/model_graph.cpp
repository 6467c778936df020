// The Var entry points of the models' one-definition forwards (nn/apply.h): the blocks' structure lives once, in
// models/unet, models/vae and models/clip, as templates instantiated for Tensor and Var.
#include "train/model_graph.h"

#include "models/clip/clip_forward.h"
#include "models/vae/vae_forward.h"

namespace nuance {

Var unet_forward(UNet2DConditionModel& m, const Var& x, const Tensor& t, const Var& context) {
    return m.forward(x, t, context);
}

Var unet_forward(UNet2DConditionModel& m, const Var& x, const Tensor& t, const Var& context,
                 const Tensor& timestep_cond) {
    UNetExtra extra;
    extra.timestep_cond = timestep_cond;
    return m.forward(x, t, context, extra);
}

Var unet_forward(UNet2DConditionModel& m, const Var& x, const Tensor& t, const Var& context, const UNetExtra& extra) {
    return m.forward(x, t, context, extra);
}

Var vae_encode_moments(AutoencoderKL& m, const Var& x) { return run_encode_moments(m, x); }

Var vae_decode(AutoencoderKL& m, const Var& z) { return run_decode(m, z); }

Var clip_encode(ClipTextModel& m, const Tensor& ids, int clip_skip) {
    NUANCE_CHECK(clip_skip >= 1 && clip_skip <= m.config().layers, "CLIP text encoder: clip_skip ", clip_skip,
                 " is outside 1..", m.config().layers);
    return apply(m.final_layer_norm, run_layers<Var>(m, ids, m.config().layers - clip_skip + 1, Tensor(), nullptr));
}

}  // namespace nuance
