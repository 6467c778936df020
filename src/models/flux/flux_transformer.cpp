// Shape letters: N batch, Li image tokens, Lt text tokens, L = Lt + Li, D width, Cp packed channels.
#include "models/flux/flux_transformer.h"

#include "core/checked.h"

namespace nuance {

FluxTransformer2DModel::FluxTransformer2DModel(const FluxConfig& c)
    : cfg(c), x_embedder(c.in_channels, c.hidden), context_embedder(c.joint_attention_dim, c.hidden),
      timestep_embedder(c.timestep_channels, c.hidden), text_embedder(c.pooled_projection_dim, c.hidden),
      norm_out(c.hidden, 2 * c.hidden), proj_out(c.hidden, c.out_channels) {
    cfg.validate();
    if (c.guidance_embeds) guidance_embedder = MlpEmbedder(c.timestep_channels, c.hidden);
    for (int64_t i = 0; i < c.num_double; ++i)
        transformer_blocks.emplace_back(c.hidden, c.heads, c.head_dim, c.mlp_hidden, c.eps);
    for (int64_t i = 0; i < c.num_single; ++i)
        single_transformer_blocks.emplace_back(c.hidden, c.heads, c.head_dim, c.mlp_hidden, c.eps);
}

void FluxTransformer2DModel::visit(ParamVisitor& v) {
    v("x_embedder", x_embedder);
    v("context_embedder", context_embedder);
    v("time_text_embed.timestep_embedder", timestep_embedder);
    if (cfg.guidance_embeds) v("time_text_embed.guidance_embedder", guidance_embedder);
    v("time_text_embed.text_embedder", text_embedder);
    v("transformer_blocks", transformer_blocks);
    v("single_transformer_blocks", single_transformer_blocks);
    v("norm_out.linear", norm_out);
    v("proj_out", proj_out);
}

namespace {

// [N] of finite values (timestep / guidance).
Tensor batch_scalars(const Tensor& t, int64_t N, const char* what) {
    NUANCE_CHECK(t.defined() && t.numel() == N && t.dim() <= 1, "Flux: ", what, " must be [", N, "] (one per batch "
                 "item), got ", t.defined() ? shape_str(t.shape()) : std::string("none"));
    return t.f32().reshape({N});
}

// Position ids [L, A]; diffusers still accepts (and deprecates) a leading batch dim, which it drops.
Tensor position_ids(const Tensor& ids, int64_t L, const char* what) {
    NUANCE_CHECK(ids.defined(), "Flux: ", what, " is missing");
    const Tensor t = ids.dim() == 3 && ids.size(0) == 1 ? ids.select(0, 0) : ids;
    NUANCE_CHECK(t.dim() == 2 && t.size(0) == L && t.size(1) == 3, "Flux: ", what, " must be [", L, ", 3], got ",
                 ids.shape());
    return t;
}

}  // namespace

Tensor FluxTransformer2DModel::conditioning(const Tensor& timestep, const Tensor& guidance,
                                            const Tensor& pooled) const {
    const int64_t N = pooled.size(0);
    // Timesteps(256, flip_sin_to_cos=True, downscale_freq_shift=0) of sigma * 1000 (and guidance * 1000).
    const Tensor t = batch_scalars(timestep, N, "timestep") * 1000.0f;
    Tensor temb = timestep_embedder(timestep_embedding(t, cfg.timestep_channels, true, 0.0f));
    if (cfg.guidance_embeds) {
        NUANCE_CHECK(guidance.defined(), "Flux-dev model (guidance_embeds) needs a guidance value per batch item");
        const Tensor g = batch_scalars(guidance, N, "guidance") * 1000.0f;
        temb = temb + guidance_embedder(timestep_embedding(g, cfg.timestep_channels, true, 0.0f));
    }
    return temb + text_embedder(pooled);  // [N, D]
}

Tensor FluxTransformer2DModel::forward(const Tensor& hidden, const Tensor& timestep, const Tensor& guidance,
                                       const Tensor& context, const Tensor& pooled, const Tensor& img_ids,
                                       const Tensor& txt_ids) const {
    NUANCE_CHECK(hidden.dim() == 3 && hidden.size(2) == cfg.in_channels, "Flux: hidden_states must be [N, Li, ",
                 cfg.in_channels, "] (packed latents), got ", hidden.shape());
    const int64_t N = hidden.size(0), Li = hidden.size(1);
    NUANCE_CHECK(context.dim() == 3 && context.size(0) == N && context.size(2) == cfg.joint_attention_dim,
                 "Flux: encoder_hidden_states must be [", N, ", Lt, ", cfg.joint_attention_dim, "], got ",
                 context.shape());
    NUANCE_CHECK(pooled.dim() == 2 && pooled.size(0) == N && pooled.size(1) == cfg.pooled_projection_dim,
                 "Flux: pooled_projections must be [", N, ", ", cfg.pooled_projection_dim, "], got ", pooled.shape());
    const int64_t Lt = context.size(1);
    NUANCE_CHECK(Li > 0 && Lt >= 0, "Flux: no image tokens (hidden_states ", hidden.shape(), ")");
    const Tensor ids = cat({position_ids(txt_ids, Lt, "txt_ids"), position_ids(img_ids, Li, "img_ids")}, 0);
    const Tensor freqs = rope_frequencies(ids, cfg.axes_dims_rope, cfg.rope_theta);  // [L, d/2, 2], text first

    Tensor x = x_embedder(hidden);                                  // [N, Li, D]
    Tensor ctx = context_embedder(context);                         // [N, Lt, D]
    const Tensor vec = silu(conditioning(timestep, guidance, pooled));  // [N, D]

    for (const auto& block : transformer_blocks) std::tie(x, ctx) = block.forward(x, ctx, vec, freqs);
    Tensor joint = cat({ctx, x}, 1);                                // [N, L, D]
    for (const auto& block : single_transformer_blocks) joint = block.forward(joint, vec, freqs);
    x = joint.narrow(1, Lt, Li);

    const auto [scale, shift] = chunk<2>(norm_out(vec), 1);         // AdaLayerNormContinuous: (scale, shift)
    return proj_out(layer_norm_modulate(x, shift, scale, cfg.eps, proj_out.input_dtype()));  // [N, Li, Cout]
}

Tensor flux_pack_latents(const Tensor& latents) {
    NUANCE_CHECK(latents.dim() == 4 && latents.size(2) % 2 == 0 && latents.size(3) % 2 == 0,
                 "Flux: latents must be [N, C, H, W] with even H and W, got ", latents.shape());
    const int64_t N = latents.size(0), C = latents.size(1), H = latents.size(2), W = latents.size(3);
    // view(N, C, H/2, 2, W/2, 2).permute(0, 2, 4, 1, 3, 5).reshape(N, HW/4, 4C)
    return latents.reshape({N, C, H / 2, 2, W / 2, 2}).permute({0, 2, 4, 1, 3, 5}).reshape({N, (H / 2) * (W / 2), C * 4});
}

Tensor flux_unpack_latents(const Tensor& packed, int64_t height, int64_t width) {
    NUANCE_CHECK(height > 0 && width > 0 && height % 2 == 0 && width % 2 == 0,
                 "Flux: latent size must be even, got ", height, "x", width);
    NUANCE_CHECK(packed.dim() == 3 && packed.size(2) % 4 == 0, "Flux: packed latents must be [N, L, 4C], got ",
                 packed.shape());
    const int64_t N = packed.size(0), C = packed.size(2) / 4, h = height / 2, w = width / 2;
    NUANCE_CHECK(packed.size(1) == mul_or_throw(h, w, "Flux latent size"), "Flux: packed latents ", packed.shape(),
                 " hold ", packed.size(1), " tokens, a ", height, "x", width, " latent needs ", h * w);
    // view(N, h, w, C, 2, 2).permute(0, 3, 1, 4, 2, 5).reshape(N, C, H, W)
    return packed.reshape({N, h, w, C, 2, 2}).permute({0, 3, 1, 4, 2, 5}).reshape({N, C, height, width});
}

Tensor flux_image_ids(int64_t latent_height, int64_t latent_width) {
    NUANCE_CHECK(latent_height > 0 && latent_width > 0 && latent_height % 2 == 0 && latent_width % 2 == 0,
                 "Flux: latent size must be even, got ", latent_height, "x", latent_width);
    const int64_t h = latent_height / 2, w = latent_width / 2;
    std::vector<float> v((size_t)mul_or_throw<int64_t>(mul_or_throw(h, w, "Flux latent size"), 3,
                                                       "Flux latent size"));
    for (int64_t r = 0; r < h; ++r)
        for (int64_t c = 0; c < w; ++c) {
            v[(size_t)((r * w + c) * 3 + 1)] = (float)r;
            v[(size_t)((r * w + c) * 3 + 2)] = (float)c;
        }
    return Tensor::from_vector(v, {h * w, 3});
}

Tensor flux_text_ids(int64_t text_tokens) {
    NUANCE_CHECK(text_tokens >= 0, "Flux: text token count must be >= 0, got ", text_tokens);
    return Tensor::zeros({text_tokens, 3});
}

}  // namespace nuance
