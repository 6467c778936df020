#include "models/flux/flux_config.h"

#include <nlohmann/json.hpp>
#include <numeric>

namespace nuance {

namespace {

bool has(const std::map<std::string, Tensor>& t, const std::string& k) { return t.count(k) > 0; }

const Tensor& need(const std::map<std::string, Tensor>& t, const std::string& k) {
    auto it = t.find(k);
    NUANCE_CHECK(it != t.end(), "Flux transformer checkpoint is missing tensor '", k, "'");
    return it->second;
}

// A 2-D [out, in] weight; its shape is checked so a stray 1-D or 4-D tensor never sizes the model.
const Tensor& need_matrix(const std::map<std::string, Tensor>& t, const std::string& k) {
    const Tensor& w = need(t, k);
    NUANCE_CHECK(w.dim() == 2 && w.size(0) > 0 && w.size(1) > 0, "Flux tensor '", k,
                 "': expected a [out, in] matrix, got ", w.shape());
    return w;
}

// Number of consecutive indices N for which `prefix + N + "."` starts some key.
int64_t count_indexed(const std::map<std::string, Tensor>& t, const std::string& prefix) {
    int64_t n = 0;
    while (true) {
        const std::string p = prefix + std::to_string(n) + ".";
        auto it = t.lower_bound(p);
        if (it == t.end() || it->first.compare(0, p.size(), p) != 0) break;
        ++n;
    }
    return n;
}

constexpr int64_t kMaxBlocks = 1024;  // a hostile file cannot make the loader build millions of empty blocks

}  // namespace

FluxConfig FluxConfig::detect(const std::map<std::string, Tensor>& t) {
    FluxConfig c;
    const Tensor& x_emb = need_matrix(t, "x_embedder.weight");
    c.hidden = x_emb.size(0);
    c.in_channels = x_emb.size(1);
    const Tensor& proj_out = need_matrix(t, "proj_out.weight");
    c.out_channels = proj_out.size(0);
    NUANCE_CHECK(proj_out.size(1) == c.hidden, "Flux tensor 'proj_out.weight': expected [", c.out_channels, ", ",
                 c.hidden, "], got ", proj_out.shape());
    const Tensor& ctx = need_matrix(t, "context_embedder.weight");
    c.joint_attention_dim = ctx.size(1);
    c.pooled_projection_dim = need_matrix(t, "time_text_embed.text_embedder.linear_1.weight").size(1);
    c.timestep_channels = need_matrix(t, "time_text_embed.timestep_embedder.linear_1.weight").size(1);
    c.guidance_embeds = has(t, "time_text_embed.guidance_embedder.linear_1.weight");
    c.num_double = count_indexed(t, "transformer_blocks.");
    c.num_single = count_indexed(t, "single_transformer_blocks.");
    NUANCE_CHECK(c.num_double <= kMaxBlocks && c.num_single <= kMaxBlocks, "Flux checkpoint: ", c.num_double,
                 " double and ", c.num_single, " single blocks (at most ", kMaxBlocks, " each)");
    NUANCE_CHECK(c.num_double + c.num_single > 0,
                 "Flux checkpoint has neither transformer_blocks.0.* nor single_transformer_blocks.0.*");
    const std::string blk = c.num_double > 0 ? "transformer_blocks.0." : "single_transformer_blocks.0.";
    const Tensor& nq = need(t, blk + "attn.norm_q.weight");
    NUANCE_CHECK(nq.dim() == 1 && nq.size(0) > 0, "Flux tensor '", blk, "attn.norm_q.weight': expected [head_dim], got ",
                 nq.shape());
    c.head_dim = nq.size(0);
    NUANCE_CHECK(c.hidden % c.head_dim == 0, "Flux checkpoint: width ", c.hidden, " (x_embedder.weight) is not a "
                 "multiple of the head dim ", c.head_dim, " (", blk, "attn.norm_q.weight)");
    c.heads = c.hidden / c.head_dim;
    c.mlp_hidden = c.num_double > 0 ? need_matrix(t, "transformer_blocks.0.ff.net.0.proj.weight").size(0)
                                    : need_matrix(t, "single_transformer_blocks.0.proj_mlp.weight").size(0);
    const int64_t d = c.head_dim;
    if (d == 128)
        c.axes_dims_rope = {16, 56, 56};
    else if (d % 8 == 0 && (d / 4) % 2 == 0 && (3 * d / 8) % 2 == 0)
        c.axes_dims_rope = {d / 4, 3 * d / 8, 3 * d / 8};
    else
        c.axes_dims_rope = {};  // validate() asks for a config
    return c;
}

void FluxConfig::apply_json(const nlohmann::json& j) {
    if (!j.is_object()) return;
    if (j.contains("attention_head_dim") && j["attention_head_dim"].is_number_integer()) {
        const int64_t d = j["attention_head_dim"].get<int64_t>();
        NUANCE_CHECK(d == head_dim, "Flux config attention_head_dim ", d, " does not match the file's head dim ",
                     head_dim, " (attn.norm_q.weight)");
    }
    if (j.contains("num_attention_heads") && j["num_attention_heads"].is_number_integer()) {
        const int64_t h = j["num_attention_heads"].get<int64_t>();
        NUANCE_CHECK(h == heads, "Flux config num_attention_heads ", h, " does not match the file: width ", hidden,
                     " / head dim ", head_dim, " = ", heads);
    }
    // Sizes the file already fixes: a config that disagrees is describing another model.
    const std::pair<const char*, int64_t> fixed[] = {{"in_channels", in_channels},
                                                     {"joint_attention_dim", joint_attention_dim},
                                                     {"pooled_projection_dim", pooled_projection_dim},
                                                     {"num_layers", num_double},
                                                     {"num_single_layers", num_single}};
    for (const auto& [key, value] : fixed)
        if (j.contains(key) && j[key].is_number_integer())
            NUANCE_CHECK(j[key].get<int64_t>() == value, "Flux config ", key, " ", j[key].get<int64_t>(),
                         " does not match the file's ", value);
    if (j.contains("patch_size") && j["patch_size"].is_number_integer())
        NUANCE_CHECK(j["patch_size"].get<int64_t>() == 1, "Flux config patch_size ", j["patch_size"].get<int64_t>(),
                     " is not supported (Flux.1 packs 2x2 latents outside the model and uses patch_size 1)");
    if (j.contains("guidance_embeds") && j["guidance_embeds"].is_boolean()) {
        const bool g = j["guidance_embeds"].get<bool>();
        NUANCE_CHECK(g == guidance_embeds, g ? "Flux config says guidance_embeds (a Flux-dev model) but the file has "
                                               "no time_text_embed.guidance_embedder (guidance_in) weights"
                                             : "Flux config says guidance_embeds=false but the file has "
                                               "time_text_embed.guidance_embedder weights");
    }
    if (j.contains("axes_dims_rope")) {
        const auto& a = j["axes_dims_rope"];
        NUANCE_CHECK(a.is_array() && !a.empty() && a.size() <= 8, "Flux config axes_dims_rope must be a list of "
                     "1..8 integers, got ", a.dump());
        std::vector<int64_t> v;
        for (const auto& e : a) {
            NUANCE_CHECK(e.is_number_integer(), "Flux config axes_dims_rope must hold integers, got ", a.dump());
            v.push_back(e.get<int64_t>());
        }
        axes_dims_rope = v;
    }
    if (j.contains("theta") && j["theta"].is_number()) rope_theta = j["theta"].get<double>();
    validate();
}

void FluxConfig::validate() const {
    NUANCE_CHECK(heads > 0 && head_dim > 0 && heads * head_dim == hidden, "Flux config: ", heads, " heads x ",
                 head_dim, " != width ", hidden);
    NUANCE_CHECK(!axes_dims_rope.empty(), "Flux config: cannot derive axes_dims_rope for head dim ", head_dim,
                 " (Flux.1 uses [16, 56, 56] for 128); give it in the model's config.json");
    int64_t sum = 0;
    for (const int64_t a : axes_dims_rope) {
        NUANCE_CHECK(a > 0 && a % 2 == 0 && a <= head_dim, "Flux config axes_dims_rope ", axes_dims_rope,
                     ": every axis dim must be even and positive");
        sum += a;
    }
    NUANCE_CHECK(sum == head_dim, "Flux config axes_dims_rope ", axes_dims_rope, " sums to ", sum,
                 ", not the head dim ", head_dim);
    NUANCE_CHECK(rope_theta > 0, "Flux config rope theta must be positive, got ", rope_theta);
}

std::string FluxConfig::describe() const {
    return str("Flux ", guidance_embeds ? "dev (guidance_embeds)" : "schnell (no guidance)", ": width ", hidden,
               " = ", heads, " heads x ", head_dim, ", ", num_double, " double + ", num_single,
               " single blocks, mlp ", mlp_hidden, ", in ", in_channels, ", out ", out_channels, ", context ",
               joint_attention_dim, ", pooled ", pooled_projection_dim, ", rope axes ", axes_dims_rope);
}

}  // namespace nuance
