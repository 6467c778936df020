// CLIP ViT image encoder (Radford et al. 2021), transformers' CLIPVisionModel / CLIPVisionModelWithProjection: the
// image tower of CLIP score and of IP-Adapter. Key names are transformers' (vision_model.embeddings.*,
// vision_model.pre_layrnorm, vision_model.encoder.layers.N.*, vision_model.post_layernorm, visual_projection), as in
// openai/clip-vit-large-patch14's model.safetensors (a whole CLIPModel: its text_model.* is ignored here).
// Shape letters: B batch, S image side, P patch side, G = S / P grid side, T = 1 + G^2 tokens, D hidden, E projection.
//   patch conv (no bias) -> tokens; [class_embedding] ++ tokens; + position embeddings; pre_layrnorm
//   -> pre-LN encoder layers (no mask) -> last_hidden_state; pooled = post_layernorm(last[:, 0]);
//   image_embeds = visual_projection(pooled) (no bias).
#pragma once
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "models/clip/clip_text.h"

namespace nuance {

struct ClipVisionConfig {
    int64_t hidden = 1024;
    int64_t intermediate = 4096;
    int64_t layers = 24;
    int64_t heads = 16;
    int64_t patch = 14;
    int64_t image_size = 224;
    int64_t projection_dim = 768;  // 0 = no visual_projection (CLIPVisionModel)
    ClipAct act = ClipAct::QuickGelu;
    float eps = 1e-5f;

    int64_t grid() const { return image_size / patch; }
    int64_t tokens() const { return grid() * grid() + 1; }

    // Widths/depths from the tensors under `prefix`. Not in the shapes, and overridden by apply_hf_config:
    //   heads = 16 for hidden 1280 (OpenCLIP ViT-H) and 1664 (ViT-bigG), else hidden / 64 (ViT-B 768 -> 12,
    //           ViT-L 1024 -> 16), else 4 (tiny test models), else 1.
    //   act   = quick_gelu for hidden 768 / 1024 (OpenAI ViT-B, ViT-L), else gelu (OpenCLIP H / bigG).
    // Errors name the missing/ill-shaped tensor.
    static ClipVisionConfig detect(const std::map<std::string, Tensor>& tensors, const std::string& prefix = "");
    // num_attention_heads, hidden_act, layer_norm_eps from a transformers config (a CLIPModel config's
    // "vision_config" too); the widths it states must agree with the detected ones.
    void apply_hf_config(const nlohmann::json& cfg);
};

struct ClipVisionOutput {
    std::vector<Tensor> hidden_states;  // [0] = pre_layrnorm(embeddings), [i] = after layer i; each [B, T, D]
    Tensor last_hidden_state;           // [B, T, D] hidden_states.back() (no post-LN)
    Tensor pooled;                      // [B, D] post_layernorm(last_hidden_state[:, 0])
    Tensor image_embeds;                // [B, E] visual_projection(pooled); undefined without a projection
};

class ClipVisionModel : public Module {
public:
    explicit ClipVisionModel(const ClipVisionConfig& c);
    const ClipVisionConfig& config() const { return cfg_; }

    // pixel_values: [B, 3, S, S] (S = image_size), normalised as CLIPImageProcessor does. stop_at_layer = n in
    // [1, layers] runs only the first n layers (IP-Adapter Plus wants hidden_states[-2]); -1 runs them all.
    ClipVisionOutput forward(const Tensor& pixel_values, int stop_at_layer = -1) const;

    void visit(ParamVisitor& v) override;

    Param class_embedding;     // [D]
    Conv2d patch_embedding;    // [D, 3, P, P], stride P, no bias
    Param position_embedding;  // [T, D]
    LayerNorm pre_layrnorm;    // (sic: transformers' spelling)
    std::vector<ClipEncoderLayer> layers;
    LayerNorm post_layernorm;
    Linear visual_projection;  // [E, D], no bias; only when projection_dim > 0

private:
    ClipVisionConfig cfg_;
};

// Config from the tensors (+ the HF config object when not null), the model, its weights: the usual load of a
// CLIPVisionModelWithProjection / CLIPModel file. `source` names the file in errors.
ClipVisionModel load_clip_vision(const std::map<std::string, Tensor>& tensors, const std::string& source,
                                 const nlohmann::json& hf_config);

}  // namespace nuance
