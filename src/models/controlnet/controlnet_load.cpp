#include "models/controlnet/controlnet_load.h"

#include <nlohmann/json.hpp>
#include <set>

#include "backends/backend.h"
#include "io/json_file.h"
#include "io/weights.h"
#include "models/convert/original_parts.h"
#include "ops/ops.h"

namespace nuance {

namespace {

using TensorMap = std::map<std::string, Tensor>;

bool starts_with(const std::string& s, const std::string& p) { return s.compare(0, p.size(), p) == 0; }

// Original ControlNet names (without `control_model.`) -> diffusers ControlNetModel names.
TensorMap from_original(const TensorMap& t, const std::string& file) {
    TensorMap unet_part, out;
    std::map<int64_t, TensorMap> hint;  // input_hint_block.K.(weight|bias)
    for (const auto& [key, v] : t) {
        const auto parts = original_format::split_key(key);
        if (parts[0] == "input_hint_block") {
            const int64_t k = parts.size() == 3 ? original_format::parse_index(parts[1]) : -1;
            NUANCE_CHECK_CODE(k >= 0 && (parts[2] == "weight" || parts[2] == "bias"), Unsupported, "ControlNet '",
                              file, "': unrecognised tensor '", key, "'");
            hint[k][parts[2]] = v;
        } else if (parts[0] == "zero_convs") {
            const int64_t k = parts.size() == 4 && parts[2] == "0" ? original_format::parse_index(parts[1]) : -1;
            NUANCE_CHECK_CODE(k >= 0, Unsupported, "ControlNet '", file, "': unrecognised tensor '", key, "'");
            original_format::put(out, str("controlnet_down_blocks.", k, ".", parts[3]), v);
        } else if (parts[0] == "middle_block_out") {
            NUANCE_CHECK_CODE(parts.size() == 3 && parts[1] == "0", Unsupported, "ControlNet '", file,
                              "': unrecognised tensor '", key, "'");
            original_format::put(out, "controlnet_mid_block." + parts[2], v);
        } else {
            unet_part[key] = v;
        }
    }
    NUANCE_CHECK_CODE(hint.size() >= 2, Unsupported, "ControlNet '", file, "': ", hint.size(),
                      " convs in input_hint_block (expected conv_in, blocks, conv_out)");
    NUANCE_CHECK_CODE(hint.size() <= 18, Unsupported, "ControlNet '", file, "': ", hint.size(),
                      " convs in input_hint_block (at most 18)");
    int64_t i = 0;
    const int64_t n = (int64_t)hint.size();
    for (const auto& [k, wb] : hint) {
        const std::string dst = i == 0 ? "controlnet_cond_embedding.conv_in."
                                : i == n - 1 ? "controlnet_cond_embedding.conv_out."
                                             : str("controlnet_cond_embedding.blocks.", i - 1, ".");
        for (const auto& [name, v] : wb) original_format::put(out, dst + name, v);
        ++i;
    }
    for (auto& [k, v] : original_format::unet_from_original(unet_part, /*encoder_only=*/true))
        original_format::put(out, k, v);
    return out;
}

// ControlNet 1.0 "difference" files: each control_model.X holds (controlnet - base UNet) for the UNet's copy.
void add_base_weights(TensorMap& t, const ControlNetLoadOptions& o, const std::string& file) {
    NUANCE_CHECK_CODE(o.base_unet != nullptr, InvalidArgument, o.what, " '", file,
                      "' is a difference file (it holds deltas on top of a base model's UNet): load it together with "
                      "the SD model it was made from");
    auto& unet = const_cast<UNet2DConditionModel&>(*o.base_unet);  // only read: state_dict walks the params
    std::map<std::string, Tensor> base;
    for (auto& [name, v] : state_dict(unet)) base[name] = v;
    for (auto& [name, v] : t) {
        if (starts_with(name, "controlnet_")) continue;  // zero convs and the hint block are not deltas
        auto it = base.find(name);
        if (it == base.end()) continue;
        NUANCE_CHECK_CODE(it->second.shape() == v.shape(), InvalidArgument, o.what, " '", file, "': difference tensor '",
                          name, "' ", v.shape(), " does not fit the base ", o.base_desc, " (", it->second.shape(), ")");
        // FP8 / GGUF-quantized on either side (an fp8 base model): the values.
        v = (dequantize_weight(v).f32() + dequantize_weight(it->second).f32()).contiguous();
    }
}

TensorMap open_weights(const std::string& path, const ControlNetLoadOptions& o, std::string& file,
                       nlohmann::json& config) {
    if (is_directory(path)) {
        const std::string dir = is_directory(path + "/controlnet") && !file_exists(path + "/config.json")
                                    ? path + "/controlnet"
                                    : path;
        file = find_first_file(dir, {"diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.fp16.safetensors",
                                     "diffusion_pytorch_model.bin"});
        NUANCE_CHECK_CODE(!file.empty(), NotFound, o.what, " '", path,
                          "': no diffusion_pytorch_model.safetensors in the folder ", dir);
        if (auto c = read_optional_json_object(dir + "/config.json")) config = *c;
        return load_weights(file).tensors;
    }
    NUANCE_CHECK_CODE(path_exists(path), NotFound, o.what, " '", path, "' does not exist");
    file = path;
    return load_weights(path).tensors;
}

}  // namespace

std::unique_ptr<ControlNetModel> load_controlnet(const std::string& path, const ControlNetLoadOptions& o) {
    std::string file;
    nlohmann::json config = nlohmann::json::object();
    TensorMap t = open_weights(path, o, file, config);
    NUANCE_CHECK_CODE(!t.empty(), Unsupported, o.what, " '", file, "' holds no tensors");
    const bool difference = t.count("difference") > 0;
    t.erase("difference");
    // Original layout, with or without the `control_model.` prefix.
    TensorMap stripped;
    bool prefixed = false;
    for (const auto& [k, v] : t)
        if (starts_with(k, "control_model.")) prefixed = true;
    if (prefixed) {
        for (const auto& [k, v] : t) {
            NUANCE_CHECK_CODE(starts_with(k, "control_model."), Unsupported, o.what, " '", file,
                              "': tensor '", k, "' is outside control_model.");
            stripped[k.substr(14)] = v;
        }
        t = std::move(stripped);
    }
    if (t.count("lora_controlnet") || t.count("input_blocks.0.0.up") || t.count("input_hint_block.0.up"))
        fail(ErrorCode::Unsupported, o.what, " '", file, "' is a Control-LoRA (low-rank ControlNet): not supported");
    if (t.count("body.0.block1.weight") || t.count("adapter.body.0.resnets.0.block1.weight") ||
        (t.count("conv_in.weight") == 0 && t.count("body.0.in_conv.weight")))
        fail(ErrorCode::Unsupported, o.what, " '", file, "' is a T2I-Adapter, not a ControlNet: not supported");
    if (t.count("input_hint_block.0.weight")) t = from_original(t, file);
    NUANCE_CHECK_CODE(t.count("controlnet_cond_embedding.conv_in.weight"), Unsupported, o.what, " '", file,
                      "' is not a ControlNet: no control_model.input_hint_block.* nor controlnet_cond_embedding.* "
                      "tensors (first tensor: '", t.begin()->first, "')");
    if (difference) add_base_weights(t, o, file);

    ControlNetConfig c = ControlNetConfig::detect(t);
    if (c.unet.text_time && o.base_unet && o.base_unet->config().text_time)
        c.unet.addition_time_embed_dim = o.base_unet->config().addition_time_embed_dim;
    if (o.base_unet) {  // heads and groups cannot be seen in shapes: the UNet it is for knows them
        const UNetConfig& u = o.base_unet->config();
        if (u.block_out_channels == c.unet.block_out_channels) {
            c.unet.heads = u.heads;
            c.unet.norm_num_groups = u.norm_num_groups;
            c.unet.norm_eps = u.norm_eps;
            c.unet.flip_sin_to_cos = u.flip_sin_to_cos;
            c.unet.freq_shift = u.freq_shift;
        }
    }
    try {
        c.apply_json(config);
    } catch (const nlohmann::json::exception& e) {
        fail(ErrorCode::InvalidArgument, o.what, " '", path, "': config.json: ", e.what());
    }
    auto m = std::make_unique<ControlNetModel>(c);
    LoadOptions lo;
    lo.source = file;
    lo.matrices_as_stored = true;
    lo.matrix_compute = o.precision;
    const std::vector<std::string> unused = load_module(*m, t, lo);
    NUANCE_CHECK_CODE(unused.empty(), Unsupported, o.what, " '", file, "': ", unused.size(),
                      " tensors are not part of a ControlNet, e.g. '", unused.empty() ? "" : unused.front(), "'");
    return m;
}

std::string controlnet_family(const ControlNetConfig& c) {
    if (c.unet.text_time) return "SDXL";
    if (c.unet.cross_attention_dim == 768) return "SD1.x";
    if (c.unet.cross_attention_dim == 1024) return "SD2.x";
    return "custom";
}

void check_controlnet_fits(const ControlNetModel& cn, const std::string& cn_name, const UNet2DConditionModel& unet,
                           const std::string& model_desc) {
    const UNetConfig& a = cn.config().unet;
    const UNetConfig& b = unet.config();
    const bool fits = a.in_channels == b.in_channels && a.block_out_channels == b.block_out_channels &&
                      a.layers_per_block == b.layers_per_block && a.cross_attention_dim == b.cross_attention_dim &&
                      a.text_time == b.text_time && (!a.text_time || a.add_in_dim == b.add_in_dim);
    NUANCE_CHECK(fits, cn_name, " is a ControlNet for ", controlnet_family(cn.config()), " (context ",
                 a.cross_attention_dim, ", channels ", a.block_out_channels, a.text_time ? ", text_time" : "",
                 ") but the ", model_desc, " has a UNet with context ", b.cross_attention_dim, ", channels ",
                 b.block_out_channels, b.text_time ? ", text_time" : "", ": use a ControlNet made for this model");
}

}  // namespace nuance
