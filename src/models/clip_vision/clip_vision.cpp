#include "models/clip_vision/clip_vision.h"

#include <nlohmann/json.hpp>

namespace nuance {

ClipVisionConfig ClipVisionConfig::detect(const std::map<std::string, Tensor>& t, const std::string& prefix) {
    auto get = [&](const std::string& name, int64_t ndim) -> const Tensor& {
        auto it = t.find(prefix + name);
        NUANCE_CHECK_CODE(it != t.end(), NotFound, "CLIP vision encoder: tensor '", prefix + name, "' not found");
        NUANCE_CHECK(it->second.dim() == ndim, "CLIP vision encoder: tensor '", prefix + name, "' has shape ",
                     it->second.shape(), ", expected ", ndim, " dims");
        return it->second;
    };
    ClipVisionConfig c;
    c.hidden = get("vision_model.embeddings.class_embedding", 1).size(0);
    const Tensor& pe = get("vision_model.embeddings.patch_embedding.weight", 4);
    NUANCE_CHECK(pe.size(0) == c.hidden && pe.size(1) == 3 && pe.size(2) == pe.size(3) && pe.size(2) > 0 &&
                     pe.size(2) <= 1024,
                 "CLIP vision encoder: patch_embedding ", pe.shape(), " is not [", c.hidden, ", 3, P, P]");
    c.patch = pe.size(2);
    const Tensor& pos = get("vision_model.embeddings.position_embedding.weight", 2);
    NUANCE_CHECK(pos.size(1) == c.hidden, "CLIP vision encoder: position_embedding ", pos.shape(),
                 " does not match hidden size ", c.hidden);
    int64_t g = 0;
    while (g <= 4096 && g * g + 1 < pos.size(0)) ++g;
    NUANCE_CHECK(g >= 1 && g * g + 1 == pos.size(0), "CLIP vision encoder: position_embedding has ", pos.size(0),
                 " rows, not 1 + a square number of patches");
    c.image_size = g * c.patch;
    c.layers = 0;
    while (t.count(prefix + "vision_model.encoder.layers." + std::to_string(c.layers) + ".self_attn.q_proj.weight"))
        ++c.layers;
    NUANCE_CHECK_CODE(c.layers > 0, NotFound, "CLIP vision encoder: no layers found (expected '", prefix,
                      "vision_model.encoder.layers.0.self_attn.q_proj.weight')");
    c.intermediate = get("vision_model.encoder.layers.0.mlp.fc1.weight", 2).size(0);
    auto proj = t.find(prefix + "visual_projection.weight");
    c.projection_dim = proj != t.end() && proj->second.dim() == 2 ? proj->second.size(0) : 0;
    c.heads = (c.hidden == 1280 || c.hidden == 1664) ? 16 : ClipTextConfig::default_heads(c.hidden);
    c.act = (c.hidden == 768 || c.hidden == 1024) ? ClipAct::QuickGelu : ClipAct::Gelu;
    return c;
}

void ClipVisionConfig::apply_hf_config(const nlohmann::json& j_in) {
    NUANCE_CHECK(j_in.is_object(), "CLIP vision config: expected a JSON object");
    const nlohmann::json& j =
        j_in.contains("vision_config") && j_in["vision_config"].is_object() ? j_in["vision_config"] : j_in;
    auto agree = [&](const char* key, int64_t detected) {
        if (!j.contains(key) || j[key].is_null()) return;
        NUANCE_CHECK(j[key].is_number_integer(), "CLIP vision config: '", key, "' is not an integer");
        const int64_t v = j[key].get<int64_t>();
        NUANCE_CHECK(v == detected, "CLIP vision config: ", key, " = ", v, " but the weights have ", detected);
    };
    agree("hidden_size", hidden);
    agree("intermediate_size", intermediate);
    agree("num_hidden_layers", layers);
    agree("patch_size", patch);
    agree("image_size", image_size);
    if (j.contains("num_attention_heads") && !j["num_attention_heads"].is_null()) {
        NUANCE_CHECK(j["num_attention_heads"].is_number_integer(),
                     "CLIP vision config: 'num_attention_heads' is not an integer");
        const int64_t h = j["num_attention_heads"].get<int64_t>();
        NUANCE_CHECK(h > 0 && hidden % h == 0, "CLIP vision config: num_attention_heads = ", h,
                     " does not divide hidden size ", hidden);
        heads = h;
    }
    if (j.contains("hidden_act") && !j["hidden_act"].is_null()) {
        NUANCE_CHECK(j["hidden_act"].is_string(), "CLIP vision config: 'hidden_act' is not a string");
        act = parse_clip_act(j["hidden_act"].get<std::string>());
    }
    if (j.contains("layer_norm_eps") && j["layer_norm_eps"].is_number()) {
        const double e = j["layer_norm_eps"].get<double>();
        NUANCE_CHECK(e > 0 && e < 1, "CLIP vision config: layer_norm_eps = ", e, " is out of range");
        eps = (float)e;
    }
}

ClipVisionModel::ClipVisionModel(const ClipVisionConfig& c)
    : class_embedding({c.hidden}), patch_embedding(3, c.hidden, c.patch, c.patch, 0, false),
      position_embedding({c.tokens(), c.hidden}), pre_layrnorm(c.hidden, c.eps), post_layernorm(c.hidden, c.eps),
      cfg_(c) {
    NUANCE_CHECK(c.hidden > 0 && c.heads > 0 && c.hidden % c.heads == 0, "CLIP vision encoder: hidden size ",
                 c.hidden, " is not divisible into ", c.heads, " heads");
    NUANCE_CHECK(c.layers > 0 && c.layers <= 1000 && c.intermediate > 0 && c.patch > 0 && c.image_size >= c.patch &&
                     c.image_size % c.patch == 0 && c.projection_dim >= 0,
                 "CLIP vision encoder: bad config (layers ", c.layers, ", intermediate ", c.intermediate, ", patch ",
                 c.patch, ", image size ", c.image_size, ", projection ", c.projection_dim, ")");
    ClipTextConfig lc;  // the encoder layer is the text model's, without its causal mask
    lc.hidden = c.hidden;
    lc.intermediate = c.intermediate;
    lc.heads = c.heads;
    lc.act = c.act;
    lc.eps = c.eps;
    for (int64_t i = 0; i < c.layers; ++i) {
        layers.emplace_back(lc);
        layers.back().self_attn.causal = false;
    }
    if (c.projection_dim > 0) visual_projection = Linear(c.hidden, c.projection_dim, false);
}

void ClipVisionModel::visit(ParamVisitor& v) {
    v("vision_model.embeddings.class_embedding", class_embedding);
    v("vision_model.embeddings.patch_embedding", patch_embedding);
    v("vision_model.embeddings.position_embedding.weight", position_embedding);
    v("vision_model.pre_layrnorm", pre_layrnorm);
    v("vision_model.encoder.layers", layers);
    v("vision_model.post_layernorm", post_layernorm);
    if (cfg_.projection_dim > 0) v("visual_projection", visual_projection);
}

ClipVisionOutput ClipVisionModel::forward(const Tensor& px, int stop_at_layer) const {
    const int64_t S = cfg_.image_size, D = cfg_.hidden;
    NUANCE_CHECK(px.defined() && px.dim() == 4 && px.size(1) == 3 && px.size(2) == S && px.size(3) == S,
                 "CLIP vision encoder: pixel_values must be [B, 3, ", S, ", ", S, "], got ",
                 px.defined() ? px.str() : std::string("an undefined tensor"));
    NUANCE_CHECK(px.size(0) >= 1, "CLIP vision encoder: empty batch ", px.shape());
    NUANCE_CHECK(stop_at_layer == -1 || (stop_at_layer >= 1 && stop_at_layer <= cfg_.layers),
                 "CLIP vision encoder: stop_at_layer ", stop_at_layer, " is not in 1..", cfg_.layers, " (or -1)");
    const int64_t B = px.size(0), G = cfg_.grid();
    const Tensor patches = patch_embedding(px.f32()).reshape({B, D, G * G}).transpose(1, 2);  // [B, G^2, D]
    const Tensor cls = class_embedding.value.reshape({1, 1, D}).expand({B, 1, D});
    Tensor h = cat({cls, patches}, 1) + position_embedding.value.unsqueeze(0);
    ClipVisionOutput out;
    h = pre_layrnorm(h);
    out.hidden_states.push_back(h);
    const int64_t n = stop_at_layer < 0 ? cfg_.layers : stop_at_layer;
    for (int64_t i = 0; i < n; ++i) {
        h = layers[(size_t)i](h);
        out.hidden_states.push_back(h);
    }
    out.last_hidden_state = h;
    out.pooled = post_layernorm(h.select(1, 0).contiguous());
    if (cfg_.projection_dim > 0) out.image_embeds = visual_projection(out.pooled);
    return out;
}

ClipVisionModel load_clip_vision(const std::map<std::string, Tensor>& tensors, const std::string& source,
                                 const nlohmann::json& hf_config) {
    ClipVisionConfig c = ClipVisionConfig::detect(tensors);
    if (!hf_config.is_null()) c.apply_hf_config(hf_config);
    ClipVisionModel m(c);
    LoadOptions o;
    o.source = source;
    load_module(m, tensors, o);
    return m;
}

}  // namespace nuance
