// ControlNet (Zhang et al. 2023, "Adding Conditional Control to Text-to-Image Diffusion Models") with diffusers
// ControlNetModel key names: a trainable copy of the SD UNet's encoder (conv_in, time embedding, down blocks, mid
// block; SDXL's add_embedding) fed with latents + an embedded conditioning image, whose skip tensors go through
// zero-initialised 1x1 convs and are added to the UNet's skips (models/unet/unet2d.h UNetExtra). SD1.x/2.x/SDXL
// configs are detected from the shapes (models/controlnet/controlnet_load.cpp opens the files).
#pragma once
#include <map>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <vector>

#include "models/unet/unet2d.h"

namespace nuance {

struct ControlNetConfig {
    UNetConfig unet;  // the encoder half (up_depth unused); heads/groups as for the UNet it was copied from
    int64_t conditioning_channels = 3;
    std::vector<int64_t> embedding_channels;  // conditioning_embedding_out_channels (16, 32, 96, 256 for SD1.5)
    bool global_pool_conditions = false;      // shuffle-style "global average pooling" ControlNets

    std::string describe() const;
    // From diffusers key names and shapes; Error (Unsupported) naming the missing/odd tensor.
    static ControlNetConfig detect(const std::map<std::string, Tensor>& t);
    // diffusers ControlNetModel.from_unet: the encoder half of `u` with this conditioning embedding.
    static ControlNetConfig from_unet(const UNetConfig& u, std::vector<int64_t> embedding = {16, 32, 96, 256});
    // A diffusers config.json on top (attention_head_dim / num_attention_heads, norm groups, global_pool_conditions,
    // addition_time_embed_dim). Bad values are Errors naming the field.
    void apply_json(const nlohmann::json& j);
};

// Raw ControlNet outputs (after the zero convs, before any weight): one residual per UNet skip tensor, and the mid.
struct ControlResiduals {
    std::vector<Tensor> down;
    Tensor mid;
};

class ControlNetModel : public Module {
public:
    explicit ControlNetModel(const ControlNetConfig& c);
    const ControlNetConfig& config() const { return cfg_; }
    // x: [B, Cin, h, w] latents, t: scalar or [B] timesteps, context: [B, S, Cc], hint: [1 or B, 3, 8h, 8w] in [0, 1]
    // (RGB). SDXL: extra.text_embeds / extra.time_ids as for the UNet. Residuals are unscaled.
    ControlResiduals forward(const Tensor& x, const Tensor& t, const Tensor& context, const Tensor& hint,
                             const UNetExtra& extra = {}) const;
    // Number of down residuals forward() returns (= the UNet's skip connections).
    int64_t num_down_residuals() const;
    void visit(ParamVisitor& v) override;

private:
    ControlNetConfig cfg_;
    Conv2d conv_in_;
    TimestepEmbedding time_embedding_, add_embedding_;
    Conv2d cond_in_, cond_out_;
    std::vector<Conv2d> cond_blocks_;
    std::vector<UNetLevel> down_;
    ResnetBlock mid_res0_;
    std::vector<SpatialTransformer> mid_attn_;
    std::vector<ResnetBlock> mid_res_;
    std::vector<Conv2d> zero_down_;
    Conv2d zero_mid_;
};

}  // namespace nuance
