// The one definition of the SD UNet's forwards (design.md "One definition per forward"; the overload set is
// nn/apply.h): templates over V = Tensor (inference: ResnetBlock::forward and friends, UNet2DConditionModel::forward
// call them) or Var (training: train/model_graph.h's unet_forward), instantiated for both in unet_blocks.cpp and
// unet2d.cpp. Shapes as unet_blocks.h.
#pragma once
#include "models/unet/unet_blocks.h"
#include "nn/apply.h"

namespace nuance {

template <class V>
V run(const ResnetBlock& r, const V& x, const V& emb);
template <class V>
V run(const FeedForward& f, const V& x);
template <class V>
V run(const TransformerBlock& b, V x, const V& context);
template <class V>
V run(const SpatialTransformer& s, const V& x, const V& context);

template <class V>
V run(const Downsample& d, const V& x) {
    return apply(d.conv, x);
}

// Nearest upsampling to (oh, ow), then the 3x3 conv (the Tensor path hands the conv its input dtype).
template <class V>
V run(const Upsample& u, const V& x, int64_t oh, int64_t ow) {
    return apply(u.conv, interpolate_nearest(x, oh, ow, u.conv.input_dtype()));
}

}  // namespace nuance
