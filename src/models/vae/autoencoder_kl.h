// AutoencoderKL (Rombach et al. 2022, the "first stage" of latent diffusion), diffusers layout and key names:
// encoder.*, decoder.*, quant_conv, post_quant_conv. SD1/SD2/SDXL (4 latent channels, quant convs) and SD3/Flux
// (16 latent channels, no quant convs) share this code; the config comes from the file's shapes.
// Shape letters: N batch, C latent channels, H/W image size, h/w latent size (H / 8 for the real models).
#pragma once
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "models/vae/vae_blocks.h"

namespace nuance {

struct AutoencoderKLConfig {
    int64_t in_channels = 3;
    int64_t out_channels = 3;
    std::vector<int64_t> block_out_channels{128, 256, 512, 512};
    int64_t layers_per_block = 2;  // encoder resnets per level; the decoder has one more
    int64_t latent_channels = 4;
    int64_t norm_groups = 32;
    bool norm_groups_guessed = false;  // true when detect() had to fall back on the rule below
    float norm_eps = 1e-6f;
    bool use_quant_conv = true;
    bool use_post_quant_conv = true;
    bool mid_block_attention = true;
    float scaling_factor = 0.18215f;
    float shift_factor = 0.0f;

    // Everything but the norm groups and the scaling/shift factors comes from the shapes under `prefix`.
    // Norm groups are not in the shapes. Rule: 32 (every released VAE) when 32 divides every block width, else the
    // largest of 16, 8, 4, 2, 1 that divides them all, with norm_groups_guessed set: tiny models must state theirs
    // (config.json's norm_num_groups via apply_diffusers_config, or the `groups` argument, which wins when > 0).
    // Factors default to SD1's 0.18215 / 0 for 4 latent channels and Flux's 0.3611 / 0.1159 for 16; SDXL (0.13025)
    // and SD3 (1.5305 / 0.0609) share those shapes, so take them from config.json.
    static AutoencoderKLConfig detect(const std::map<std::string, Tensor>& tensors, const std::string& prefix = "",
                                      int64_t groups = 0);

    // diffusers vae/config.json: takes norm_num_groups, scaling_factor, shift_factor (null = 0) and checks that
    // block_out_channels, layers_per_block, latent_channels, in/out_channels, use_quant_conv, use_post_quant_conv
    // and mid_block_add_attention agree with the detected model.
    void apply_diffusers_config(const nlohmann::json& cfg);

    int64_t downscale() const { return (int64_t)1 << (block_out_channels.size() - 1); }  // 8 for the real models
};

// The posterior q(z | x): a diagonal Gaussian. logvar is clamped to [-30, 20] as diffusers does.
struct DiagonalGaussian {
    Tensor mean;    // [N, C, h, w]
    Tensor logvar;  // [N, C, h, w]
    static DiagonalGaussian from_moments(const Tensor& moments);  // moments [N, 2C, h, w] = cat(mean, logvar)
    Tensor std() const;                                            // exp(0.5 * logvar)
    Tensor sample(const Tensor& eps) const;                        // mean + std * eps, eps ~ N(0, I) [N, C, h, w]
    const Tensor& mode() const { return mean; }
};

class AutoencoderKL : public Module {
public:
    explicit AutoencoderKL(const AutoencoderKLConfig& c);
    const AutoencoderKLConfig& config() const { return cfg_; }

    // x: [N, in_channels, H, W] in [-1, 1], H and W multiples of downscale() -> moments [N, 2C, h, w]
    // (encoder, then quant_conv when present).
    Tensor encode_moments(const Tensor& x) const;
    DiagonalGaussian encode(const Tensor& x) const { return DiagonalGaussian::from_moments(encode_moments(x)); }
    // z: UNscaled latent [N, C, h, w] -> image [N, out_channels, h * f, w * f], unclamped (post_quant_conv, decoder).
    Tensor decode(const Tensor& z) const;

    // Pipeline conventions: latents = (z - shift_factor) * scaling_factor; z = latents / scaling_factor + shift_factor.
    Tensor to_latents(const Tensor& z) const;
    Tensor from_latents(const Tensor& latents) const;
    float scaling_factor() const { return cfg_.scaling_factor; }
    float shift_factor() const { return cfg_.shift_factor; }
    void set_scaling_factor(float f) { cfg_.scaling_factor = f; }  // training: measured on the data

    void visit(ParamVisitor& v) override;

    VaeEncoder encoder;
    VaeDecoder decoder;
    Conv2d quant_conv;       // [2C, 2C, 1, 1], when use_quant_conv
    Conv2d post_quant_conv;  // [C, C, 1, 1], when use_post_quant_conv

private:
    AutoencoderKLConfig cfg_;
};

// Early diffusers VAE files (e.g. stabilityai/sd-vae-ft-mse) name the mid-block attention query/key/value/proj_attn;
// returns the tensors with those renamed to to_q/to_k/to_v/to_out.0 (views, no copies), everything else unchanged.
std::map<std::string, Tensor> rename_legacy_vae_attention(const std::map<std::string, Tensor>& tensors);

}  // namespace nuance
