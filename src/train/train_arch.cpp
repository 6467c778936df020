#include "train/train_arch.h"

#include "core/error.h"

namespace nuance {

namespace {

// Every size an arch can set is bounded: a typo like "layers_per_block": 100000 must be an error naming the key,
// not an allocation that takes the machine down. The bounds are well above any model this trainer is for.
constexpr int64_t kMaxLevels = 8;        // UNet/VAE resolution levels
constexpr int64_t kMaxChannels = 4096;   // per level, and the text encoder's hidden size
constexpr int64_t kMaxLayers = 16;       // layers per block, transformer depth
constexpr int64_t kMaxHeads = 64;
constexpr int64_t kMaxWide = 16384;      // MLP width, time embedding
constexpr int64_t kMaxTextLayers = 48;
constexpr int64_t kMaxPositions = 1024;
constexpr int64_t kMaxLatentChannels = 64;

// Unknown keys are errors (a misspelt key would otherwise be ignored silently).
void check_keys(const nlohmann::json& j, std::initializer_list<const char*> known, const char* what) {
    NUANCE_CHECK(j.is_object(), what, " must be a JSON object, got ", j.dump());
    for (const auto& [k, v] : j.items()) {
        bool ok = false;
        std::string list;
        for (const char* n : known) {
            ok = ok || k == n;
            list += (list.empty() ? "" : ", ") + std::string(n);
        }
        NUANCE_CHECK(ok, what, ": unknown key '", k, "' (known keys: ", list, ")");
    }
}

std::vector<int64_t> int_list(const nlohmann::json& j, const char* key, const char* what) {
    NUANCE_CHECK(j.contains(key) && j[key].is_array() && !j[key].empty() && (int64_t)j[key].size() <= kMaxLevels,
                 what, ": '", key, "' must be a list of 1..", kMaxLevels, " integers, got ",
                 j.contains(key) ? j[key].dump() : std::string("nothing"));
    std::vector<int64_t> v;
    for (const auto& e : j[key]) {
        NUANCE_CHECK(e.is_number_integer() && e.get<int64_t>() > 0 && e.get<int64_t>() <= kMaxChannels, what, ": '",
                     key, "' has a bad entry ", e.dump(), " (integers in 1..", kMaxChannels, ")");
        v.push_back(e.get<int64_t>());
    }
    return v;
}

int64_t int_value(const nlohmann::json& j, const char* key, int64_t def, const char* what, int64_t lo, int64_t hi) {
    if (!j.contains(key)) return def;
    const auto& v = j[key];
    NUANCE_CHECK(v.is_number_integer() && v.get<int64_t>() >= lo && v.get<int64_t>() <= hi, what, ": '", key,
                 "' must be an integer in ", lo, "..", hi, ", got ", v.dump());
    return v.get<int64_t>();
}

bool bool_value(const nlohmann::json& j, const char* key, bool def, const char* what) {
    if (!j.contains(key)) return def;
    NUANCE_CHECK(j[key].is_boolean(), what, ": '", key, "' must be true or false, got ", j[key].dump());
    return j[key].get<bool>();
}

}  // namespace

UNetConfig unet_config_from_arch(const nlohmann::json& j, int64_t in_channels, int64_t cross_dim) {
    check_keys(j, {"block_out_channels", "layers_per_block", "transformer_depth", "attention_levels", "mid_depth",
                   "heads", "norm_num_groups", "time_embed_dim"},
               "UNet arch");
    UNetConfig c;
    c.in_channels = c.out_channels = in_channels;
    c.block_out_channels = int_list(j, "block_out_channels", "UNet arch");
    const size_t L = c.block_out_channels.size();
    c.layers_per_block = int_value(j, "layers_per_block", 1, "UNet arch", 1, kMaxLayers);
    const int64_t depth = int_value(j, "transformer_depth", 1, "UNet arch", 0, kMaxLayers);
    c.down_attn.assign(L, true);
    if (j.contains("attention_levels")) {
        const nlohmann::json& a = j["attention_levels"];
        NUANCE_CHECK(a.is_array() && a.size() == L, "UNet arch: 'attention_levels' needs ", L, " booleans, got ",
                     a.dump());
        for (size_t i = 0; i < L; ++i) {
            NUANCE_CHECK(a[i].is_boolean(), "UNet arch: 'attention_levels' has a bad entry ", a[i].dump(),
                         " (true or false)");
            c.down_attn[i] = a[i].get<bool>();
        }
    }
    for (size_t i = 0; i < L; ++i) c.down_depth.push_back(c.down_attn[i] ? depth : 0);
    for (size_t i = 0; i < L; ++i) c.up_depth.push_back(c.down_depth[L - 1 - i]);
    c.mid_depth = int_value(j, "mid_depth", depth, "UNet arch", 0, kMaxLayers);
    const int64_t heads = int_value(j, "heads", 4, "UNet arch", 1, kMaxHeads);
    for (int64_t ch : c.block_out_channels)
        NUANCE_CHECK(heads > 0 && ch % heads == 0, "UNet arch: ", ch, " channels are not divisible into ", heads, " heads");
    c.heads.assign(L, heads);
    c.cross_attention_dim = cross_dim;
    c.norm_num_groups = int_value(j, "norm_num_groups", 32, "UNet arch", 1, kMaxChannels);
    for (int64_t ch : c.block_out_channels)
        NUANCE_CHECK(c.norm_num_groups > 0 && ch % c.norm_num_groups == 0, "UNet arch: ", ch,
                     " channels are not divisible into ", c.norm_num_groups, " norm groups");
    c.time_embed_dim = int_value(j, "time_embed_dim", 4 * c.block_out_channels[0], "UNet arch", 1, kMaxWide);
    return c;
}

ClipTextConfig clip_config_from_arch(const nlohmann::json& j) {
    check_keys(j, {"hidden", "layers", "heads", "intermediate", "max_positions"}, "text encoder arch");
    ClipTextConfig c;
    c.hidden = int_value(j, "hidden", 128, "text encoder arch", 1, kMaxChannels);
    c.layers = int_value(j, "layers", 4, "text encoder arch", 1, kMaxTextLayers);
    c.heads = int_value(j, "heads", 4, "text encoder arch", 1, kMaxHeads);
    c.intermediate = int_value(j, "intermediate", 4 * c.hidden, "text encoder arch", 1, kMaxWide);
    c.max_positions = int_value(j, "max_positions", 77, "text encoder arch", 77, kMaxPositions);
    c.vocab = 49408;  // the built-in CLIP BPE vocabulary
    c.act = ClipAct::QuickGelu;  // SD1-family text encoder: the loader recognises the family by it
    NUANCE_CHECK(c.hidden > 0 && c.layers > 0 && c.heads > 0 && c.hidden % c.heads == 0 && c.max_positions >= 77,
                 "text encoder arch: hidden ", c.hidden, " layers ", c.layers, " heads ", c.heads, " positions ",
                 c.max_positions, " (hidden must divide into heads; positions >= 77, the SD prompt length)");
    return c;
}

AutoencoderKLConfig vae_config_from_arch(const nlohmann::json& j, int64_t image_channels) {
    check_keys(j, {"block_out_channels", "layers_per_block", "latent_channels", "norm_num_groups", "mid_block_attention"},
               "VAE arch");
    AutoencoderKLConfig c;
    c.in_channels = c.out_channels = image_channels;
    c.block_out_channels = int_list(j, "block_out_channels", "VAE arch");
    c.layers_per_block = int_value(j, "layers_per_block", 1, "VAE arch", 1, kMaxLayers);
    c.latent_channels = int_value(j, "latent_channels", 4, "VAE arch", 1, kMaxLatentChannels);
    c.norm_groups = int_value(j, "norm_num_groups", 32, "VAE arch", 1, kMaxChannels);
    for (int64_t ch : c.block_out_channels)
        NUANCE_CHECK(c.norm_groups > 0 && ch % c.norm_groups == 0, "VAE arch: ", ch,
                     " channels are not divisible into ", c.norm_groups, " norm groups");
    NUANCE_CHECK(c.layers_per_block >= 1 && c.latent_channels >= 1, "VAE arch: bad layers_per_block/latent_channels");
    c.mid_block_attention = bool_value(j, "mid_block_attention", true, "VAE arch");
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
    if (c.time_cond_proj_dim > 0) j["time_cond_proj_dim"] = c.time_cond_proj_dim;
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
