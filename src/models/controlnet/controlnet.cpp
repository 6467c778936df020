#include "models/controlnet/controlnet.h"

#include <nlohmann/json.hpp>

#include "ops/ops.h"

namespace nuance {

namespace {

using TensorMap = std::map<std::string, Tensor>;

const Tensor& need(const TensorMap& t, const std::string& k, int64_t dims) {
    auto it = t.find(k);
    NUANCE_CHECK_CODE(it != t.end(), Unsupported, "ControlNet checkpoint is missing tensor '", k, "'");
    NUANCE_CHECK_CODE(it->second.dim() == dims, Unsupported, "ControlNet tensor '", k, "': expected ", dims,
                      " dims, got ", it->second.shape());
    return it->second;
}
bool has(const TensorMap& t, const std::string& k) { return t.count(k) > 0; }
// Number of consecutive indices N for which a key `prefix + N + "." + suffix` exists (bounded by the file's keys).
int64_t count_indexed(const TensorMap& t, const std::string& prefix, const std::string& suffix) {
    int64_t n = 0;
    while (has(t, prefix + std::to_string(n) + "." + suffix)) ++n;
    return n;
}
int64_t count_prefixed(const TensorMap& t, const std::string& prefix) {
    int64_t n = 0;
    while (true) {
        const std::string p = prefix + std::to_string(n) + ".";
        auto it = t.lower_bound(p);
        if (it == t.end() || it->first.compare(0, p.size(), p) != 0) break;
        ++n;
    }
    return n;
}

}  // namespace

ControlNetConfig ControlNetConfig::detect(const TensorMap& t) {
    ControlNetConfig c;
    UNetConfig& u = c.unet;
    const Tensor& conv_in = need(t, "conv_in.weight", 4);
    u.in_channels = conv_in.size(1);
    u.out_channels = u.in_channels;
    u.time_embed_dim = need(t, "time_embedding.linear_1.weight", 2).size(0);
    const int64_t L = count_prefixed(t, "down_blocks.");
    NUANCE_CHECK_CODE(L >= 1 && L <= 8, Unsupported, "ControlNet checkpoint has ", L, " down blocks (expected 1..8)");
    u.layers_per_block = count_indexed(t, "down_blocks.0.resnets.", "conv1.weight");
    NUANCE_CHECK_CODE(u.layers_per_block >= 1 && u.layers_per_block <= 16, Unsupported, "ControlNet checkpoint: ",
                      u.layers_per_block, " resnets in down_blocks.0 (expected 1..16)");
    for (int64_t i = 0; i < L; ++i) {
        const std::string p = "down_blocks." + std::to_string(i) + ".";
        u.block_out_channels.push_back(need(t, p + "resnets.0.conv1.weight", 4).size(0));
        const bool attn = has(t, p + "attentions.0.proj_in.weight");
        u.down_attn.push_back(attn);
        u.down_depth.push_back(attn ? count_indexed(t, p + "attentions.0.transformer_blocks.", "norm1.weight") : 0);
        u.up_depth.push_back(0);
        if (attn) {
            u.use_linear_projection = t.at(p + "attentions.0.proj_in.weight").dim() == 2;
            u.cross_attention_dim = need(t, p + "attentions.0.transformer_blocks.0.attn2.to_k.weight", 2).size(1);
        }
    }
    u.mid_depth = has(t, "mid_block.attentions.0.proj_in.weight")
                      ? count_indexed(t, "mid_block.attentions.0.transformer_blocks.", "norm1.weight")
                      : 0;
    if (u.mid_depth > 0) {
        u.use_linear_projection = t.at("mid_block.attentions.0.proj_in.weight").dim() == 2;
        u.cross_attention_dim = need(t, "mid_block.attentions.0.transformer_blocks.0.attn2.to_k.weight", 2).size(1);
    }
    if (has(t, "add_embedding.linear_1.weight")) {
        u.text_time = true;
        u.add_in_dim = need(t, "add_embedding.linear_1.weight", 2).size(1);
        u.addition_time_embed_dim = 256;
    }
    for (int64_t i = 0; i < L; ++i)
        u.heads.push_back(u.use_linear_projection ? std::max<int64_t>(1, u.block_out_channels[(size_t)i] / 64) : 8);

    // Conditioning embedding: conv_in, then pairs (3x3 conv, 3x3 stride-2 conv to the next width), conv_out.
    const Tensor& cin = need(t, "controlnet_cond_embedding.conv_in.weight", 4);
    c.conditioning_channels = cin.size(1);
    c.embedding_channels = {cin.size(0)};
    const int64_t nb = count_indexed(t, "controlnet_cond_embedding.blocks.", "weight");
    NUANCE_CHECK_CODE(nb % 2 == 0 && nb <= 16, Unsupported, "ControlNet conditioning embedding has ", nb,
                      " blocks (expected an even number up to 16)");
    for (int64_t i = 1; i < nb; i += 2)
        c.embedding_channels.push_back(
            need(t, "controlnet_cond_embedding.blocks." + std::to_string(i) + ".weight", 4).size(0));
    const int64_t zeros = count_indexed(t, "controlnet_down_blocks.", "weight");
    const int64_t expect = 1 + L * u.layers_per_block + (L - 1);
    NUANCE_CHECK_CODE(zeros == expect, Unsupported, "ControlNet checkpoint has ", zeros,
                      " controlnet_down_blocks (zero convs), expected ", expect, " for ", L, " levels of ",
                      u.layers_per_block, " resnets");
    need(t, "controlnet_mid_block.weight", 4);
    return c;
}

ControlNetConfig ControlNetConfig::from_unet(const UNetConfig& u, std::vector<int64_t> embedding) {
    ControlNetConfig c;
    c.unet = u;
    c.embedding_channels = std::move(embedding);
    return c;
}

void ControlNetConfig::apply_json(const nlohmann::json& j) {
    unet.apply_json(j);
    if (j.contains("global_pool_conditions") && j["global_pool_conditions"].is_boolean())
        global_pool_conditions = j["global_pool_conditions"].get<bool>();
    if (j.contains("controlnet_conditioning_channel_order") && j["controlnet_conditioning_channel_order"].is_string())
        NUANCE_CHECK_CODE(j["controlnet_conditioning_channel_order"] == "rgb", Unsupported,
                          "ControlNet config: controlnet_conditioning_channel_order ",
                          j["controlnet_conditioning_channel_order"].dump(), " (only \"rgb\" is supported)");
}

std::string ControlNetConfig::describe() const {
    return str("ControlNet ", unet.describe(), " hint=", conditioning_channels, "ch embedding=", embedding_channels,
               global_pool_conditions ? " global-pool" : "");
}

ControlNetModel::ControlNetModel(const ControlNetConfig& c) : cfg_(c) {
    const UNetConfig& u = c.unet;
    const int64_t L = u.levels();
    NUANCE_CHECK(L >= 1 && (int64_t)u.heads.size() == L && (int64_t)u.down_attn.size() == L &&
                     (int64_t)u.down_depth.size() == L && !c.embedding_channels.empty(),
                 "ControlNet config is inconsistent: ", c.describe());
    const auto& ch = u.block_out_channels;
    const int64_t temb = u.time_embed_dim, g = u.norm_num_groups;
    NUANCE_CHECK(g > 0, "ControlNet config: norm_num_groups = ", g);
    for (int64_t i = 0; i < L; ++i) {
        NUANCE_CHECK(ch[(size_t)i] > 0 && ch[(size_t)i] % g == 0, "ControlNet: block width ", ch[(size_t)i],
                     " is not a multiple of norm_num_groups ", g);
        NUANCE_CHECK(u.heads[(size_t)i] > 0 && ch[(size_t)i] % u.heads[(size_t)i] == 0, "ControlNet: attention heads ",
                     u.heads, " do not divide the block widths ", ch);
    }
    conv_in_ = Conv2d(u.in_channels, ch[0], 3, 1, 1);
    time_embedding_ = TimestepEmbedding(ch[0], temb);
    if (u.text_time) add_embedding_ = TimestepEmbedding(u.add_in_dim, temb);
    const auto& e = c.embedding_channels;
    cond_in_ = Conv2d(c.conditioning_channels, e[0], 3, 1, 1);
    for (size_t i = 0; i + 1 < e.size(); ++i) {
        cond_blocks_.emplace_back(e[i], e[i], 3, 1, 1);
        cond_blocks_.emplace_back(e[i], e[i + 1], 3, 2, 1);
    }
    cond_out_ = Conv2d(e.back(), ch[0], 3, 1, 1);
    zero_down_.emplace_back(ch[0], ch[0], 1);
    int64_t prev = ch[0];
    for (int64_t i = 0; i < L; ++i) {
        UNetLevel lv;
        for (int64_t j = 0; j < u.layers_per_block; ++j) {
            lv.resnets.emplace_back(j == 0 ? prev : ch[i], ch[i], temb, g, u.norm_eps);
            if (u.down_attn[i])
                lv.attentions.emplace_back(ch[i], u.heads[i], u.down_depth[i], u.cross_attention_dim, g,
                                           u.use_linear_projection);
            zero_down_.emplace_back(ch[i], ch[i], 1);
        }
        if (i + 1 < L) {
            lv.down.emplace_back(ch[i]);
            zero_down_.emplace_back(ch[i], ch[i], 1);
        }
        prev = ch[i];
        down_.push_back(std::move(lv));
    }
    mid_res0_ = ResnetBlock(ch[L - 1], ch[L - 1], temb, g, u.norm_eps);
    if (u.mid_depth > 0) {
        mid_attn_.emplace_back(ch[L - 1], u.heads[L - 1], u.mid_depth, u.cross_attention_dim, g,
                               u.use_linear_projection);
        mid_res_.emplace_back(ch[L - 1], ch[L - 1], temb, g, u.norm_eps);
    }
    zero_mid_ = Conv2d(ch[L - 1], ch[L - 1], 1);
}

int64_t ControlNetModel::num_down_residuals() const { return (int64_t)zero_down_.size(); }

void ControlNetModel::visit(ParamVisitor& v) {
    v("conv_in", conv_in_);
    v("time_embedding", time_embedding_);
    if (cfg_.unet.text_time) v("add_embedding", add_embedding_);
    v("controlnet_cond_embedding.conv_in", cond_in_);
    v("controlnet_cond_embedding.blocks", cond_blocks_);
    v("controlnet_cond_embedding.conv_out", cond_out_);
    v("down_blocks", down_);
    v("mid_block.resnets.0", mid_res0_);
    if (!mid_attn_.empty()) {
        v("mid_block.attentions.0", mid_attn_[0]);
        v("mid_block.resnets.1", mid_res_[0]);
    }
    v("controlnet_down_blocks", zero_down_);
    v("controlnet_mid_block", zero_mid_);
}

ControlResiduals ControlNetModel::forward(const Tensor& x, const Tensor& t, const Tensor& context, const Tensor& hint,
                                          const UNetExtra& extra) const {
    const UNetConfig& u = cfg_.unet;
    NUANCE_CHECK(x.dim() == 4 && x.size(1) == u.in_channels, "ControlNet: expected latents [B, ", u.in_channels,
                 ", h, w], got ", x.shape());
    const int64_t B = x.size(0);
    NUANCE_CHECK(context.dim() == 3 && context.size(0) == B && context.size(2) == u.cross_attention_dim,
                 "ControlNet: expected context [", B, ", S, ", u.cross_attention_dim, "], got ", context.shape());
    NUANCE_CHECK(hint.dim() == 4 && (hint.size(0) == 1 || hint.size(0) == B) &&
                     hint.size(1) == cfg_.conditioning_channels,
                 "ControlNet: expected a control image [", B, ", ", cfg_.conditioning_channels, ", H, W], got ",
                 hint.shape());
    const int64_t f = int64_t{1} << (cfg_.embedding_channels.size() - 1);
    NUANCE_CHECK(hint.size(2) == x.size(2) * f && hint.size(3) == x.size(3) * f, "ControlNet: control image ",
                 hint.size(3), "x", hint.size(2), " does not match latents ", x.size(3), "x", x.size(2), " (expected ",
                 x.size(3) * f, "x", x.size(2) * f, ")");
    Tensor ts = t.f32().reshape({-1});
    NUANCE_CHECK(ts.numel() == 1 || ts.numel() == B, "ControlNet: ", ts.numel(), " timesteps for a batch of ", B);
    if (ts.numel() == 1) ts = ts.expand({B}).contiguous();
    Tensor emb = time_embedding_.forward(
        timestep_embedding(ts, u.block_out_channels[0], u.flip_sin_to_cos, u.freq_shift));
    if (u.text_time) {
        NUANCE_CHECK(extra.text_embeds.defined() && extra.time_ids.defined(),
                     "SDXL ControlNet needs pooled text_embeds and time_ids");
        NUANCE_CHECK(extra.time_ids.numel() == B * 6, "SDXL ControlNet: time_ids ", extra.time_ids.shape(),
                     " for batch ", B);
        const Tensor tid = timestep_embedding(extra.time_ids.reshape({-1}), u.addition_time_embed_dim, true, 0.0f)
                               .reshape({B, -1});
        const Tensor add_in = cat({extra.text_embeds.f32(), tid}, -1);
        NUANCE_CHECK(add_in.size(1) == u.add_in_dim, "SDXL ControlNet: pooled (", extra.text_embeds.size(-1),
                     ") + time ids (", tid.size(1), ") = ", add_in.size(1), " features, expected ", u.add_in_dim);
        emb = emb + add_embedding_.forward(add_in);
    }

    // Conditioning image -> latent-sized features: silu after every conv but the last.
    Tensor c = silu(cond_in_(hint.f32().channels_last()));
    for (const auto& b : cond_blocks_) c = silu(b(c));
    c = cond_out_(c);
    if (c.size(0) != B) c = c.expand({B, c.size(1), c.size(2), c.size(3)}).contiguous().channels_last();

    Tensor h = conv_in_(x.channels_last()) + c;
    std::vector<Tensor> skips{h};
    for (const auto& lv : down_) {
        for (size_t j = 0; j < lv.resnets.size(); ++j) {
            h = lv.resnets[j].forward(h, emb);
            if (!lv.attentions.empty()) h = lv.attentions[j].forward(h, context);
            skips.push_back(h);
        }
        if (!lv.down.empty()) {
            h = lv.down[0].forward(h);
            skips.push_back(h);
        }
    }
    h = mid_res0_.forward(h, emb);
    if (!mid_attn_.empty()) {
        h = mid_attn_[0].forward(h, context);
        h = mid_res_[0].forward(h, emb);
    }
    NUANCE_CHECK(skips.size() == zero_down_.size(), "ControlNet: ", skips.size(), " skips for ", zero_down_.size(),
                 " zero convs");
    ControlResiduals r;
    for (size_t i = 0; i < skips.size(); ++i) {
        Tensor d = zero_down_[i](skips[i]);
        if (cfg_.global_pool_conditions) d = mean(mean(d.contiguous(), 3, true), 2, true);
        r.down.push_back(d);
    }
    r.mid = zero_mid_(h);
    if (cfg_.global_pool_conditions) r.mid = mean(mean(r.mid.contiguous(), 3, true), 2, true);
    return r;
}

}  // namespace nuance
