#include "models/t5/t5_loader.h"

#include <cmath>
#include <nlohmann/json.hpp>
#include <set>

#include "backends/backend.h"
#include "io/json_file.h"
#include "io/safetensors.h"
#include "io/weights.h"
#include "text/t5_prompt.h"

namespace nuance {

namespace {

constexpr const char* kQ0 = "encoder.block.0.layer.0.SelfAttention.q.weight";

bool ends_with(const std::string& s, const std::string& suffix) {
    return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}
bool starts_with(const std::string& s, const std::string& prefix) { return s.compare(0, prefix.size(), prefix) == 0; }

// Tensors used by other parts of a T5 checkpoint (the decoder and LM head of a full T5ForConditionalGeneration, the
// tied copy of the embedding) are ignored; anything else under "encoder." that the model does not know means the
// file is not what the shapes suggested (a gap in the block numbering, an unknown layer) and is an error.
bool ignorable(const std::string& key) {
    return starts_with(key, "decoder.") || starts_with(key, "lm_head.") || key == "encoder.embed_tokens.weight" ||
           key == "shared.weight";
}

std::string diffusers_weights(const std::string& dir) {
    return find_first_file(dir, {"model.safetensors", "model.safetensors.index.json", "model.fp16.safetensors",
                                 "model.safetensors.index.fp16.json", "pytorch_model.bin",
                                 "pytorch_model.bin.index.json"});
}

bool is_t5_folder(const std::string& dir) {
    if (!is_directory(dir)) return false;
    const auto cfg = read_optional_json_object(dir + "/config.json");
    return cfg && cfg->value("model_type", std::string()) == "t5";
}

}  // namespace

std::string find_t5_prefix(const std::map<std::string, Tensor>& tensors, const std::string& source) {
    const std::string q0 = kQ0;
    std::vector<std::string> prefixes;
    for (const auto& [key, _] : tensors) {
        if (!ends_with(key, q0)) continue;
        const std::string p = key.substr(0, key.size() - q0.size());
        if (p.empty() || p.back() == '.') prefixes.push_back(p);
    }
    NUANCE_CHECK_CODE(!prefixes.empty(), NotFound, "'", source, "' holds no T5 encoder (no tensor named '", q0,
                      "' under any prefix)");
    NUANCE_CHECK(prefixes.size() == 1, "'", source, "' holds ", prefixes.size(), " T5 encoders (prefixes '",
                 prefixes[0], "' and '", prefixes[1], "'): name the prefix");
    return prefixes[0];
}

std::unique_ptr<T5EncoderModel> load_t5_encoder(const std::map<std::string, Tensor>& all, const std::string& prefix,
                                                const std::string& source, Precision precision,
                                                const nlohmann::json* hf_config) {
    NUANCE_CHECK(prefix.empty() || prefix.back() == '.', "T5 encoder: prefix '", prefix, "' must be empty or end in '.'");
    std::map<std::string, Tensor> t;
    for (auto it = all.lower_bound(prefix); it != all.end() && starts_with(it->first, prefix); ++it)
        t.emplace(it->first.substr(prefix.size()), it->second);
    // The embedding is tied: save_pretrained stores shared.weight, some exports only encoder.embed_tokens.weight.
    if (!t.count("shared.weight") && t.count("encoder.embed_tokens.weight"))
        t.emplace("shared.weight", t.at("encoder.embed_tokens.weight"));
    fold_fp8_scales(t, source);  // a scaled file read elsewhere (load_safetensors folds them itself)

    T5Config cfg;
    try {
        cfg = T5Config::detect(t);
        if (hf_config) cfg.apply_hf_config(*hf_config);
    } catch (const Error& e) {
        fail(e.code(), "'", source, "': ", e.what());
    }
    auto model = std::make_unique<T5EncoderModel>(cfg);
    LoadOptions o;
    o.source = source;
    o.matrices_as_stored = true;  // Linear weights and the embedding stay mmap'd in the file's dtype
    o.matrix_compute = resolve_precision(precision);  // Auto: bf16 where the CPU has bf16 dot products
    for (const std::string& key : load_module(*model, t, o))
        NUANCE_CHECK(ignorable(key), "'", source, "': tensor '", prefix + key, "' is not part of a T5 encoder with ",
                     cfg.layers, " blocks (", cfg.ff == T5FeedForward::GatedGelu ? "gated-gelu" : "relu", ")");
    return model;
}

std::unique_ptr<T5EncoderModel> load_t5_encoder(const WeightFile& file, const std::string& prefix,
                                                Precision precision) {
    const std::string p = prefix == "auto" ? find_t5_prefix(file.tensors, file.path) : prefix;
    return load_t5_encoder(file.tensors, p, file.path, precision);
}

std::unique_ptr<T5EncoderModel> load_t5_encoder(const std::string& path, Precision precision) {
    // A safetensors file's FP8 matrices (t5xxl_fp8_e4m3fn) stay FP8 in memory (half the bytes of F16); the
    // products widen them layer by layer (backends/cpu/quantized_matmul.h).
    if (!is_directory(path))
        return load_t5_encoder(is_safetensors_file(path) ? load_safetensors(path, Fp8Load::KeepMatrices)
                                                         : load_weights(path),
                               "auto", precision);
    // A pipeline root: SD3's text_encoder_3, or Flux's text_encoder_2 (a T5 there; SDXL's is a CLIP).
    std::string dir = path;
    if (is_directory(path + "/text_encoder_3"))
        dir = path + "/text_encoder_3";
    else if (is_t5_folder(path + "/text_encoder_2"))
        dir = path + "/text_encoder_2";
    const std::string weights = diffusers_weights(dir);
    NUANCE_CHECK_CODE(!weights.empty(), NotFound, "'", dir, "' has no T5 weights (expected model.safetensors, "
                      "model.safetensors.index.json or pytorch_model.bin)");
    const WeightFile wf = load_weights(weights);
    const std::optional<nlohmann::json> cfg = read_optional_json_object(dir + "/config.json");
    return load_t5_encoder(wf.tensors, find_t5_prefix(wf.tensors, weights), weights, precision,
                           cfg ? &*cfg : nullptr);
}

Tensor encode_t5_prompts(const T5EncoderModel& model, const std::vector<std::string>& prompts, int max_length,
                         const T5Tokenizer& tokenizer) {
    NUANCE_CHECK(!prompts.empty(), "T5 encoder: no prompts");
    std::vector<int64_t> ids;
    ids.reserve(prompts.size() * (size_t)std::max(max_length, 0));
    for (const std::string& p : prompts) {
        const std::vector<int64_t> row = tokenizer.encode_padded(p, max_length, /*legacy=*/true);
        ids.insert(ids.end(), row.begin(), row.end());
    }
    const Tensor t = Tensor::from_ids(ids, {(int64_t)prompts.size(), (int64_t)max_length});
    return model.forward(t).last_hidden_state;
}

Tensor encode_t5_prompt(const T5EncoderModel& model, const std::string& prompt, int max_length, bool weighted,
                        const T5Tokenizer& tokenizer) {
    if (!weighted) return encode_t5_prompts(model, {prompt}, max_length, tokenizer).f32().contiguous();
    const T5WeightedIds w = tokenize_t5_weighted(tokenizer, prompt, max_length);
    const int64_t L = max_length;
    Tensor z = model.forward(Tensor::from_ids(w.ids, {1, L})).last_hidden_state.f32().contiguous();
    if (w.all_one()) return z;
    std::vector<int64_t> empty((size_t)L, tokenizer.pad_id());
    empty[0] = tokenizer.eos_id();  // ComfyUI gen_empty_tokens: no start token, end, then pad
    const Tensor e = model.forward(Tensor::from_ids(empty, {1, L})).last_hidden_state.f32().contiguous();
    z = z.clone();
    apply_t5_token_weights(z.data<float>(), e.data<float>(), w.weights, L, z.size(2));
    return z;
}

}  // namespace nuance
