// Architectures of the trainable models, as JSON (the knobs `nuance train --arch` exposes) and as the model configs
// the SD path uses, plus the diffusers config.json files an exported model carries.
#pragma once
#include <nlohmann/json.hpp>
#include <string>

#include "models/clip/clip_text.h"
#include "models/unet/unet_config.h"
#include "models/vae/autoencoder_kl.h"

namespace nuance {

// arch JSON -> configs. in_channels: latent channels (ldm) or image channels (ddpm).
UNetConfig unet_config_from_arch(const nlohmann::json& unet, int64_t in_channels, int64_t cross_attention_dim);
ClipTextConfig clip_config_from_arch(const nlohmann::json& text_encoder);
AutoencoderKLConfig vae_config_from_arch(const nlohmann::json& vae, int64_t image_channels);

// diffusers config.json objects for an exported folder (what load_model reads back).
nlohmann::json unet_diffusers_config(const UNetConfig& c, int64_t sample_size);
nlohmann::json vae_diffusers_config(const AutoencoderKLConfig& c, int64_t sample_size);
nlohmann::json clip_hf_config(const ClipTextConfig& c);

}  // namespace nuance
