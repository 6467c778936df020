// T5 encoder (Raffel et al. 2020; v1.1: gated-GELU FFN, no biases), transformers' T5EncoderModel: the T5-XXL text
// encoder of SD3/SD3.5 and Flux. Key names are transformers' (shared.weight, encoder.block.N.layer.0.SelfAttention.q,
// encoder.final_layer_norm, ...); other layouts are mapped in t5_loader.cpp.
//   x = embed(ids)
//   per block: x += o(attn(q(rms(x)), k(rms(x)), v(rms(x)), bias));  x += wo(gelu_tanh(wi_0(rms(x))) * wi_1(rms(x)))
//   last_hidden_state = rms(x)
// T5 specifics: no 1/sqrt(d_kv) score scaling; RMSNorm without mean or bias; the relative position bias (bucketed
// key-query offsets, Raffel et al. 2020 sec. 2.1) lives in block 0 and is shared by all blocks.
// Shape letters: B batch, L tokens, D d_model, H heads, K d_kv, F d_ff, V vocabulary, R buckets.
#pragma once
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "nn/layers.h"

namespace nuance {

enum class T5FeedForward { GatedGelu, Relu };  // v1.1 / Flan (wi_0, wi_1, gelu_new) ; v1.0 (wi, relu)

struct T5Config {
    int64_t vocab = 32128;
    int64_t d_model = 4096;
    int64_t d_kv = 64;
    int64_t heads = 64;
    int64_t d_ff = 10240;
    int64_t layers = 24;
    int64_t buckets = 32;        // relative_attention_num_buckets
    int64_t max_distance = 128;  // relative_attention_max_distance (not in the shapes)
    float eps = 1e-6f;
    T5FeedForward ff = T5FeedForward::GatedGelu;

    // From the tensors under `prefix` (transformers names, embedding as shared.weight or encoder.embed_tokens.weight):
    // vocab/d_model from the embedding, heads/buckets from block 0's relative_attention_bias [R, H], d_kv = q rows /
    // heads, d_ff from wi_0 (or wi), layers by counting blocks.
    static T5Config detect(const std::map<std::string, Tensor>& tensors, const std::string& prefix = "");
    // Takes relative_attention_max_distance, layer_norm_epsilon and feed_forward_proj from a transformers
    // config.json; checks that the widths it states agree with the detected ones.
    void apply_hf_config(const nlohmann::json& cfg);
};

// Bidirectional bucket of a key-query offset (transformers' T5Attention._relative_position_bucket), with its
// float32 arithmetic: half the buckets per direction, exact below R/4, log-spaced up to max_distance.
int64_t t5_relative_position_bucket(int64_t relative_position, int64_t buckets, int64_t max_distance);

struct T5RmsNorm : Module {
    Param weight;
    float eps = 1e-6f;
    T5RmsNorm() = default;
    T5RmsNorm(int64_t dim, float eps_) : weight({dim}), eps(eps_) {}
    Tensor operator()(const Tensor& x) const { return rms_norm(x, *weight, eps); }
    void visit(ParamVisitor& v) override { v("weight", weight); }
};

struct T5Attention : Module {
    Linear q, k, v, o;
    Param relative_attention_bias;  // [R, H], block 0 only
    bool has_relative_bias = false;
    int64_t heads = 1;
    T5Attention() = default;
    T5Attention(const T5Config& c, bool relative_bias);
    // x [B, L, D], bias [B or 1, H, L, L] (position bias + mask) -> [B, L, D]
    Tensor operator()(const Tensor& x, const Tensor& bias) const;
    void visit(ParamVisitor& v) override;
};

struct T5DenseFF : Module {
    Linear wi_0, wi_1, wi, wo;
    T5FeedForward kind = T5FeedForward::GatedGelu;
    T5DenseFF() = default;
    explicit T5DenseFF(const T5Config& c);
    Tensor operator()(const Tensor& x) const;
    void visit(ParamVisitor& v) override;
};

struct T5Block : Module {
    T5Attention attn;
    T5RmsNorm attn_norm;
    T5DenseFF ff;
    T5RmsNorm ff_norm;
    T5Block() = default;
    T5Block(const T5Config& c, bool relative_bias)
        : attn(c, relative_bias), attn_norm(c.d_model, c.eps), ff(c), ff_norm(c.d_model, c.eps) {}
    Tensor operator()(Tensor x, const Tensor& bias) const;
    void visit(ParamVisitor& v) override {
        v("layer.0.SelfAttention", attn); v("layer.0.layer_norm", attn_norm);
        v("layer.1.DenseReluDense", ff); v("layer.1.layer_norm", ff_norm);
    }
};

struct T5EncoderOutput {
    Tensor last_hidden_state;           // [B, L, D]
    std::vector<Tensor> hidden_states;  // with all_hidden: [0] = embeddings, [i] = after block i, [layers] = last
};

class T5EncoderModel : public Module {
public:
    explicit T5EncoderModel(const T5Config& c);
    const T5Config& config() const { return cfg_; }

    // ids [B, L] integers < vocab; mask [B, L] (1 = attend, 0 = padding) or undefined: SD3 and Flux pass none.
    T5EncoderOutput forward(const Tensor& ids, const Tensor& mask = Tensor(), bool all_hidden = false) const;
    // [1 or B, H, L, L]: the bucketed relative position bias, plus (1 - mask) * float_min when a mask is given.
    Tensor position_bias(int64_t L, const Tensor& mask) const;

    void visit(ParamVisitor& v) override;

    // The token embedding. Only ever read row by row, so an inference load keeps it as stored (mmap'd F16 for
    // T5-XXL: 263 MB instead of a 526 MB F32 copy): it is flagged like a weight matrix for that reason.
    Param shared;
    std::vector<T5Block> block;
    T5RmsNorm final_layer_norm;

private:
    T5Config cfg_;
};

}  // namespace nuance
