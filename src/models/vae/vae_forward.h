// The one definition of AutoencoderKL's forwards (design.md "One definition per forward"; the overload set is
// nn/apply.h): templates over V = Tensor (inference: the blocks' operator() and AutoencoderKL::encode_moments /
// decode call them) or Var (training: train/model_graph.h's vae_encode_moments / vae_decode), instantiated for both
// in vae_blocks.cpp and autoencoder_kl.cpp. Shapes as vae_blocks.h.
#pragma once
#include "models/vae/autoencoder_kl.h"
#include "nn/apply.h"

namespace nuance {

template <class V>
V run(const VaeResnetBlock& r, const V& x);
template <class V>
V run(const VaeAttention& a, const V& x);
template <class V>
V run(const VaeMidBlock& m, V x);
template <class V>
V run(const VaeDownBlock& d, V x);
template <class V>
V run(const VaeUpBlock& u, V x);
template <class V>
V run(const VaeEncoder& e, const V& x);
template <class V>
V run(const VaeDecoder& d, const V& z);

// image [N, in, H, W] -> moments [N, 2C, h, w] (encoder, quant_conv); unscaled latent -> image (post_quant_conv,
// decoder). The Tensor path runs channels-last inside and returns contiguous NCHW.
template <class V>
V run_encode_moments(const AutoencoderKL& m, const V& x);
template <class V>
V run_decode(const AutoencoderKL& m, const V& z);

}  // namespace nuance
