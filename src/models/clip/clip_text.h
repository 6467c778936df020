// CLIP text encoder (Radford et al. 2021), transformers' CLIPTextModel / CLIPTextModelWithProjection.
// Used by SD1.x (CLIP-L), SD2.x (OpenCLIP-H), SDXL (CLIP-L + OpenCLIP-bigG), SD3 and Flux (CLIP-L).
// Key names are transformers' (text_model.embeddings..., text_model.encoder.layers.N..., text_projection).
// Shape letters: B batch, L tokens (<= max_positions, 77 for SD), D hidden, P projection dim.
#pragma once
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "nn/layers.h"

namespace nuance {

enum class ClipAct { QuickGelu, Gelu, GeluTanh };

// "quick_gelu" | "gelu" | "gelu_new" / "gelu_pytorch_tanh" (transformers hidden_act names).
ClipAct parse_clip_act(const std::string& name);
const char* clip_act_name(ClipAct a);

struct ClipTextConfig {
    int64_t vocab = 49408;
    int64_t hidden = 768;
    int64_t intermediate = 3072;
    int64_t layers = 12;
    int64_t heads = 12;
    int64_t max_positions = 77;
    ClipAct act = ClipAct::QuickGelu;
    int64_t projection_dim = 0;  // 0 = no text_projection (CLIPTextModel)
    float eps = 1e-5f;

    // Widths/depths from the tensors under `prefix` (e.g. "cond_stage_model.transformer."). Two things are not in
    // the shapes; they get the rules below and should be overridden from text_encoder/config.json when there is one
    // (apply_hf_config):
    //   heads = default_heads(hidden): hidden / 64 when 64 divides hidden (CLIP-B 512 -> 8, CLIP-L 768 -> 12,
    //           OpenCLIP-H 1024 -> 16, bigG 1280 -> 20), else 4 (the tiny test models), else 1.
    //   act   = default_act(hidden): quick_gelu for hidden 768 (OpenAI CLIP-L in SD1/SDXL/SD3/Flux), else gelu
    //           (OpenCLIP: SD2, SDXL's second encoder).
    static ClipTextConfig detect(const std::map<std::string, Tensor>& tensors, const std::string& prefix = "");
    static int64_t default_heads(int64_t hidden);
    static ClipAct default_act(int64_t hidden);

    // Takes num_attention_heads, hidden_act and layer_norm_eps from a transformers config.json object; checks that
    // the widths it states (hidden_size, intermediate_size, num_hidden_layers, vocab_size, max_position_embeddings)
    // agree with the detected ones. A CLIPModel config (with "text_config") is accepted too.
    void apply_hf_config(const nlohmann::json& cfg);
};

struct ClipAttention : Module {
    Linear q_proj, k_proj, v_proj, out_proj;
    int64_t heads = 1;
    bool causal = true;  // the text encoder's mask; the vision tower (models/clip_vision) attends to every token
    ClipAttention() = default;
    ClipAttention(int64_t dim, int64_t heads_)
        : q_proj(dim, dim), k_proj(dim, dim), v_proj(dim, dim), out_proj(dim, dim), heads(heads_) {}
    Tensor operator()(const Tensor& x) const;  // self-attention, [B, L, D] -> [B, L, D]
    void visit(ParamVisitor& v) override {
        v("q_proj", q_proj); v("k_proj", k_proj); v("v_proj", v_proj); v("out_proj", out_proj);
    }
};

struct ClipMlp : Module {
    Linear fc1, fc2;
    ClipAct act = ClipAct::QuickGelu;
    ClipMlp() = default;
    ClipMlp(int64_t dim, int64_t inner, ClipAct act_) : fc1(dim, inner), fc2(inner, dim), act(act_) {}
    Tensor operator()(const Tensor& x) const;
    void visit(ParamVisitor& v) override { v("fc1", fc1); v("fc2", fc2); }
};

// Pre-LN transformer block.
struct ClipEncoderLayer : Module {
    ClipAttention self_attn;
    LayerNorm layer_norm1;
    ClipMlp mlp;
    LayerNorm layer_norm2;
    ClipEncoderLayer() = default;
    explicit ClipEncoderLayer(const ClipTextConfig& c)
        : self_attn(c.hidden, c.heads), layer_norm1(c.hidden, c.eps), mlp(c.hidden, c.intermediate, c.act),
          layer_norm2(c.hidden, c.eps) {}
    Tensor operator()(Tensor x) const;
    void visit(ParamVisitor& v) override {
        v("self_attn", self_attn); v("layer_norm1", layer_norm1); v("mlp", mlp); v("layer_norm2", layer_norm2);
    }
};

struct ClipTextOutput {
    std::vector<Tensor> hidden_states;  // [0] = token + position embeddings, [i] = after layer i (no final LN)
    Tensor last_hidden_state;           // [B, L, D] final_layer_norm(hidden_states.back())
    Tensor pooled;                      // [B, D] last_hidden_state at the first occurrence of max(ids) (first EOS)
    Tensor text_embeds;                 // [B, P] text_projection(pooled); undefined without a projection
};

class ClipTextModel : public Module {
public:
    explicit ClipTextModel(const ClipTextConfig& c);
    const ClipTextConfig& config() const { return cfg_; }

    // ids: [B, L] integer ids, L <= max_positions. Causal mask only (SD pipelines pass no padding mask).
    // stop_at_layer = n in [1, layers] runs only the first n layers (hidden_states then has n + 1 entries and
    // last_hidden_state / pooled / text_embeds are taken from layer n's output); -1 runs them all.
    // token_embeds [B, L, D] (when given) replaces the token-embedding lookup, e.g. embed_tokens(ids) with
    // textual-inversion vectors written in; ids still decide the pooled position.
    ClipTextOutput forward(const Tensor& ids, int stop_at_layer = -1, const Tensor& token_embeds = {}) const;
    // The token-embedding rows of ids, F32 [B, L, D].
    Tensor embed_tokens(const Tensor& ids) const;

    // Conditioning for the SD pipelines: the output of layer (layers - clip_skip + 1), so clip_skip 1 = last layer,
    // 2 = penultimate; with final_ln the final LayerNorm is applied (SD1/SD2 clip skip), without it not (SDXL uses
    // encode_sd(ids, 2, false) from both encoders).
    Tensor encode_sd(const Tensor& ids, int clip_skip = 1, bool final_ln = true, const Tensor& token_embeds = {}) const;

    void visit(ParamVisitor& v) override;

    Param token_embedding;     // [V, D]
    Param position_embedding;  // [max_positions, D]
    std::vector<ClipEncoderLayer> layers;
    LayerNorm final_layer_norm;
    Linear text_projection;  // [P, D], no bias; only when projection_dim > 0

private:
    ClipTextConfig cfg_;
};

// The tensors under `prefix` with the prefix removed (views, no copies), e.g. to load
// "cond_stage_model.transformer.text_model.*" from an SD1 single file.
std::map<std::string, Tensor> strip_prefix(const std::map<std::string, Tensor>& tensors, const std::string& prefix);

}  // namespace nuance
