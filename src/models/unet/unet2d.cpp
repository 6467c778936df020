#include "models/unet/unet2d.h"

#include <cmath>

#include "autograd/nn_layers.h"
#include "models/unet/unet_forward.h"

namespace nuance {

Tensor guidance_scale_embedding(const std::vector<float>& w, int64_t dim) {
    NUANCE_CHECK(dim >= 2 && dim <= 65536, "guidance-scale embedding: width ", dim, " outside 2..65536");
    NUANCE_CHECK(!w.empty() && w.size() <= (1u << 20), "guidance-scale embedding: ", w.size(), " scales");
    const int64_t half = dim / 2, B = (int64_t)w.size();
    // float32 throughout, in diffusers' order: emb = log(10000) / (half - 1); exp(arange(half) * -emb); w[:, None] * f
    const float step = half > 1 ? std::log(10000.0f) / (float)(half - 1) : 0.0f;
    std::vector<float> out((size_t)(B * dim), 0.0f);
    for (int64_t b = 0; b < B; ++b) {
        NUANCE_CHECK(std::isfinite(w[(size_t)b]), "guidance-scale embedding: scale ", w[(size_t)b], " is not finite");
        const float ws = w[(size_t)b] * 1000.0f;
        for (int64_t k = 0; k < half; ++k) {
            const float a = ws * std::exp((float)k * -step);
            out[(size_t)(b * dim + k)] = std::sin(a);
            out[(size_t)(b * dim + half + k)] = std::cos(a);
        }
    }
    return Tensor::from_vector(out, {B, dim});
}

UNet2DConditionModel::UNet2DConditionModel(const UNetConfig& c) : cfg_(c) {
    const int64_t L = c.levels();
    NUANCE_CHECK(L >= 1 && (int64_t)c.heads.size() == L && (int64_t)c.down_attn.size() == L &&
                     (int64_t)c.up_depth.size() == L,
                 "UNet config is inconsistent: ", c.describe());
    const auto& ch = c.block_out_channels;
    const int64_t temb = c.time_embed_dim, g = c.norm_num_groups;
    const float eps = c.norm_eps;
    conv_in_ = Conv2d(c.in_channels, ch[0], 3, 1, 1);
    time_embedding_ = TimestepEmbedding(ch[0], temb);
    if (c.text_time) add_embedding_ = TimestepEmbedding(c.add_in_dim, temb);
    if (c.time_cond_proj_dim > 0) time_cond_proj_ = Linear(c.time_cond_proj_dim, ch[0], /*bias=*/false);
    int64_t prev = ch[0];
    for (int64_t i = 0; i < L; ++i) {
        UNetLevel lv;
        for (int64_t j = 0; j < c.layers_per_block; ++j) {
            lv.resnets.emplace_back(j == 0 ? prev : ch[i], ch[i], temb, g, eps);
            if (c.down_attn[i])
                lv.attentions.emplace_back(ch[i], c.heads[i], c.down_depth[i], c.cross_attention_dim, g,
                                           c.use_linear_projection);
        }
        if (i + 1 < L) lv.down.emplace_back(ch[i]);
        prev = ch[i];
        down_.push_back(std::move(lv));
    }
    mid_res0_ = ResnetBlock(ch[L - 1], ch[L - 1], temb, g, eps);
    if (c.mid_depth > 0) {
        mid_attn_.emplace_back(ch[L - 1], c.heads[L - 1], c.mid_depth, c.cross_attention_dim, g,
                               c.use_linear_projection);
        mid_res_.emplace_back(ch[L - 1], ch[L - 1], temb, g, eps);
    }
    // Up block i mirrors level L-1-i and has layers_per_block + 1 resnets fed by the skip connections.
    prev = ch[L - 1];
    for (int64_t i = 0; i < L; ++i) {
        const int64_t lvl = L - 1 - i, out = ch[lvl];
        const int64_t skip_lvl_in = lvl > 0 ? ch[lvl - 1] : ch[0];
        UNetLevel lv;
        for (int64_t j = 0; j <= c.layers_per_block; ++j) {
            const int64_t skip = j == c.layers_per_block ? skip_lvl_in : out;
            const int64_t in = j == 0 ? prev : out;
            lv.resnets.emplace_back(in + skip, out, temb, g, eps);
            if (c.up_depth[i] > 0)
                lv.attentions.emplace_back(out, c.heads[lvl], c.up_depth[i], c.cross_attention_dim, g,
                                           c.use_linear_projection);
        }
        if (i + 1 < L) lv.up.emplace_back(out);
        prev = out;
        up_.push_back(std::move(lv));
    }
    norm_out_ = GroupNorm(g, ch[0], eps);
    conv_out_ = Conv2d(ch[0], c.out_channels, 3, 1, 1);
}

void UNet2DConditionModel::visit(ParamVisitor& v) {
    v("conv_in", conv_in_);
    v("time_embedding", time_embedding_);
    if (cfg_.time_cond_proj_dim > 0) v("time_embedding.cond_proj", time_cond_proj_);
    if (cfg_.text_time) v("add_embedding", add_embedding_);
    v("down_blocks", down_);
    v("mid_block.resnets.0", mid_res0_);
    if (!mid_attn_.empty()) {
        v("mid_block.attentions.0", mid_attn_[0]);
        v("mid_block.resnets.1", mid_res_[0]);
    }
    v("up_blocks", up_);
    v("conv_norm_out", norm_out_);
    v("conv_out", conv_out_);
}

// The one definition of UNet2DConditionModel's forward, on Tensor (inference) or Var (training).
template <class V>
V UNet2DConditionModel::forward_impl(const V& x, const Tensor& t, const V& context, const UNetExtra& extra) const {
    const UNetConfig& cfg = cfg_;
    NUANCE_CHECK(x.dim() == 4 && x.size(1) == cfg.in_channels, "UNet: expected latents [B, ", cfg.in_channels,
                 ", h, w], got ", x.shape());
    const int64_t B = x.size(0);
    NUANCE_CHECK(context.dim() == 3 && context.size(0) == B && context.size(2) == cfg.cross_attention_dim,
                 "UNet: expected context [", B, ", S, ", cfg.cross_attention_dim, "], got ", context.shape());
    Tensor ts = t.f32().reshape({-1});
    NUANCE_CHECK(ts.numel() == 1 || ts.numel() == B, "UNet: ", ts.numel(), " timesteps for a batch of ", B);
    if (ts.numel() == 1) ts = ts.expand({B}).contiguous();

    // Time embedding (sinusoidal, [cos, sin] with flip_sin_to_cos) (+ cond_proj(guidance embedding)) -> MLP.
    V sin_emb = constant<V>(timestep_embedding(ts, cfg.block_out_channels[0], cfg.flip_sin_to_cos, cfg.freq_shift));
    if (cfg.time_cond_proj_dim > 0 && extra.timestep_cond.defined()) {
        const Tensor& tc = extra.timestep_cond;
        NUANCE_CHECK(tc.dim() == 2 && (tc.size(0) == B || tc.size(0) == 1) && tc.size(1) == cfg.time_cond_proj_dim,
                     "UNet: expected the guidance embedding (timestep_cond) as [", B, ", ", cfg.time_cond_proj_dim,
                     "], got ", tc.shape());
        sin_emb = sin_emb + apply(time_cond_proj_, constant<V>(tc.f32()));
    }
    V emb = apply(time_embedding_, sin_emb);
    if (cfg.text_time) {
        NUANCE_CHECK(extra.text_embeds.defined() && extra.time_ids.defined(),
                     "SDXL UNet needs pooled text_embeds and time_ids");
        NUANCE_CHECK(extra.time_ids.numel() == B * 6, "SDXL UNet: time_ids ", extra.time_ids.shape(), " for batch ", B);
        const Tensor tid = timestep_embedding(extra.time_ids.reshape({-1}), cfg.addition_time_embed_dim, true, 0.0f)
                               .reshape({B, -1});
        const Tensor add_in = cat({extra.text_embeds.f32(), tid}, -1);
        NUANCE_CHECK(add_in.size(1) == cfg.add_in_dim, "SDXL UNet: pooled (", extra.text_embeds.size(-1),
                     ") + time ids (", tid.size(1), ") = ", add_in.size(1), " features, expected ", cfg.add_in_dim);
        emb = emb + apply(add_embedding_, constant<V>(add_in));
    }

    // Activations run channels-last from here on (nn/apply.h compute_layout), in training too.
    V h = apply(conv_in_, compute_layout(x));
    std::vector<V> skips{h};
    for (const auto& lv : down_) {
        for (size_t j = 0; j < lv.resnets.size(); ++j) {
            h = run(lv.resnets[j], h, emb);
            if (!lv.attentions.empty()) h = run(lv.attentions[j], h, context);
            skips.push_back(h);
        }
        if (!lv.down.empty()) {
            h = run(lv.down[0], h);
            skips.push_back(h);
        }
    }
    if (!extra.down_residuals.empty()) {
        NUANCE_CHECK(extra.down_residuals.size() == skips.size(), "UNet: ", extra.down_residuals.size(),
                     " control residuals for ", skips.size(), " skip connections");
        for (size_t i = 0; i < skips.size(); ++i) skips[i] = skips[i] + constant<V>(extra.down_residuals[i]);
    }
    h = run(mid_res0_, h, emb);
    if (!mid_attn_.empty()) {
        h = run(mid_attn_[0], h, context);
        h = run(mid_res_[0], h, emb);
    }
    if (extra.mid_residual.defined()) h = h + constant<V>(extra.mid_residual);
    for (const auto& lv : up_) {
        for (size_t j = 0; j < lv.resnets.size(); ++j) {
            h = cat(std::vector<V>{h, skips.back()}, 1);
            skips.pop_back();
            h = run(lv.resnets[j], h, emb);
            if (!lv.attentions.empty()) h = run(lv.attentions[j], h, context);
        }
        if (!lv.up.empty()) h = run(lv.up[0], h, skips.back().size(2), skips.back().size(3));
    }
    return apply(conv_out_, apply(norm_out_, h, /*silu=*/true)).contiguous();
}

Tensor UNet2DConditionModel::forward(const Tensor& x, const Tensor& t, const Tensor& context,
                                     const UNetExtra& extra) const {
    return forward_impl(x, t, context, extra);
}

Var UNet2DConditionModel::forward(const Var& x, const Tensor& t, const Var& context, const UNetExtra& extra) const {
    return forward_impl(x, t, context, extra);
}

}  // namespace nuance
