// CLIP text transformer, as transformers' modeling_clip.py (CLIPTextTransformer).
// Shape letters: B batch, L tokens, D hidden, I intermediate, P projection dim, V vocabulary.
#include "models/clip/clip_text.h"

#include <nlohmann/json.hpp>

#include "autograd/nn_layers.h"
#include "models/clip/clip_forward.h"

namespace nuance {

ClipAct parse_clip_act(const std::string& name) {
    if (name == "quick_gelu") return ClipAct::QuickGelu;
    if (name == "gelu") return ClipAct::Gelu;
    if (name == "gelu_new" || name == "gelu_pytorch_tanh" || name == "gelu_fast") return ClipAct::GeluTanh;
    fail(ErrorCode::Unsupported, "CLIP text encoder: unsupported hidden_act '", name,
         "' (expected quick_gelu, gelu or gelu_new)");
}

const char* clip_act_name(ClipAct a) {
    switch (a) {
        case ClipAct::QuickGelu: return "quick_gelu";
        case ClipAct::Gelu: return "gelu";
        case ClipAct::GeluTanh: return "gelu_new";
    }
    return "?";
}

// ---- config ----

int64_t ClipTextConfig::default_heads(int64_t hidden) {
    if (hidden % 64 == 0) return hidden / 64;
    return hidden % 4 == 0 ? 4 : 1;
}

ClipAct ClipTextConfig::default_act(int64_t hidden) { return hidden == 768 ? ClipAct::QuickGelu : ClipAct::Gelu; }

ClipTextConfig ClipTextConfig::detect(const std::map<std::string, Tensor>& t, const std::string& prefix) {
    auto get = [&](const std::string& name, int64_t ndim) -> const Tensor& {
        auto it = t.find(prefix + name);
        NUANCE_CHECK_CODE(it != t.end(), NotFound, "CLIP text encoder: tensor '", prefix + name, "' not found");
        NUANCE_CHECK(it->second.dim() == ndim, "CLIP text encoder: tensor '", prefix + name, "' has shape ",
                     it->second.shape(), ", expected ", ndim, " dims");
        return it->second;
    };
    ClipTextConfig c;
    const Tensor& tok = get("text_model.embeddings.token_embedding.weight", 2);
    c.vocab = tok.size(0);
    c.hidden = tok.size(1);
    const Tensor& pos = get("text_model.embeddings.position_embedding.weight", 2);
    c.max_positions = pos.size(0);
    NUANCE_CHECK(pos.size(1) == c.hidden, "CLIP text encoder: position embedding ", pos.shape(),
                 " does not match hidden size ", c.hidden);
    NUANCE_CHECK(c.vocab > 0 && c.hidden > 0 && c.max_positions > 0, "CLIP text encoder: empty embeddings ",
                 tok.shape(), ", ", pos.shape());

    c.layers = 0;
    while (t.count(prefix + "text_model.encoder.layers." + std::to_string(c.layers) + ".self_attn.q_proj.weight"))
        ++c.layers;
    NUANCE_CHECK_CODE(c.layers > 0, NotFound, "CLIP text encoder: no layers found (expected '", prefix,
                      "text_model.encoder.layers.0.self_attn.q_proj.weight')");
    c.intermediate = get("text_model.encoder.layers.0.mlp.fc1.weight", 2).size(0);

    auto proj = t.find(prefix + "text_projection.weight");
    c.projection_dim = proj != t.end() && proj->second.dim() == 2 ? proj->second.size(0) : 0;

    c.heads = default_heads(c.hidden);
    c.act = default_act(c.hidden);
    return c;
}

void ClipTextConfig::apply_hf_config(const nlohmann::json& j_in) {
    NUANCE_CHECK(j_in.is_object(), "CLIP text config: expected a JSON object");
    const nlohmann::json& j = j_in.contains("text_config") && j_in["text_config"].is_object() ? j_in["text_config"]
                                                                                              : j_in;
    auto agree = [&](const char* key, int64_t detected) {
        if (!j.contains(key) || j[key].is_null()) return;
        NUANCE_CHECK(j[key].is_number_integer(), "CLIP text config: '", key, "' is not an integer");
        const int64_t v = j[key].get<int64_t>();
        NUANCE_CHECK(v == detected, "CLIP text config: ", key, " = ", v, " but the weights have ", detected);
    };
    agree("hidden_size", hidden);
    agree("intermediate_size", intermediate);
    agree("num_hidden_layers", layers);
    agree("vocab_size", vocab);
    agree("max_position_embeddings", max_positions);
    if (j.contains("num_attention_heads") && !j["num_attention_heads"].is_null()) {
        NUANCE_CHECK(j["num_attention_heads"].is_number_integer(), "CLIP text config: 'num_attention_heads' is not "
                                                                   "an integer");
        const int64_t h = j["num_attention_heads"].get<int64_t>();
        NUANCE_CHECK(h > 0 && hidden % h == 0, "CLIP text config: num_attention_heads = ", h,
                     " does not divide hidden size ", hidden);
        heads = h;
    }
    if (j.contains("hidden_act") && !j["hidden_act"].is_null()) {
        NUANCE_CHECK(j["hidden_act"].is_string(), "CLIP text config: 'hidden_act' is not a string");
        act = parse_clip_act(j["hidden_act"].get<std::string>());
    }
    if (j.contains("layer_norm_eps") && j["layer_norm_eps"].is_number()) {
        const double e = j["layer_norm_eps"].get<double>();
        NUANCE_CHECK(e > 0 && e < 1, "CLIP text config: layer_norm_eps = ", e, " is out of range");
        eps = (float)e;
    }
}

// ---- blocks ----

template <class V>
V run(const ClipAttention& a, const V& x) {
    return apply(a.out_proj, multi_head_attention(apply(a.q_proj, x), apply(a.k_proj, x), apply(a.v_proj, x), a.heads,
                                                  a.causal, 0.0f, a.q_proj.weight.compute));
}

template <class V>
V run(const ClipMlp& m, const V& x) {
    V h = apply(m.fc1, x);  // [B, L, I]
    switch (m.act) {
        case ClipAct::QuickGelu: h = quick_gelu(h); break;
        case ClipAct::Gelu: h = gelu(h); break;
        case ClipAct::GeluTanh: h = gelu_tanh(h); break;
    }
    return apply(m.fc2, h);
}

template <class V>
V run(const ClipEncoderLayer& l, V x) {
    x = x + run(l.self_attn, apply(l.layer_norm1, x));
    x = x + run(l.mlp, apply(l.layer_norm2, x));
    return x;
}

Tensor ClipAttention::operator()(const Tensor& x) const { return run(*this, x); }
Tensor ClipMlp::operator()(const Tensor& x) const { return run(*this, x); }
Tensor ClipEncoderLayer::operator()(Tensor x) const { return run(*this, x); }

template <class V>
V run_layers(const ClipTextModel& m, const Tensor& ids, int64_t n, const Tensor& token_embeds,
             std::vector<V>* hidden) {
    const ClipTextConfig& c = m.config();
    NUANCE_CHECK(ids.defined() && ids.dim() == 2 && !dtype_is_float(ids.dtype()),
                 "CLIP text encoder: ids must be integers [B, L], got ", ids.defined() ? ids.str() : "undefined");
    const int64_t B = ids.size(0), L = ids.size(1);
    NUANCE_CHECK(L >= 1 && L <= c.max_positions, "CLIP text encoder: ", L, " tokens, the model takes 1..",
                 c.max_positions);
    NUANCE_CHECK(n >= 1 && n <= c.layers, "CLIP text encoder: ", n, " layers asked for, the model has ", c.layers);
    NUANCE_CHECK(m.token_embedding.defined(), "CLIP text encoder: weights are not loaded");
    if (token_embeds.defined())
        NUANCE_CHECK(token_embeds.shape() == Shape({B, L, c.hidden}), "CLIP text encoder: token embeddings ",
                     token_embeds.shape(), " do not fit ids ", ids.shape(), " and width ", c.hidden);
    const V* tag = nullptr;  // picks param_value's overload (nn/apply.h)
    const V tok =
        token_embeds.defined() ? constant<V>(token_embeds) : embedding(ids, param_value(m.token_embedding, tag));
    V x = tok + param_value(m.position_embedding, tag).slice(0, 0, L);  // [B, L, D]
    if (hidden) hidden->push_back(x);
    for (int64_t i = 0; i < n; ++i) {
        x = run(m.layers[(size_t)i], x);
        if (hidden) hidden->push_back(x);
    }
    return x;
}

#define NUANCE_CLIP_INSTANTIATE(V)                   \
    template V run(const ClipAttention&, const V&);    \
    template V run(const ClipMlp&, const V&);          \
    template V run(const ClipEncoderLayer&, V);        \
    template V run_layers(const ClipTextModel&, const Tensor&, int64_t, const Tensor&, std::vector<V>*);
NUANCE_CLIP_INSTANTIATE(Tensor)
NUANCE_CLIP_INSTANTIATE(Var)
#undef NUANCE_CLIP_INSTANTIATE

// ---- model ----

ClipTextModel::ClipTextModel(const ClipTextConfig& c)
    : token_embedding({c.vocab, c.hidden}), position_embedding({c.max_positions, c.hidden}),
      final_layer_norm(c.hidden, c.eps), cfg_(c) {
    NUANCE_CHECK(c.hidden > 0 && c.heads > 0 && c.hidden % c.heads == 0, "CLIP text encoder: hidden size ", c.hidden,
                 " is not divisible into ", c.heads, " heads");
    NUANCE_CHECK(c.layers > 0 && c.vocab > 0 && c.intermediate > 0 && c.max_positions > 0 && c.projection_dim >= 0,
                 "CLIP text encoder: bad config (layers ", c.layers, ", vocab ", c.vocab, ", intermediate ",
                 c.intermediate, ", positions ", c.max_positions, ")");
    layers.reserve((size_t)c.layers);
    for (int64_t i = 0; i < c.layers; ++i) layers.emplace_back(c);
    if (c.projection_dim > 0) text_projection = Linear(c.hidden, c.projection_dim, /*bias=*/false);
}

void ClipTextModel::visit(ParamVisitor& v) {
    v("text_model.embeddings.token_embedding.weight", token_embedding);
    v("text_model.embeddings.position_embedding.weight", position_embedding);
    v("text_model.encoder.layers", layers);
    v("text_model.final_layer_norm", final_layer_norm);
    if (cfg_.projection_dim > 0) v("text_projection", text_projection);
}

Tensor ClipTextModel::embed_tokens(const Tensor& ids) const {
    NUANCE_CHECK(token_embedding.defined(), "CLIP text encoder: weights are not loaded");
    return embedding(ids, *token_embedding).f32().contiguous();
}

ClipTextOutput ClipTextModel::forward(const Tensor& ids, int stop_at_layer, const Tensor& token_embeds) const {
    NUANCE_CHECK(ids.defined() && ids.dim() == 2, "CLIP text encoder: ids must be [B, L], got ",
                 ids.defined() ? ids.shape() : Shape{});
    NUANCE_CHECK(!dtype_is_float(ids.dtype()), "CLIP text encoder: ids must be integers, got ", ids.str());
    const int64_t B = ids.size(0), L = ids.size(1);
    NUANCE_CHECK(L >= 1 && L <= cfg_.max_positions, "CLIP text encoder: ", L, " tokens, the model takes 1..",
                 cfg_.max_positions);
    const int64_t n = stop_at_layer < 0 ? cfg_.layers : stop_at_layer;
    NUANCE_CHECK(n >= 1 && n <= cfg_.layers, "CLIP text encoder: stop_at_layer ", stop_at_layer, " is outside 1..",
                 cfg_.layers);
    NUANCE_CHECK(token_embedding.defined(), "CLIP text encoder: weights are not loaded");

    ClipTextOutput out;
    out.hidden_states.reserve((size_t)n + 1);
    out.last_hidden_state = final_layer_norm(run_layers(*this, ids, n, token_embeds, &out.hidden_states));

    // pooled[b] = last_hidden_state[b, argmax(ids[b])] (first maximum: the first EOS, 49407 is the largest id).
    const std::vector<int64_t> v = ids.to_ids();
    out.pooled = Tensor::empty({B, cfg_.hidden}, DType::F32);
    for (int64_t b = 0; b < B; ++b) {
        int64_t arg = 0;
        for (int64_t j = 1; j < L; ++j)
            if (v[(size_t)(b * L + j)] > v[(size_t)(b * L + arg)]) arg = j;
        out.pooled[b].copy_(out.last_hidden_state[b][arg]);
    }
    if (cfg_.projection_dim > 0) out.text_embeds = text_projection(out.pooled);  // [B, P]
    return out;
}

Tensor ClipTextModel::encode_sd(const Tensor& ids, int clip_skip, bool final_ln, const Tensor& token_embeds) const {
    NUANCE_CHECK(clip_skip >= 1 && clip_skip <= cfg_.layers, "CLIP text encoder: clip_skip ", clip_skip,
                 " is outside 1..", cfg_.layers);
    ClipTextOutput o = forward(ids, (int)(cfg_.layers - clip_skip + 1), token_embeds);
    return final_ln ? o.last_hidden_state : o.hidden_states.back();
}

std::map<std::string, Tensor> strip_prefix(const std::map<std::string, Tensor>& tensors, const std::string& prefix) {
    if (prefix.empty()) return tensors;
    std::map<std::string, Tensor> out;
    for (auto it = tensors.lower_bound(prefix); it != tensors.end() && it->first.compare(0, prefix.size(), prefix) == 0;
         ++it)
        out.emplace(it->first.substr(prefix.size()), it->second);
    return out;
}

}  // namespace nuance
