// Shape letters: B batch, C channels, H/W spatial, S = H*W tokens, L text tokens, D width.
#include "train/model_graph.h"

#include "ops/shape_ops.h"

namespace nuance {

namespace {

// ---- UNet blocks (models/unet/unet_blocks.cpp) ----

Var resnet(ResnetBlock& r, const Var& x, const Var& emb) {
    Var h = forward(r.conv1, forward(r.norm1, x, /*silu=*/true));
    if (r.has_temb) h = h + forward(r.time_emb_proj, silu(emb)).unsqueeze(-1).unsqueeze(-1);
    h = forward(r.conv2, forward(r.norm2, h, /*silu=*/true));
    return h + (r.has_shortcut ? forward(r.conv_shortcut, x) : x);
}

Var feed_forward(FeedForward& f, const Var& x) {
    auto [hidden, gate] = chunk<2>(forward(f.proj, x), -1);  // GEGLU: hidden * gelu(gate)
    return forward(f.out, hidden * gelu(gate));
}

Var transformer_block(TransformerBlock& b, Var x, const Var& context) {
    x = x + forward(b.attn1, forward(b.norm1, x));
    x = x + forward(b.attn2, forward(b.norm2, x), context);
    return x + feed_forward(b.ff, forward(b.norm3, x));
}

Var spatial_transformer(SpatialTransformer& s, const Var& x, const Var& context) {
    const int64_t B = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
    Var h = forward(s.norm, x);
    auto to_tokens = [&](const Var& t) { return t.permute({0, 2, 3, 1}).reshape({B, H * W, C}); };
    auto to_image = [&](const Var& t) { return t.reshape({B, H, W, C}).permute({0, 3, 1, 2}).contiguous(); };
    h = s.linear_proj ? forward(s.proj_in_lin, to_tokens(h)) : to_tokens(forward(s.proj_in_conv, h));
    for (auto& b : s.blocks) h = transformer_block(b, h, context);
    h = s.linear_proj ? to_image(forward(s.proj_out_lin, h)) : forward(s.proj_out_conv, to_image(h));
    return h + x;
}

// ---- VAE blocks (models/vae/vae_blocks.cpp) ----

Var vae_resnet(VaeResnetBlock& r, const Var& x) {
    Var h = forward(r.conv1, forward(r.norm1, x, /*silu=*/true));
    h = forward(r.conv2, forward(r.norm2, h, /*silu=*/true));
    return h + (r.has_shortcut ? forward(r.conv_shortcut, x) : x);
}

Var vae_attention(VaeAttention& a, const Var& x) {
    const int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
    const Var h = forward(a.group_norm, x).permute({0, 2, 3, 1}).reshape({N, H * W, C});  // [N, S, C]
    const Var o = forward(a.to_out, multi_head_attention(forward(a.to_q, h), forward(a.to_k, h), forward(a.to_v, h), 1));
    return o.reshape({N, H, W, C}).permute({0, 3, 1, 2}).contiguous() + x;
}

Var vae_mid(VaeMidBlock& m, Var x) {
    x = vae_resnet(m.resnets[0], x);
    if (m.has_attention) x = vae_attention(m.attention, x);
    return vae_resnet(m.resnets[1], x);
}

}  // namespace

Var unet_forward(UNet2DConditionModel& m, const Var& x, const Tensor& t, const Var& context) {
    return unet_forward(m, x, t, context, Tensor());
}

Var unet_forward(UNet2DConditionModel& m, const Var& x, const Tensor& t, const Var& context,
                 const Tensor& timestep_cond) {
    const UNetConfig& c = m.cfg_;
    NUANCE_CHECK(x.dim() == 4 && x.size(1) == c.in_channels, "UNet: expected latents [B, ", c.in_channels,
                 ", h, w], got ", x.shape());
    const int64_t B = x.size(0);
    NUANCE_CHECK(context.dim() == 3 && context.size(0) == B && context.size(2) == c.cross_attention_dim,
                 "UNet: expected context [", B, ", L, ", c.cross_attention_dim, "], got ", context.shape());
    NUANCE_CHECK(!c.text_time, "UNet training: SDXL micro-conditioning (text_time) is not supported");
    Tensor ts = t.f32().reshape({-1});
    NUANCE_CHECK(ts.numel() == 1 || ts.numel() == B, "UNet: ", ts.numel(), " timesteps for a batch of ", B);
    if (ts.numel() == 1) ts = ts.expand({B}).contiguous();
    Var sin_emb(timestep_embedding(ts, c.block_out_channels[0], c.flip_sin_to_cos, c.freq_shift));
    if (c.time_cond_proj_dim > 0 && timestep_cond.defined()) {  // LCM students: + cond_proj(guidance embedding)
        NUANCE_CHECK(timestep_cond.dim() == 2 && (timestep_cond.size(0) == B || timestep_cond.size(0) == 1) &&
                         timestep_cond.size(1) == c.time_cond_proj_dim,
                     "UNet: expected the guidance embedding as [", B, ", ", c.time_cond_proj_dim, "], got ",
                     timestep_cond.shape());
        sin_emb = sin_emb + forward(m.time_cond_proj_, Var(timestep_cond.f32()));
    }
    const Var emb = forward(m.time_embedding_.linear_2, silu(forward(m.time_embedding_.linear_1, sin_emb)));

    Var h = forward(m.conv_in_, x);
    std::vector<Var> skips{h};
    for (auto& lv : m.down_) {
        for (size_t j = 0; j < lv.resnets.size(); ++j) {
            h = resnet(lv.resnets[j], h, emb);
            if (!lv.attentions.empty()) h = spatial_transformer(lv.attentions[j], h, context);
            skips.push_back(h);
        }
        if (!lv.down.empty()) {
            h = forward(lv.down[0].conv, h);
            skips.push_back(h);
        }
    }
    h = resnet(m.mid_res0_, h, emb);
    if (!m.mid_attn_.empty()) {
        h = spatial_transformer(m.mid_attn_[0], h, context);
        h = resnet(m.mid_res_[0], h, emb);
    }
    for (auto& lv : m.up_) {
        for (size_t j = 0; j < lv.resnets.size(); ++j) {
            h = cat({h, skips.back()}, 1);
            skips.pop_back();
            h = resnet(lv.resnets[j], h, emb);
            if (!lv.attentions.empty()) h = spatial_transformer(lv.attentions[j], h, context);
        }
        if (!lv.up.empty())
            h = forward(lv.up[0].conv, interpolate_nearest(h, skips.back().size(2), skips.back().size(3)));
    }
    return forward(m.conv_out_, forward(m.norm_out_, h, /*silu=*/true));
}

Var vae_encode_moments(AutoencoderKL& m, const Var& x) {
    NUANCE_CHECK(x.dim() == 4 && x.size(1) == m.config().in_channels, "AutoencoderKL::encode: expected [N, ",
                 m.config().in_channels, ", H, W], got ", x.shape());
    VaeEncoder& e = m.encoder;
    Var h = forward(e.conv_in, x);
    for (auto& d : e.down_blocks) {
        for (auto& r : d.resnets) h = vae_resnet(r, h);
        if (d.has_downsample) h = forward(d.downsample, h);
    }
    h = vae_mid(e.mid_block, h);
    h = forward(e.conv_out, forward(e.conv_norm_out, h, /*silu=*/true));
    return m.config().use_quant_conv ? forward(m.quant_conv, h) : h;
}

Var vae_decode(AutoencoderKL& m, const Var& z) {
    NUANCE_CHECK(z.dim() == 4 && z.size(1) == m.config().latent_channels, "AutoencoderKL::decode: expected [N, ",
                 m.config().latent_channels, ", h, w], got ", z.shape());
    VaeDecoder& d = m.decoder;
    Var h = m.config().use_post_quant_conv ? forward(m.post_quant_conv, z) : z;
    h = vae_mid(d.mid_block, forward(d.conv_in, h));
    for (auto& u : d.up_blocks) {
        for (auto& r : u.resnets) h = vae_resnet(r, h);
        if (u.has_upsample) h = forward(u.upsample, interpolate_nearest(h, 2 * h.size(2), 2 * h.size(3)));
    }
    return forward(d.conv_out, forward(d.conv_norm_out, h, /*silu=*/true));
}

Var clip_encode(ClipTextModel& m, const Tensor& ids) {
    const ClipTextConfig& c = m.config();
    NUANCE_CHECK(ids.defined() && ids.dim() == 2 && !dtype_is_float(ids.dtype()),
                 "CLIP text encoder: ids must be integers [B, L], got ", ids.defined() ? ids.str() : "undefined");
    const int64_t L = ids.size(1);
    NUANCE_CHECK(L >= 1 && L <= c.max_positions, "CLIP text encoder: ", L, " tokens, the model takes 1..",
                 c.max_positions);
    Var x = embedding(ids, param_var(m.token_embedding)) + param_var(m.position_embedding).slice(0, 0, L);
    for (auto& layer : m.layers) {
        ClipAttention& a = layer.self_attn;
        const Var h = forward(layer.layer_norm1, x);
        x = x + forward(a.out_proj, multi_head_attention(forward(a.q_proj, h), forward(a.k_proj, h),
                                                         forward(a.v_proj, h), a.heads, /*causal=*/true));
        Var f = forward(layer.mlp.fc1, forward(layer.layer_norm2, x));
        switch (layer.mlp.act) {
            case ClipAct::QuickGelu: f = quick_gelu(f); break;
            case ClipAct::Gelu: f = gelu(f); break;
            case ClipAct::GeluTanh: f = gelu_tanh(f); break;
        }
        x = x + forward(layer.mlp.fc2, f);
    }
    return forward(m.final_layer_norm, x);
}

}  // namespace nuance
