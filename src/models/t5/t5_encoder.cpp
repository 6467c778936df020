// T5 encoder, as transformers' modeling_t5.py (T5EncoderModel). Shape letters: see t5_encoder.h.
#include "models/t5/t5_encoder.h"

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <optional>

#include <nlohmann/json.hpp>

#include "core/checked.h"

namespace nuance {

// ---- config ----

T5Config T5Config::detect(const std::map<std::string, Tensor>& t, const std::string& prefix) {
    auto find = [&](const std::string& name) -> const Tensor* {
        auto it = t.find(prefix + name);
        return it == t.end() ? nullptr : &it->second;
    };
    auto get = [&](const std::string& name, int64_t ndim) -> const Tensor& {
        const Tensor* p = find(name);
        NUANCE_CHECK_CODE(p, NotFound, "T5 encoder: tensor '", prefix + name, "' not found");
        NUANCE_CHECK(p->dim() == ndim, "T5 encoder: tensor '", prefix + name, "' has shape ", p->shape(),
                     ", expected ", ndim, " dims");
        return *p;
    };
    T5Config c;
    const Tensor* emb = find("shared.weight");
    if (!emb) emb = find("encoder.embed_tokens.weight");
    NUANCE_CHECK_CODE(emb, NotFound, "T5 encoder: no token embedding (expected '", prefix, "shared.weight' or '",
                      prefix, "encoder.embed_tokens.weight')");
    NUANCE_CHECK(emb->dim() == 2 && emb->size(0) > 0 && emb->size(1) > 0, "T5 encoder: token embedding has shape ",
                 emb->shape(), ", expected [vocab, d_model]");
    c.vocab = emb->size(0);
    c.d_model = emb->size(1);

    const std::string b0 = "encoder.block.0.";
    const Tensor& rel = get(b0 + "layer.0.SelfAttention.relative_attention_bias.weight", 2);
    c.buckets = rel.size(0);
    c.heads = rel.size(1);
    NUANCE_CHECK(c.buckets >= 2 && c.heads >= 1, "T5 encoder: relative_attention_bias has shape ", rel.shape(),
                 ", expected [buckets >= 2, heads >= 1]");
    const Tensor& q = get(b0 + "layer.0.SelfAttention.q.weight", 2);
    NUANCE_CHECK(q.size(1) == c.d_model && q.size(0) % c.heads == 0 && q.size(0) > 0, "T5 encoder: q.weight ",
                 q.shape(), " does not split into ", c.heads, " heads over d_model ", c.d_model);
    c.d_kv = q.size(0) / c.heads;
    if (find(b0 + "layer.1.DenseReluDense.wi_0.weight")) {
        c.ff = T5FeedForward::GatedGelu;
        c.d_ff = get(b0 + "layer.1.DenseReluDense.wi_0.weight", 2).size(0);
    } else {
        c.ff = T5FeedForward::Relu;
        c.d_ff = get(b0 + "layer.1.DenseReluDense.wi.weight", 2).size(0);
    }
    c.layers = 0;
    while (c.layers < 1000 && t.count(prefix + "encoder.block." + std::to_string(c.layers) + ".layer.0.SelfAttention.q.weight"))
        ++c.layers;
    return c;
}

void T5Config::apply_hf_config(const nlohmann::json& j) {
    NUANCE_CHECK(j.is_object(), "T5 config: expected a JSON object");
    auto integer = [&](const char* key) -> std::optional<int64_t> {
        if (!j.contains(key) || j[key].is_null()) return std::nullopt;
        NUANCE_CHECK(j[key].is_number_integer(), "T5 config: '", key, "' is not an integer");
        return j[key].get<int64_t>();
    };
    auto agree = [&](const char* key, int64_t detected) {
        if (auto v = integer(key)) NUANCE_CHECK(*v == detected, "T5 config: ", key, " = ", *v, " but the weights have ",
                                                detected);
    };
    agree("d_model", d_model);
    agree("d_kv", d_kv);
    agree("d_ff", d_ff);
    agree("num_layers", layers);
    agree("num_heads", heads);
    agree("vocab_size", vocab);
    agree("relative_attention_num_buckets", buckets);
    if (auto v = integer("relative_attention_max_distance")) {
        NUANCE_CHECK(*v >= 1 && *v <= (1 << 24), "T5 config: relative_attention_max_distance = ", *v,
                     " is out of range");
        max_distance = *v;
    }
    if (j.contains("layer_norm_epsilon") && j["layer_norm_epsilon"].is_number()) {
        const double e = j["layer_norm_epsilon"].get<double>();
        NUANCE_CHECK(e > 0 && e < 1, "T5 config: layer_norm_epsilon = ", e, " is out of range");
        eps = (float)e;
    }
    if (j.contains("feed_forward_proj") && j["feed_forward_proj"].is_string()) {
        const std::string f = j["feed_forward_proj"].get<std::string>();
        const T5FeedForward want = f == "gated-gelu" ? T5FeedForward::GatedGelu
                                   : f == "relu"     ? T5FeedForward::Relu
                                                     : (fail(ErrorCode::Unsupported, "T5 config: feed_forward_proj '",
                                                             f, "' is not supported (gated-gelu or relu)"),
                                                        T5FeedForward::Relu);
        NUANCE_CHECK(want == ff, "T5 config: feed_forward_proj '", f, "' but the weights have ",
                     ff == T5FeedForward::GatedGelu ? "wi_0/wi_1 (gated-gelu)" : "wi (relu)");
    }
}

int64_t t5_relative_position_bucket(int64_t relative_position, int64_t buckets, int64_t max_distance) {
    const int64_t n = buckets / 2;  // bidirectional: half per direction
    int64_t bucket = relative_position > 0 ? n : 0;
    const int64_t a = relative_position < 0 ? -relative_position : relative_position;
    const int64_t max_exact = n / 2;
    if (a < max_exact) return bucket + a;
    // float32 as torch: log(a / max_exact) / log(max_distance / max_exact) * (n - max_exact), truncated.
    const float x = (float)a / (float)max_exact;
    const float v = std::log(x) / (float)std::log((double)max_distance / (double)max_exact) * (float)(n - max_exact);
    const int64_t large = max_exact + (int64_t)v;
    return bucket + std::min(large, n - 1);
}

// ---- blocks ----

T5Attention::T5Attention(const T5Config& c, bool relative_bias)
    : q(c.d_model, c.heads * c.d_kv, false), k(c.d_model, c.heads * c.d_kv, false),
      v(c.d_model, c.heads * c.d_kv, false), o(c.heads * c.d_kv, c.d_model, false),
      relative_attention_bias({c.buckets, c.heads}), has_relative_bias(relative_bias), heads(c.heads) {}

void T5Attention::visit(ParamVisitor& vis) {
    vis("q", q); vis("k", k); vis("v", v); vis("o", o);
    if (has_relative_bias) vis("relative_attention_bias.weight", relative_attention_bias);
}

Tensor T5Attention::operator()(const Tensor& x, const Tensor& bias) const {
    const int64_t B = x.size(0), L = x.size(1), HK = q.out_features(), K = HK / heads;
    auto split = [&](const Tensor& t) { return t.reshape({B, L, heads, K}).permute({0, 2, 1, 3}); };  // [B, H, L, K]
    const DType in = q.input_dtype();
    const Tensor xin = in == DType::BF16 ? x.to(DType::BF16) : x;
    const Tensor qh = split(q(xin, in)), kh = split(k(xin, in)), vh = split(v(xin, in));
    const Tensor a = scaled_dot_product_attention(qh, kh, vh, false, /*scale=*/1.0f, bias);  // no 1/sqrt(K)
    return o(a.permute({0, 2, 1, 3}).reshape({B, L, HK}));
}

T5DenseFF::T5DenseFF(const T5Config& c) : wo(c.d_ff, c.d_model, false), kind(c.ff) {
    if (kind == T5FeedForward::GatedGelu) {
        wi_0 = Linear(c.d_model, c.d_ff, false);
        wi_1 = Linear(c.d_model, c.d_ff, false);
    } else {
        wi = Linear(c.d_model, c.d_ff, false);
    }
}

void T5DenseFF::visit(ParamVisitor& v) {
    if (kind == T5FeedForward::GatedGelu) {
        v("wi_0", wi_0); v("wi_1", wi_1);
    } else {
        v("wi", wi);
    }
    v("wo", wo);
}

Tensor T5DenseFF::operator()(const Tensor& x) const {
    if (kind == T5FeedForward::Relu) return wo(relu(wi(x)));
    return wo(gelu_tanh(wi_0(x)) * wi_1(x));  // [B, L, F] -> [B, L, D]
}

Tensor T5Block::operator()(Tensor x, const Tensor& bias) const {
    x = x + attn(attn_norm(x), bias);
    x = x + ff(ff_norm(x));
    return x;
}

// ---- model ----

T5EncoderModel::T5EncoderModel(const T5Config& c)
    : shared({c.vocab, c.d_model}, /*matrix=*/true), final_layer_norm(c.d_model, c.eps), cfg_(c) {
    NUANCE_CHECK(c.vocab > 0 && c.d_model > 0 && c.d_kv > 0 && c.heads > 0 && c.d_ff > 0 && c.layers > 0 &&
                     c.buckets >= 2 && c.max_distance >= 1,
                 "T5 encoder: bad config (vocab ", c.vocab, ", d_model ", c.d_model, ", d_kv ", c.d_kv, ", heads ",
                 c.heads, ", d_ff ", c.d_ff, ", layers ", c.layers, ", buckets ", c.buckets, ")");
    block.reserve((size_t)c.layers);
    for (int64_t i = 0; i < c.layers; ++i) block.emplace_back(c, /*relative_bias=*/i == 0);
}

void T5EncoderModel::visit(ParamVisitor& v) {
    v("shared.weight", shared);
    v("encoder.block", block);
    v("encoder.final_layer_norm", final_layer_norm);
}

Tensor T5EncoderModel::position_bias(int64_t L, const Tensor& mask) const {
    const int64_t H = cfg_.heads;
    int64_t n = 0;
    NUANCE_CHECK(checked_mul(H, L * L, &n) && n <= (int64_t{1} << 32), "T5 encoder: position bias of ", H,
                 " heads x ", L, " x ", L, " tokens is too large");
    const Tensor rel = (*block[0].attn.relative_attention_bias).f32().contiguous();  // [R, H]
    const float* pr = rel.data<float>();
    std::vector<int64_t> bucket_of(2 * (size_t)L);  // by offset (key - query) + L
    for (int64_t d = -L + 1; d < L; ++d)
        bucket_of[(size_t)(d + L)] = t5_relative_position_bucket(d, cfg_.buckets, cfg_.max_distance);
    Tensor bias = Tensor::empty({1, H, L, L}, DType::F32);
    float* pb = bias.data<float>();
    for (int64_t h = 0; h < H; ++h)
        for (int64_t i = 0; i < L; ++i)
            for (int64_t j = 0; j < L; ++j) pb[(h * L + i) * L + j] = pr[bucket_of[(size_t)(j - i + L)] * H + h];
    if (!mask.defined()) return bias;
    NUANCE_CHECK(mask.dim() == 2 && mask.size(1) == L, "T5 encoder: attention mask ", mask.shape(),
                 " does not match ", L, " tokens");
    // transformers: (1 - mask) * finfo(float32).min, added to the position bias.
    const Tensor m = ((1.0f - mask.f32()) * -FLT_MAX).reshape({mask.size(0), 1, 1, L});
    return bias + m;  // [B, H, L, L]
}

T5EncoderOutput T5EncoderModel::forward(const Tensor& ids, const Tensor& mask, bool all_hidden) const {
    NUANCE_CHECK(ids.defined() && ids.dim() == 2, "T5 encoder: ids must be [B, L], got ",
                 ids.defined() ? ids.shape() : Shape{});
    NUANCE_CHECK(!dtype_is_float(ids.dtype()), "T5 encoder: ids must be integers, got ", ids.str());
    const int64_t B = ids.size(0), L = ids.size(1);
    NUANCE_CHECK(B >= 1 && L >= 1 && L <= (1 << 16), "T5 encoder: ", B, " x ", L, " tokens (expected B >= 1, 1 <= L <= ",
                 1 << 16, ")");
    NUANCE_CHECK(!mask.defined() || (mask.dim() == 2 && mask.size(0) == B && mask.size(1) == L),
                 "T5 encoder: attention mask ", mask.shape(), " does not match ids ", ids.shape());
    NUANCE_CHECK(shared.defined(), "T5 encoder: weights are not loaded");

    T5EncoderOutput out;
    Tensor x = embedding(ids, *shared);          // [B, L, D]
    const Tensor bias = position_bias(L, mask);  // [1 or B, H, L, L], computed once for all blocks
    if (all_hidden) out.hidden_states.push_back(x);
    for (const T5Block& b : block) {
        x = b(x, bias);
        if (all_hidden) out.hidden_states.push_back(x);
    }
    out.last_hidden_state = final_layer_norm(x);
    if (all_hidden) out.hidden_states.back() = out.last_hidden_state;
    return out;
}

}  // namespace nuance
