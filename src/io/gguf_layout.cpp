// GGUF files as weights: the tensors under the names and torch shapes the model loaders expect (ComfyUI-GGUF and
// stable-diffusion.cpp layouts), and llama.cpp's T5 names -> transformers'.
#include <regex>

#include "core/checked.h"
#include "io/gguf.h"

namespace nuance {

namespace {

constexpr const char* kOrigShape = "comfy.gguf.orig_shape.";
constexpr uint64_t kMaxMetadataArray = 64;  // longer arrays (vocabularies) stay out of WeightFile::metadata

// ComfyUI-GGUF stores tensors with more than ~4 dims or odd shapes reshaped and records the torch shape.
Shape restored_shape(const GgufFile& g, const GgufTensorInfo& t) {
    const GgufValue* v = g.find(kOrigShape + t.name);
    if (!v) return t.shape;
    const std::string what = str("GGUF file '", g.path, "': ", kOrigShape, t.name);
    if (v->type != GgufValueType::Array || v->ints.size() != v->count || v->count > 8 ||
        v->elem == GgufValueType::Bool)
        fail(ErrorCode::Io, what, " must be an integer array of at most 8 dimensions, got ", v->to_string());
    Shape s(v->ints.begin(), v->ints.end());
    int64_t n = 0;
    if (!shape_numel_checked(s, &n) || n != shape_numel(t.shape))
        fail(ErrorCode::Io, what, " = ", shape_str(s), " does not hold the ", shape_numel(t.shape),
             " elements of the stored ", shape_str(t.shape));
    return s;
}

}  // namespace

WeightFile gguf_to_weights(const GgufFile& g, bool keep_quantized) {
    WeightFile wf;
    wf.path = g.path;
    for (const auto& [k, v] : g.kv) {
        if (k.rfind(kOrigShape, 0) == 0) continue;
        if (v.type == GgufValueType::Array && v.count > kMaxMetadataArray) continue;
        wf.metadata[k] = v.type == GgufValueType::String ? v.s : v.to_string(kMaxMetadataArray);
    }
    for (const auto& t : g.tensors) {
        const GgmlTypeInfo* ti = ggml_type_info(t.type);
        const Shape s = restored_shape(g, t);
        Tensor x;
        if (ti->block > 1) {
            if (!ti->dequantizable)
                fail(ErrorCode::Unsupported, "GGUF file '", g.path, "': tensor '", t.name, "' has type ", ti->name,
                     ", which cannot be dequantized yet");
            const QuantizedTensor q = g.quantized(t);
            // Kept as blocks when the logical rows are whole blocks (ComfyUI-GGUF's 256-value storage rows are
            // reinterpreted: the payload is one run of blocks); else (1-D, rows that split a block) F32 here.
            if (keep_quantized) x = quantized_weight_tensor(q, s);
            if (x.defined()) {
                wf.tensors[t.name] = x;
                continue;
            }
            x = q.dequantize();
        } else {
            x = g.view(t);
        }
        wf.tensors[t.name] = s == t.shape ? x : x.contiguous().view(s);
    }
    return wf;
}

WeightFile load_gguf(const std::string& path, bool keep_quantized) {
    return gguf_to_weights(read_gguf(path), keep_quantized);
}

WeightFile load_gguf(std::shared_ptr<Storage> file, const std::string& name, bool keep_quantized) {
    return gguf_to_weights(read_gguf(std::move(file), name), keep_quantized);
}

std::map<std::string, Tensor> t5_gguf_to_transformers_names(const std::map<std::string, Tensor>& t) {
    static const std::pair<const char*, const char*> kBlock[] = {
        {"attn_q", "layer.0.SelfAttention.q"},
        {"attn_k", "layer.0.SelfAttention.k"},
        {"attn_v", "layer.0.SelfAttention.v"},
        {"attn_o", "layer.0.SelfAttention.o"},
        {"attn_norm", "layer.0.layer_norm"},
        {"attn_rel_b", "layer.0.SelfAttention.relative_attention_bias"},
        {"ffn_gate", "layer.1.DenseReluDense.wi_0"},
        {"ffn_down", "layer.1.DenseReluDense.wo"},
        {"ffn_norm", "layer.1.layer_norm"},
    };
    bool gated = false;
    for (const auto& [k, v] : t)
        if (k.find(".ffn_gate.") != std::string::npos) gated = true;
    static const std::regex kEnc(R"(enc\.blk\.(\d+)\.([a-z_]+)\.(weight|bias))");
    std::map<std::string, Tensor> out;
    auto put = [&](const std::string& name, const Tensor& x, const std::string& from) {
        NUANCE_CHECK(out.emplace(name, x).second, "T5 GGUF: '", from, "' maps to '", name,
                     "', which another tensor already has");
    };
    for (const auto& [k, v] : t) {
        std::smatch m;
        if (k.rfind("dec.", 0) == 0) continue;  // the decoder: not used by text encoders
        if (k == "token_embd.weight") {
            put("shared.weight", v, k);
        } else if (k == "enc.output_norm.weight") {
            put("encoder.final_layer_norm.weight", v, k);
        } else if (std::regex_match(k, m, kEnc)) {
            const std::string part = m[2];
            std::string to;
            if (part == "ffn_up") to = gated ? "layer.1.DenseReluDense.wi_1" : "layer.1.DenseReluDense.wi";
            for (const auto& [a, b] : kBlock)
                if (part == a) to = b;
            if (to.empty()) {
                put(k, v, k);
                continue;
            }
            put(str("encoder.block.", m[1].str(), ".", to, ".", m[3].str()), v, k);
        } else {
            put(k, v, k);
        }
    }
    return out;
}

}  // namespace nuance
