#include "models/mmdit/mmdit_config.h"

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>

namespace nuance {

namespace {

// Bounds that no real model comes near but that keep every product below int64 and every loop short.
constexpr int64_t kMaxWidth = 1 << 16;
constexpr int64_t kMaxDepth = 1024;
constexpr int64_t kMaxPatch = 64;
constexpr int64_t kMaxGrid = 1 << 14;

const Tensor& need(const std::map<std::string, Tensor>& t, const std::string& k, int64_t dims) {
    auto it = t.find(k);
    NUANCE_CHECK(it != t.end(), "SD3 transformer: missing tensor '", k, "'");
    NUANCE_CHECK(it->second.dim() == dims, "SD3 transformer: tensor '", k, "': expected ", dims, " dims, got ",
                 it->second.shape());
    for (int64_t d = 0; d < dims; ++d)
        NUANCE_CHECK(it->second.size(d) > 0 && it->second.size(d) <= (int64_t)1 << 40, "SD3 transformer: tensor '", k,
                     "' has shape ", it->second.shape());
    return it->second;
}

// A decimal block index of at most 4 digits, no leading zero ("01" is not a module index).
bool is_block_index(const std::string& num) {
    return !num.empty() && num.size() <= 4 && (num.size() == 1 || num[0] != '0') &&
           std::all_of(num.begin(), num.end(), [](char ch) { return ch >= '0' && ch <= '9'; });
}

// Block indices N of "transformer_blocks.N.*" keys; a gap is an error naming the missing index.
int64_t count_blocks(const std::map<std::string, Tensor>& t) {
    const std::string prefix = "transformer_blocks.";
    std::set<int64_t> idx;
    for (auto it = t.lower_bound(prefix); it != t.end() && it->first.starts_with(prefix); ++it) {
        const std::string rest = it->first.substr(prefix.size());
        const size_t dot = rest.find('.');
        const std::string num = rest.substr(0, dot);
        NUANCE_CHECK(is_block_index(num),
                     "SD3 transformer: tensor '", it->first, "' has no block index");
        idx.insert(std::stoll(num));
    }
    NUANCE_CHECK(!idx.empty(), "SD3 transformer: no 'transformer_blocks.N.*' tensors");
    int64_t expect = 0;
    for (int64_t i : idx) {
        NUANCE_CHECK(i == expect, "SD3 transformer: block ", expect, " is missing (blocks 0..", *idx.rbegin(),
                     " expected)");
        ++expect;
    }
    NUANCE_CHECK(expect <= kMaxDepth, "SD3 transformer: ", expect, " blocks (at most ", kMaxDepth, ")");
    return expect;
}

void in_range(const char* what, int64_t v, int64_t hi) {
    NUANCE_CHECK(v >= 1 && v <= hi, "SD3 transformer config: ", what, " = ", v, " (expected 1..", hi, ")");
}

}  // namespace

bool MMDiTConfig::dual(int64_t block) const {
    return std::find(dual_attention_layers.begin(), dual_attention_layers.end(), block) != dual_attention_layers.end();
}

std::string MMDiTConfig::describe() const {
    return str("SD3 MMDiT depth=", depth, " D=", hidden, " heads=", heads, "x", head_dim, " patch=", patch_size,
               " in=", in_channels, " out=", out_channels, " context=", joint_attention_dim, " pooled=",
               pooled_projection_dim, " pos_embed_max_size=", pos_embed_max_size, qk_norm ? " qk-rmsnorm" : "",
               dual_attention_layers.empty() ? std::string() : str(" dual-attention=", dual_attention_layers));
}

void MMDiTConfig::validate() const {
    in_range("patch_size", patch_size, kMaxPatch);
    in_range("in_channels", in_channels, kMaxWidth);
    in_range("out_channels", out_channels, kMaxWidth);
    in_range("hidden size", hidden, kMaxWidth);
    in_range("num_attention_heads", heads, kMaxWidth);
    in_range("attention_head_dim", head_dim, kMaxWidth);
    in_range("num_layers", depth, kMaxDepth);
    in_range("joint_attention_dim", joint_attention_dim, kMaxWidth);
    in_range("pooled_projection_dim", pooled_projection_dim, kMaxWidth);
    in_range("pos_embed_max_size", pos_embed_max_size, kMaxGrid);
    in_range("timestep feature dim", time_freq_dim, kMaxWidth);
    NUANCE_CHECK(time_freq_dim % 2 == 0, "SD3 transformer config: timestep feature dim ", time_freq_dim, " is odd");
    NUANCE_CHECK(heads * head_dim == hidden, "SD3 transformer config: num_attention_heads ", heads,
                 " x attention_head_dim ", head_dim, " = ", heads * head_dim, ", but the model width is ", hidden);
    for (int64_t b : dual_attention_layers)
        NUANCE_CHECK(b >= 0 && b < depth, "SD3 transformer config: dual_attention_layers has block ", b, " (model has ",
                     depth, " blocks)");
}

MMDiTConfig MMDiTConfig::detect(const std::map<std::string, Tensor>& t) {
    MMDiTConfig c;
    const Tensor& proj = need(t, "pos_embed.proj.weight", 4);  // [D, Cin, p, p]
    NUANCE_CHECK(proj.size(2) == proj.size(3), "SD3 transformer: tensor 'pos_embed.proj.weight' ", proj.shape(),
                 " is not a square patch");
    c.hidden = proj.size(0);
    c.in_channels = proj.size(1);
    c.patch_size = proj.size(2);
    in_range("patch_size", c.patch_size, kMaxPatch);
    in_range("hidden size", c.hidden, kMaxWidth);

    const Tensor& pos = need(t, "pos_embed.pos_embed", 3);  // [1, S*S, D]
    const int64_t cells = pos.size(1);
    const auto s = (int64_t)std::llround(std::sqrt((double)cells));
    NUANCE_CHECK(pos.size(0) == 1 && pos.size(2) == c.hidden && s * s == cells, "SD3 transformer: tensor "
                 "'pos_embed.pos_embed' is ", pos.shape(), ", expected [1, S*S, ", c.hidden, "] (a square grid)");
    c.pos_embed_max_size = s;

    c.depth = count_blocks(t);
    const Tensor& out = need(t, "proj_out.weight", 2);  // [p*p*Cout, D]
    const int64_t pp = c.patch_size * c.patch_size;
    NUANCE_CHECK(out.size(0) % pp == 0 && out.size(1) == c.hidden, "SD3 transformer: tensor 'proj_out.weight' is ",
                 out.shape(), ", expected [", pp, " * out_channels, ", c.hidden, "]");
    c.out_channels = out.size(0) / pp;

    const Tensor& ctx = need(t, "context_embedder.weight", 2);  // [D, Dj]
    NUANCE_CHECK(ctx.size(0) == c.hidden, "SD3 transformer: tensor 'context_embedder.weight' is ", ctx.shape(),
                 ", expected [", c.hidden, ", joint_attention_dim] (caption_projection_dim must be the model width)");
    c.joint_attention_dim = ctx.size(1);
    c.pooled_projection_dim = need(t, "time_text_embed.text_embedder.linear_1.weight", 2).size(1);
    c.time_freq_dim = need(t, "time_text_embed.timestep_embedder.linear_1.weight", 2).size(1);

    auto qn = t.find("transformer_blocks.0.attn.norm_q.weight");
    c.qk_norm = qn != t.end();
    for (int64_t i = 0; i < c.depth; ++i)
        if (t.count(str("transformer_blocks.", i, ".attn2.to_q.weight"))) c.dual_attention_layers.push_back(i);

    if (c.qk_norm) {
        NUANCE_CHECK(qn->second.dim() == 1 && qn->second.size(0) > 0 && c.hidden % qn->second.size(0) == 0,
                     "SD3 transformer: tensor 'transformer_blocks.0.attn.norm_q.weight' is ", qn->second.shape(),
                     ", expected [head_dim] with head_dim dividing ", c.hidden);
        c.head_dim = qn->second.size(0);
    } else if (c.hidden % 64 == 0) {
        c.head_dim = 64;
    } else {
        NUANCE_CHECK(c.hidden % c.depth == 0, "SD3 transformer: cannot infer the head count of width ", c.hidden,
                     " and depth ", c.depth, "; give a config.json with num_attention_heads");
        c.head_dim = c.hidden / c.depth;
        c.heads_guessed = true;
    }
    c.heads = c.hidden / c.head_dim;
    c.validate();
    return c;
}

void MMDiTConfig::apply_json(const nlohmann::json& j) {
    NUANCE_CHECK(j.is_object(), "SD3 transformer config: expected a JSON object, got ", j.type_name());
    auto integer = [&](const char* k) -> std::optional<int64_t> {
        if (!j.contains(k) || j[k].is_null()) return std::nullopt;
        NUANCE_CHECK(j[k].is_number_integer(), "SD3 transformer config: '", k, "' is ", j[k].dump(),
                     ", expected an integer");
        return j[k].get<int64_t>();
    };
    auto agree = [&](const char* k, int64_t detected) {
        if (auto v = integer(k))
            NUANCE_CHECK(*v == detected, "SD3 transformer config: '", k, "' is ", *v, " but the weights have ",
                         detected);
    };
    const auto heads_j = integer("num_attention_heads");
    const auto dim_j = integer("attention_head_dim");
    if (heads_j || dim_j) {
        if (heads_j) in_range("num_attention_heads", *heads_j, kMaxWidth);
        if (dim_j) in_range("attention_head_dim", *dim_j, kMaxWidth);
        const int64_t h = heads_j ? *heads_j : hidden / *dim_j;
        const int64_t d = dim_j ? *dim_j : hidden / *heads_j;
        NUANCE_CHECK(h * d == hidden, "SD3 transformer config: num_attention_heads ", h, " x attention_head_dim ", d,
                     " = ", h * d, ", but the weights are ", hidden, " wide");
        NUANCE_CHECK(!qk_norm || d == head_dim, "SD3 transformer config: attention_head_dim ", d,
                     " but the qk-norm weights are ", head_dim, " wide");
        heads = h;
        head_dim = d;
        heads_guessed = false;
    }
    agree("patch_size", patch_size);
    agree("in_channels", in_channels);
    agree("out_channels", out_channels);
    agree("num_layers", depth);
    agree("joint_attention_dim", joint_attention_dim);
    agree("caption_projection_dim", hidden);
    agree("pooled_projection_dim", pooled_projection_dim);
    agree("pos_embed_max_size", pos_embed_max_size);
    if (j.contains("qk_norm")) {
        const auto& q = j["qk_norm"];
        NUANCE_CHECK(q.is_null() || q == "rms_norm", "SD3 transformer config: qk_norm ", q.dump(),
                     " is not supported (null or \"rms_norm\")");
        NUANCE_CHECK(q.is_null() != qk_norm, "SD3 transformer config: qk_norm is ", q.dump(), " but the weights ",
                     qk_norm ? "have" : "have no", " qk-norm tensors");
    }
    if (j.contains("dual_attention_layers") && !j["dual_attention_layers"].is_null()) {
        const auto& d = j["dual_attention_layers"];
        NUANCE_CHECK(d.is_array() && d.size() <= (size_t)kMaxDepth, "SD3 transformer config: dual_attention_layers ",
                     "is not a list of block indices");
        std::vector<int64_t> v;
        for (const auto& e : d) {
            NUANCE_CHECK(e.is_number_integer(), "SD3 transformer config: dual_attention_layers has ", e.dump());
            v.push_back(e.get<int64_t>());
        }
        std::sort(v.begin(), v.end());
        v.erase(std::unique(v.begin(), v.end()), v.end());
        NUANCE_CHECK(v == dual_attention_layers, "SD3 transformer config: dual_attention_layers ", v,
                     " but the weights have attn2 in blocks ", dual_attention_layers);
    }
    validate();
}

}  // namespace nuance
