// Text encoders of original checkpoints -> transformers CLIPTextModel[WithProjection] names.
//
// HF layout (SD1 cond_stage_model.transformer.*, SDXL conditioner.embedders.0.transformer.*): already transformers
// names, with or without the `text_model.` level (old transformers versions had none).
//
// OpenCLIP layout (SD2 cond_stage_model.model.*, SDXL conditioner.embedders.1.model.*):
//   token_embedding.weight, positional_embedding      -> text_model.embeddings.{token,position}_embedding.weight
//   transformer.resblocks.N.ln_1 / ln_2                -> text_model.encoder.layers.N.layer_norm1 / layer_norm2
//   transformer.resblocks.N.attn.in_proj_{weight,bias} -> self_attn.{q,k,v}_proj (rows [q; k; v], split in 3)
//   transformer.resblocks.N.attn.out_proj              -> self_attn.out_proj
//   transformer.resblocks.N.mlp.c_fc / c_proj          -> mlp.fc1 / mlp.fc2
//   ln_final                                           -> text_model.final_layer_norm
//   text_projection [D, P] (used as x @ P)             -> text_projection.weight [P, D] (a Linear: transposed)
// SD2's file has 24 resblocks where diffusers' converted SD2 text encoder has 23 (diffusers drops the last one
// because SD2 conditions on the penultimate layer): all are kept here and the pipeline picks the layer.
// logit_scale, attn_mask and anything else outside the text tower (visual.*) are dropped.
#include <array>
#include <utility>

#include "backends/backend.h"
#include "core/error.h"
#include "models/convert/original_parts.h"

namespace nuance::original_format {
namespace {

constexpr std::array<std::pair<const char*, const char*>, 6> kLayerNames = {{
    {"ln_1.", "layer_norm1."},
    {"ln_2.", "layer_norm2."},
    {"attn.out_proj.", "self_attn.out_proj."},
    {"mlp.c_fc.", "mlp.fc1."},
    {"mlp.c_proj.", "mlp.fc2."},
    {"attn.in_proj_", ""},  // handled separately (split / concat)
}};

constexpr std::array<std::pair<const char*, const char*>, 4> kTopNames = {{
    {"token_embedding.weight", "text_model.embeddings.token_embedding.weight"},
    {"positional_embedding", "text_model.embeddings.position_embedding.weight"},
    {"ln_final.weight", "text_model.final_layer_norm.weight"},
    {"ln_final.bias", "text_model.final_layer_norm.bias"},
}};

constexpr const char* kQkv[3] = {"q_proj", "k_proj", "v_proj"};

}  // namespace

TensorMap clip_from_hf(const TensorMap& hf) {
    TensorMap out;
    for (const auto& [key, t] : hf) {
        if (key.ends_with("position_ids")) continue;  // buffer, non-persistent in recent transformers
        if (key.starts_with("text_model.") || key == "text_projection.weight") {
            put(out, key, t);
        } else if (key.starts_with("embeddings.") || key.starts_with("encoder.") ||
                   key.starts_with("final_layer_norm.")) {
            put(out, "text_model." + key, t);  // transformers < 4.x CLIPTextModel had no text_model level
        }
        // anything else (e.g. logit_scale) is not part of the text model
    }
    return out;
}

TensorMap clip_from_open_clip(const TensorMap& oc) {
    TensorMap out;
    for (const auto& [key, t] : oc) {
        bool top = false;
        for (const auto& [from, to] : kTopNames) {
            if (key == from) {
                put(out, to, t);
                top = true;
            }
        }
        if (top) continue;
        if (key == "text_projection") {
            NUANCE_CHECK(t.dim() == 2, "text encoder: 'text_projection': expected a 2-d [D, P] matrix, got ",
                         shape_str(t.shape()));
            put(out, "text_projection.weight", dequantize_weight(t).transpose(0, 1).contiguous());  // FP8: values
            continue;
        }
        if (!key.starts_with("transformer.resblocks.")) continue;  // logit_scale, attn_mask, visual.*, ...
        auto parts = split_key(key);
        int64_t n = parts.size() > 3 ? parse_index(parts[2]) : -1;
        NUANCE_CHECK_CODE(n >= 0, Unsupported, "text encoder: unrecognised OpenCLIP tensor '", key, "'");
        std::string rest = join_key(parts, 3);
        std::string layer = str("text_model.encoder.layers.", n, ".");
        if (rest == "attn.in_proj_weight" || rest == "attn.in_proj_bias") {
            NUANCE_CHECK(t.dim() >= 1 && t.size(0) % 3 == 0, "text encoder: '", key,
                         "': expected a fused q/k/v tensor with 3*D rows, got ", shape_str(t.shape()));
            const int64_t d = t.size(0) / 3;
            const char* what = rest.ends_with("weight") ? ".weight" : ".bias";
            for (int q = 0; q < 3; ++q) put(out, str(layer, "self_attn.", kQkv[q], what), t.narrow(0, q * d, d));
            continue;
        }
        bool done = false;
        for (const auto& [from, to] : kLayerNames) {
            if (*to && rest.starts_with(from)) {
                put(out, layer + to + rest.substr(std::string_view(from).size()), t);
                done = true;
                break;
            }
        }
        NUANCE_CHECK_CODE(done, Unsupported, "text encoder: unrecognised OpenCLIP tensor '", key, "'");
    }
    return out;
}

TensorMap clip_to_open_clip(const TensorMap& hf) {
    TensorMap out;
    std::map<std::string, std::array<Tensor, 3>> qkv;  // "<layer>.<weight|bias>" -> q, k, v
    for (const auto& [key, t] : hf) {
        bool top = false;
        for (const auto& [from, to] : kTopNames) {
            if (key == to) {
                put(out, from, t);
                top = true;
            }
        }
        if (top) continue;
        if (key == "text_projection.weight") {
            NUANCE_CHECK(t.dim() == 2, "text encoder: 'text_projection.weight': expected 2-d, got ",
                         shape_str(t.shape()));
            put(out, "text_projection", dequantize_weight(t).transpose(0, 1).contiguous());  // FP8: values
            continue;
        }
        auto parts = split_key(key);
        int64_t n = parts.size() > 5 && key.starts_with("text_model.encoder.layers.") ? parse_index(parts[3]) : -1;
        NUANCE_CHECK_CODE(n >= 0, Unsupported, "text encoder: no OpenCLIP name for '", key, "'");
        std::string rest = join_key(parts, 4);
        std::string block = str("transformer.resblocks.", n, ".");
        bool done = false;
        for (int q = 0; q < 3 && !done; ++q) {
            std::string p = str("self_attn.", kQkv[q], ".");
            if (rest == p + "weight" || rest == p + "bias") {
                qkv[block + (rest.ends_with("weight") ? "attn.in_proj_weight" : "attn.in_proj_bias")][(size_t)q] = t;
                done = true;
            }
        }
        for (const auto& [from, to] : kLayerNames) {
            if (!done && *to && rest.starts_with(to)) {
                put(out, block + from + rest.substr(std::string_view(to).size()), t);
                done = true;
            }
        }
        NUANCE_CHECK_CODE(done, Unsupported, "text encoder: no OpenCLIP name for '", key, "'");
    }
    for (const auto& [key, parts] : qkv) {
        for (int q = 0; q < 3; ++q)
            NUANCE_CHECK(parts[(size_t)q].defined(), "text encoder: '", key, "' needs q, k and v; ", kQkv[q],
                         " is missing");
        put(out, key, concat_rows({parts[0], parts[1], parts[2]}));
    }
    return out;
}

}  // namespace nuance::original_format
