#include "io/gguf_quantize.h"

#include "backends/backend.h"
#include "io/gguf.h"

#include <cctype>

namespace nuance {

namespace {

constexpr const char* kLdmPrefix = "model.diffusion_model.";
constexpr int64_t kQuantizationThreshold = 1024;  // convert.py: at most this many values stay F32

bool starts_with(const std::string& s, const std::string& p) { return s.rfind(p, 0) == 0; }
bool ends_with(const std::string& s, const std::string& p) {
    return s.size() >= p.size() && s.compare(s.size() - p.size(), p.size(), p) == 0;
}

// llama.cpp's llama_ftype for a file quantized to `t`.
uint32_t file_type(GgmlType t) {
    switch (t) {
        case GgmlType::F32: return 0;
        case GgmlType::F16: return 1;
        case GgmlType::Q4_0: return 2;
        case GgmlType::Q4_1: return 3;
        case GgmlType::Q8_0: return 7;
        case GgmlType::Q5_0: return 8;
        case GgmlType::Q5_1: return 9;
        case GgmlType::Q4_K: return 14;
        case GgmlType::Q5_K: return 16;
        case GgmlType::Q6_K: return 18;
        case GgmlType::BF16: return 32;
        default: return 0;
    }
}

// ComfyUI-GGUF's lcpp.patch keeps these in their convert.py type (plus the diffusers spellings of the UNet ones).
bool kept_unquantized(const std::string& arch, const std::string& name) {
    static const std::map<std::string, std::vector<std::string>> keep = {
        {"sd1", {"time_embed.", "label_emb.", "input_blocks.0.0.", "out.2.", "conv_in.", "conv_out.",
                 "time_embedding.", "add_embedding."}},
        {"sdxl", {"time_embed.", "label_emb.", "input_blocks.0.0.", "out.2.", "conv_in.", "conv_out.",
                  "time_embedding.", "add_embedding."}},
        {"flux", {"img_in.", "time_in.", "vector_in.", "guidance_in.", "final_layer."}},
        {"sd3", {"x_embedder.", "t_embedder.", "y_embedder.", "context_embedder.", "final_layer."}},
    };
    const auto it = keep.find(arch);
    if (it == keep.end()) return false;
    for (const auto& p : it->second)
        if (starts_with(name, p)) return true;
    return false;
}

// llama-quantize's fallback for rows that are not whole K super-blocks.
GgmlType k_fallback(GgmlType t) {
    switch (t) {
        case GgmlType::Q4_K: return GgmlType::Q5_0;
        case GgmlType::Q5_K: return GgmlType::Q5_1;
        case GgmlType::Q6_K: return GgmlType::Q8_0;
        default: return t;
    }
}

}  // namespace

bool is_sensitive_tensor(const std::string& name) {
    static const char* const kParts[] = {".to_v.",        ".to_out.0.",     ".proj_out.",  ".ff.net.2.",
                                         ".img_attn.proj.", ".txt_attn.proj.", ".img_mlp.2.", ".txt_mlp.2.",
                                         ".linear2."};
    const std::string n = "." + name;
    for (const char* p : kParts)
        if (n.find(p) != std::string::npos) return true;
    return false;
}

std::optional<QuantizeRecipe> parse_quantize_recipe(const std::string& name) {
    std::string n;
    for (char c : name) n.push_back((char)std::tolower((unsigned char)c));
    if (n == "q4_k_m") return QuantizeRecipe{GgmlType::Q4_K, GgmlType::Q6_K};
    if (n == "q5_k_m") return QuantizeRecipe{GgmlType::Q5_K, GgmlType::Q6_K};
    GgmlType t;
    try {
        t = parse_ggml_type(n);
    } catch (const Error&) {
        return std::nullopt;
    }
    if (!can_quantize(t) || t == GgmlType::F32) return std::nullopt;
    return QuantizeRecipe{t, std::nullopt};
}

std::string gguf_detect_architecture(const std::map<std::string, Tensor>& t) {
    bool unet = false, sdxl = false;
    for (const auto& [k, v] : t) {
        if (starts_with(k, "double_blocks.")) return "flux";
        if (starts_with(k, "joint_blocks.")) return "sd3";
        if (starts_with(k, "label_emb.") || starts_with(k, "add_embedding.")) sdxl = true;
        if (starts_with(k, "input_blocks.") || starts_with(k, "down_blocks.")) unet = true;
    }
    return sdxl ? "sdxl" : unet ? "sd1" : "unknown";
}

GgufQuantizeSummary quantize_to_gguf(const WeightFile& in, const std::string& out_path, GgmlType type,
                                     GgufLayout layout, std::optional<GgmlType> sensitive) {
    for (const GgmlType t : {type, sensitive.value_or(type)})
        NUANCE_CHECK(can_quantize(t), "quantize: type ", ggml_type_info(t).name, " has no quantizer yet (available: "
                     "q8_0, q4_0, q4_1, q5_0, q5_1, q4_k, q5_k, q6_k, f16, bf16)");
    GgufQuantizeSummary sum;
    std::map<std::string, Tensor> model;
    bool original = false;
    for (const auto& [k, v] : in.tensors) original = original || starts_with(k, kLdmPrefix);
    const bool full = layout == GgufLayout::Full;
    NUANCE_CHECK(!full || original, "quantize: --layout full needs an original single-file checkpoint "
                 "(model.diffusion_model.* keys); '", in.path, "' has none");
    for (const auto& [k, v] : in.tensors) {
        if (!original) model[k] = v;
        else if (starts_with(k, kLdmPrefix)) model[k.substr(std::string(kLdmPrefix).size())] = v;
        else ++sum.dropped;
    }
    NUANCE_CHECK(!model.empty(), "quantize: '", in.path, "' holds no tensors");
    sum.architecture = gguf_detect_architecture(model);
    const bool shape_fix = sum.architecture == "sd1" || sum.architecture == "sdxl";
    if (full) {  // every tensor under its own key
        sum.dropped = 0;
        model = in.tensors;
    }

    std::vector<std::pair<std::string, GgufValue>> kv = {
        {"general.architecture", gguf_string(sum.architecture)},
        {"general.quantization_version", gguf_u32(2)},
        {"general.file_type", gguf_u32(sensitive ? (type == GgmlType::Q4_K ? 15u : type == GgmlType::Q5_K ? 17u
                                                                                                          : file_type(type))
                                                 : file_type(type))},
    };
    std::vector<std::pair<std::string, QuantizedTensor>> tensors;
    for (const auto& [name, t_in] : model) {
        const Tensor t = dequantize_weight(t_in);  // a GGUF input re-quantized: its blocks' values
        NUANCE_CHECK(dtype_is_float(t.dtype()), "quantize: tensor '", name, "' is ", dtype_name(t.dtype()),
                     ", not a float tensor");
        // Which component, and the name the Comfy rules see (the diffusion model's without its prefix).
        const bool denoiser = !full || starts_with(name, kLdmPrefix);
        const bool text_encoder = full && starts_with(name, "cond_stage_model.");
        const std::string rule_name = full && denoiser ? name.substr(std::string(kLdmPrefix).size()) : name;
        const Shape& s = t.shape();
        const int64_t n = t.numel();
        GgmlType base = (s.size() <= 1 || n <= kQuantizationThreshold) ? GgmlType::F32 : GgmlType::F16;
        Tensor x = t.f32().contiguous();
        if (denoiser && shape_fix && s.size() > 1 && n >= 512 && n % 256 == 0 && s.back() % 256 != 0) {
            kv.emplace_back("comfy.gguf.orig_shape." + name, gguf_i32_array(s));
            x = x.view({n / 256, 256});
        }
        GgmlType chosen = base;
        GgmlType want = sensitive && is_sensitive_tensor(rule_name) ? *sensitive : type;
        if (x.dim() == 2 && x.size(-1) % ggml_type_info(want).block != 0) want = k_fallback(want);
        const bool quantizable =
            ends_with(name, "weight") && x.dim() == 2 && x.size(-1) % ggml_type_info(want).block == 0;
        if (denoiser && quantizable && !kept_unquantized(sum.architecture, rule_name)) chosen = want;
        if (text_encoder && quantizable && name.find("embedding") == std::string::npos) chosen = want;
        QuantizedTensor q = quantize(x, chosen);
        sum.tensors_per_type[ggml_type_info(chosen).name] += 1;
        sum.bytes += q.packed.nbytes();
        tensors.emplace_back(name, std::move(q));
    }
    write_gguf(out_path, kv, tensors);
    return sum;
}

}  // namespace nuance
