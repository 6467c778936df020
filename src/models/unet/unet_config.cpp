#include "models/unet/unet_config.h"

#include <nlohmann/json.hpp>
#include <set>

namespace nuance {

namespace {
bool has(const std::map<std::string, Tensor>& t, const std::string& k) { return t.count(k) > 0; }
const Tensor& need(const std::map<std::string, Tensor>& t, const std::string& k) {
    auto it = t.find(k);
    NUANCE_CHECK(it != t.end(), "UNet checkpoint is missing tensor '", k, "'");
    return it->second;
}
// Number of consecutive indices N for which `prefix + N + suffix` exists.
int64_t count_indexed(const std::map<std::string, Tensor>& t, const std::string& prefix, const std::string& suffix) {
    int64_t n = 0;
    while (true) {
        const std::string p = prefix + std::to_string(n) + ".";
        auto it = t.lower_bound(p);
        if (it == t.end() || it->first.compare(0, p.size(), p) != 0) break;
        if (!suffix.empty() && !has(t, p + suffix)) break;
        ++n;
    }
    return n;
}
}  // namespace

UNetConfig UNetConfig::detect(const std::map<std::string, Tensor>& t) {
    UNetConfig c;
    const Tensor& conv_in = need(t, "conv_in.weight");
    NUANCE_CHECK(conv_in.dim() == 4, "UNet tensor 'conv_in.weight': expected 4 dims, got ", conv_in.shape());
    c.in_channels = conv_in.size(1);
    c.out_channels = need(t, "conv_out.weight").size(0);
    c.time_embed_dim = need(t, "time_embedding.linear_1.weight").size(0);
    const int64_t L = count_indexed(t, "down_blocks.", "");
    NUANCE_CHECK(L >= 1, "UNet checkpoint has no down_blocks");
    c.layers_per_block = count_indexed(t, "down_blocks.0.resnets.", "conv1.weight");
    NUANCE_CHECK(c.layers_per_block >= 1, "UNet checkpoint: down_blocks.0 has no resnets");
    for (int64_t i = 0; i < L; ++i) {
        const std::string p = "down_blocks." + std::to_string(i) + ".";
        c.block_out_channels.push_back(need(t, p + "resnets.0.conv1.weight").size(0));
        const bool attn = has(t, p + "attentions.0.proj_in.weight");
        c.down_attn.push_back(attn);
        c.down_depth.push_back(attn ? count_indexed(t, p + "attentions.0.transformer_blocks.", "norm1.weight") : 0);
        if (attn) {
            const Tensor& pin = need(t, p + "attentions.0.proj_in.weight");
            c.use_linear_projection = pin.dim() == 2;
            c.cross_attention_dim = need(t, p + "attentions.0.transformer_blocks.0.attn2.to_k.weight").size(1);
        }
    }
    NUANCE_CHECK(count_indexed(t, "up_blocks.", "") == L, "UNet checkpoint: ", L, " down blocks but ",
                 count_indexed(t, "up_blocks.", ""), " up blocks");
    for (int64_t i = 0; i < L; ++i) {
        const std::string p = "up_blocks." + std::to_string(i) + ".";
        c.up_depth.push_back(has(t, p + "attentions.0.proj_in.weight")
                                 ? count_indexed(t, p + "attentions.0.transformer_blocks.", "norm1.weight")
                                 : 0);
    }
    c.mid_depth = has(t, "mid_block.attentions.0.proj_in.weight")
                      ? count_indexed(t, "mid_block.attentions.0.transformer_blocks.", "norm1.weight")
                      : 0;
    if (c.mid_depth > 0) {
        c.use_linear_projection = need(t, "mid_block.attentions.0.proj_in.weight").dim() == 2;
        c.cross_attention_dim = need(t, "mid_block.attentions.0.transformer_blocks.0.attn2.to_k.weight").size(1);
    }
    if (has(t, "add_embedding.linear_1.weight")) {
        c.text_time = true;
        c.add_in_dim = t.at("add_embedding.linear_1.weight").size(1);
        // SDXL base: 2816 = 1280 (pooled bigG) + 6 * 256; refiner: 2560 = 1280 + 5 * 256 (aesthetic score variant
        // is out of scope). Tiny models must state addition_time_embed_dim in their config.
        c.addition_time_embed_dim = 256;
    }
    if (has(t, "time_embedding.cond_proj.weight")) {
        const Tensor& w = t.at("time_embedding.cond_proj.weight");
        NUANCE_CHECK(w.dim() == 2 && w.size(0) == c.block_out_channels[0] && w.size(1) >= 1 && w.size(1) <= 65536,
                     "UNet tensor 'time_embedding.cond_proj.weight': expected [", c.block_out_channels[0],
                     ", D] with D in 1..65536, got ", w.shape());
        c.time_cond_proj_dim = w.size(1);
    }
    // Heads: SD1.x uses 8 heads everywhere (conv projections); SD2.x/SDXL use 64-wide heads (linear projections).
    for (int64_t i = 0; i < L; ++i) {
        const int64_t ch = c.block_out_channels[i];
        c.heads.push_back(c.use_linear_projection ? std::max<int64_t>(1, ch / 64) : 8);
    }
    return c;
}

void UNetConfig::apply_json(const nlohmann::json& j) {
    // A string in the file is an Error here, not a json::type_error (found by fuzz/fuzz_diffusers_json); values
    // that do not divide the widths are refused when the config is validated.
    auto head_count = [&](const nlohmann::json& h) {
        NUANCE_CHECK(h.is_number_integer(), "UNet config: head count ", h.dump(), " is not an integer");
        return h.get<int64_t>();
    };
    auto heads_from = [&](const nlohmann::json& v) {
        if (v.is_number_integer()) {
            heads.assign(block_out_channels.size(), head_count(v));
        } else if (v.is_array()) {
            NUANCE_CHECK(v.size() == block_out_channels.size(), "UNet config: ", v.size(), " head counts for ",
                         block_out_channels.size(), " levels");
            heads.clear();
            for (const auto& h : v) heads.push_back(head_count(h));
        }
    };
    if (j.contains("num_attention_heads") && !j["num_attention_heads"].is_null()) heads_from(j["num_attention_heads"]);
    else if (j.contains("attention_head_dim")) heads_from(j["attention_head_dim"]);
    if (j.contains("norm_num_groups") && j["norm_num_groups"].is_number_integer())
        norm_num_groups = j["norm_num_groups"].get<int64_t>();
    if (j.contains("norm_eps") && j["norm_eps"].is_number()) norm_eps = j["norm_eps"].get<float>();
    if (j.contains("flip_sin_to_cos") && j["flip_sin_to_cos"].is_boolean()) flip_sin_to_cos = j["flip_sin_to_cos"];
    if (j.contains("freq_shift") && j["freq_shift"].is_number()) freq_shift = j["freq_shift"].get<float>();
    if (j.contains("addition_time_embed_dim") && j["addition_time_embed_dim"].is_number_integer())
        addition_time_embed_dim = j["addition_time_embed_dim"].get<int64_t>();
}

std::string UNetConfig::describe() const {
    return str("UNet in=", in_channels, " channels=", block_out_channels, " layers/block=", layers_per_block,
               " depth=", down_depth, " mid=", mid_depth, " heads=", heads, " context=", cross_attention_dim,
               use_linear_projection ? " linear-proj" : " conv-proj", text_time ? " text_time" : "",
               time_cond_proj_dim > 0 ? str(" guidance-embedding=", time_cond_proj_dim) : std::string());
}

}  // namespace nuance
