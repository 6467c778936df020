#include "train/train_arch.h"

#include "core/error.h"

namespace nuance {

namespace {

std::vector<int64_t> int_list(const nlohmann::json& j, const char* key, const char* what) {
    NUANCE_CHECK(j.contains(key) && j[key].is_array() && !j[key].empty(), what, ": '", key,
                 "' must be a non-empty list of integers");
    std::vector<int64_t> v;
    for (const auto& e : j[key]) {
        NUANCE_CHECK(e.is_number_integer() && e.get<int64_t>() > 0, what, ": '", key, "' has a bad entry ", e.dump());
        v.push_back(e.get<int64_t>());
    }
    return v;
}

int64_t int_value(const nlohmann::json& j, const char* key, int64_t def, const char* what) {
    if (!j.contains(key)) return def;
    NUANCE_CHECK(j[key].is_number_integer() && j[key].get<int64_t>() >= 0, what, ": '", key,
                 "' must be a non-negative integer, got ", j[key].dump());
    return j[key].get<int64_t>();
}

}  // namespace

UNetConfig unet_config_from_arch(const nlohmann::json& j, int64_t in_channels, int64_t cross_dim) {
    UNetConfig c;
    c.in_channels = c.out_channels = in_channels;
    c.block_out_channels = int_list(j, "block_out_channels", "UNet arch");
    const size_t L = c.block_out_channels.size();
    c.layers_per_block = int_value(j, "layers_per_block", 1, "UNet arch");
    NUANCE_CHECK(c.layers_per_block >= 1, "UNet arch: layers_per_block must be >= 1");
    const int64_t depth = int_value(j, "transformer_depth", 1, "UNet arch");
    c.down_attn.assign(L, true);
    if (j.contains("attention_levels")) {
        const nlohmann::json& a = j["attention_levels"];
        NUANCE_CHECK(a.is_array() && a.size() == L, "UNet arch: 'attention_levels' needs ", L, " booleans");
        for (size_t i = 0; i < L; ++i) c.down_attn[i] = a[i].is_boolean() && a[i].get<bool>();
    }
    for (size_t i = 0; i < L; ++i) c.down_depth.push_back(c.down_attn[i] ? depth : 0);
    for (size_t i = 0; i < L; ++i) c.up_depth.push_back(c.down_depth[L - 1 - i]);
    c.mid_depth = int_value(j, "mid_depth", depth, "UNet arch");
    const int64_t heads = int_value(j, "heads", 4, "UNet arch");
    for (int64_t ch : c.block_out_channels)
        NUANCE_CHECK(heads > 0 && ch % heads == 0, "UNet arch: ", ch, " channels are not divisible into ", heads, " heads");
    c.heads.assign(L, heads);
    c.cross_attention_dim = cross_dim;
    c.norm_num_groups = int_value(j, "norm_num_groups", 32, "UNet arch");
    for (int64_t ch : c.block_out_channels)
        NUANCE_CHECK(c.norm_num_groups > 0 && ch % c.norm_num_groups == 0, "UNet arch: ", ch,
                     " channels are not divisible into ", c.norm_num_groups, " norm groups");
    c.time_embed_dim = int_value(j, "time_embed_dim", 4 * c.block_out_channels[0], "UNet arch");
    return c;
}

ClipTextConfig clip_config_from_arch(const nlohmann::json& j) {
    ClipTextConfig c;
    c.hidden = int_value(j, "hidden", 128, "text encoder arch");
    c.layers = int_value(j, "layers", 4, "text encoder arch");
    c.heads = int_value(j, "heads", 4, "text encoder arch");
    c.intermediate = int_value(j, "intermediate", 4 * c.hidden, "text encoder arch");
    c.max_positions = int_value(j, "max_positions", 77, "text encoder arch");
    c.vocab = 49408;  // the built-in CLIP BPE vocabulary
    c.act = ClipAct::QuickGelu;  // SD1-family text encoder: the loader recognises the family by it
    NUANCE_CHECK(c.hidden > 0 && c.layers > 0 && c.heads > 0 && c.hidden % c.heads == 0 && c.max_positions >= 77,
                 "text encoder arch: hidden ", c.hidden, " layers ", c.layers, " heads ", c.heads, " positions ",
                 c.max_positions, " (hidden must divide into heads; positions >= 77, the SD prompt length)");
    return c;
}

AutoencoderKLConfig vae_config_from_arch(const nlohmann::json& j, int64_t image_channels) {
    AutoencoderKLConfig c;
    c.in_channels = c.out_channels = image_channels;
    c.block_out_channels = int_list(j, "block_out_channels", "VAE arch");
    c.layers_per_block = int_value(j, "layers_per_block", 1, "VAE arch");
    c.latent_channels = int_value(j, "latent_channels", 4, "VAE arch");
    c.norm_groups = int_value(j, "norm_num_groups", 32, "VAE arch");
    for (int64_t ch : c.block_out_channels)
        NUANCE_CHECK(c.norm_groups > 0 && ch % c.norm_groups == 0, "VAE arch: ", ch,
                     " channels are not divisible into ", c.norm_groups, " norm groups");
    NUANCE_CHECK(c.layers_per_block >= 1 && c.latent_channels >= 1, "VAE arch: bad layers_per_block/latent_channels");
    c.mid_block_attention = !j.contains("mid_block_attention") || j["mid_block_attention"].get<bool>();
    c.scaling_factor = 1.0f;  // measured on the data after training
    return c;
}

nlohmann::json unet_diffusers_config(const UNetConfig& c, int64_t sample_size) {
    nlohmann::json j;
    j["_class_name"] = "UNet2DConditionModel";
    j["in_channels"] = c.in_channels;
    j["out_channels"] = c.out_channels;
    j["block_out_channels"] = c.block_out_channels;
    j["layers_per_block"] = c.layers_per_block;
    j["attention_head_dim"] = c.heads;  // diffusers' legacy name: head counts
    j["cross_attention_dim"] = c.cross_attention_dim;
    j["norm_num_groups"] = c.norm_num_groups;
    j["norm_eps"] = c.norm_eps;
    j["flip_sin_to_cos"] = c.flip_sin_to_cos;
    j["freq_shift"] = c.freq_shift;
    j["sample_size"] = sample_size;
    nlohmann::json down = nlohmann::json::array(), up = nlohmann::json::array();
    for (size_t i = 0; i < c.down_attn.size(); ++i) down.push_back(c.down_attn[i] ? "CrossAttnDownBlock2D" : "DownBlock2D");
    for (size_t i = 0; i < c.up_depth.size(); ++i) up.push_back(c.up_depth[i] > 0 ? "CrossAttnUpBlock2D" : "UpBlock2D");
    j["down_block_types"] = down;
    j["up_block_types"] = up;
    j["transformer_layers_per_block"] = c.down_depth;
    return j;
}

nlohmann::json vae_diffusers_config(const AutoencoderKLConfig& c, int64_t sample_size) {
    nlohmann::json j;
    j["_class_name"] = "AutoencoderKL";
    j["in_channels"] = c.in_channels;
    j["out_channels"] = c.out_channels;
    j["block_out_channels"] = c.block_out_channels;
    j["layers_per_block"] = c.layers_per_block;
    j["latent_channels"] = c.latent_channels;
    j["norm_num_groups"] = c.norm_groups;
    j["scaling_factor"] = c.scaling_factor;
    j["shift_factor"] = c.shift_factor;
    j["use_quant_conv"] = c.use_quant_conv;
    j["use_post_quant_conv"] = c.use_post_quant_conv;
    j["mid_block_add_attention"] = c.mid_block_attention;
    j["sample_size"] = sample_size;
    return j;
}

nlohmann::json clip_hf_config(const ClipTextConfig& c) {
    nlohmann::json j;
    j["architectures"] = {"CLIPTextModel"};
    j["hidden_size"] = c.hidden;
    j["intermediate_size"] = c.intermediate;
    j["num_hidden_layers"] = c.layers;
    j["num_attention_heads"] = c.heads;
    j["max_position_embeddings"] = c.max_positions;
    j["vocab_size"] = c.vocab;
    j["hidden_act"] = clip_act_name(c.act);
    j["layer_norm_eps"] = c.eps;
    return j;
}

}  // namespace nuance
