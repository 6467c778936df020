// FluxTransformer2DModel (Flux.1 dev / schnell, Black Forest Labs 2024; diffusers 0.31 names), and the latent
// packing / position ids FluxPipeline builds around it.
// Shape letters: N batch, C latent channels, H/W latent size, Li = (H/2)(W/2) image tokens, Lt text tokens,
// D width, Dj joint_attention_dim (T5), P pooled dim (CLIP-L), Cp = 4C packed channels.
#pragma once
#include <vector>

#include "models/flux/flux_blocks.h"
#include "models/flux/flux_config.h"

namespace nuance {

struct FluxTransformer2DModel : Module {
    FluxConfig cfg;
    Linear x_embedder;                   // BFL img_in
    Linear context_embedder;             // BFL txt_in
    MlpEmbedder timestep_embedder;       // BFL time_in
    MlpEmbedder guidance_embedder;       // BFL guidance_in (dev only)
    MlpEmbedder text_embedder;           // BFL vector_in
    std::vector<FluxDoubleBlock> transformer_blocks;
    std::vector<FluxSingleBlock> single_transformer_blocks;
    Linear norm_out;                     // AdaLayerNormContinuous: 2D = (scale, shift); BFL final_layer.adaLN (shift, scale)
    Linear proj_out;                     // BFL final_layer.linear

    FluxTransformer2DModel() = default;
    explicit FluxTransformer2DModel(const FluxConfig& c);

    // hidden [N, Li, Cp] packed latents, timestep [N] sigma in [0, 1], guidance [N] (dev; ignored-undefined for
    // schnell), context [N, Lt, Dj], pooled [N, P], img_ids [Li, 3], txt_ids [Lt, 3] (a leading batch dim of 1 is
    // accepted, as diffusers deprecates) -> packed velocity [N, Li, Cout]. Errors name the input and both shapes.
    Tensor forward(const Tensor& hidden, const Tensor& timestep, const Tensor& guidance, const Tensor& context,
                   const Tensor& pooled, const Tensor& img_ids, const Tensor& txt_ids) const;
    // silu-free conditioning vector temb = time(t*1000) + guidance(g*1000) + text(pooled): [N, D].
    Tensor conditioning(const Tensor& timestep, const Tensor& guidance, const Tensor& pooled) const;
    void visit(ParamVisitor& v) override;
};

// FluxPipeline._pack_latents: [N, C, H, W] -> [N, (H/2)(W/2), 4C] (2x2 patches, channel-major within a patch).
// H and W must be even.
Tensor flux_pack_latents(const Tensor& latents);
// FluxPipeline._unpack_latents: [N, (H/2)(W/2), 4C] -> [N, C, H, W] for latent size H x W (even).
Tensor flux_unpack_latents(const Tensor& packed, int64_t height, int64_t width);
// FluxPipeline._prepare_latent_image_ids: [(H/2)(W/2), 3] F32 of (0, row, col) for an H x W latent.
Tensor flux_image_ids(int64_t latent_height, int64_t latent_width);
// txt_ids: [Lt, 3] zeros.
Tensor flux_text_ids(int64_t text_tokens);

}  // namespace nuance
