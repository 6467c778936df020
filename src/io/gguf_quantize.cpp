#include "io/gguf_quantize.h"

#include "io/gguf.h"

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

}  // namespace

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

GgufQuantizeSummary quantize_to_gguf(const WeightFile& in, const std::string& out_path, GgmlType type) {
    const GgmlTypeInfo& ti = ggml_type_info(type);
    NUANCE_CHECK(can_quantize(type), "quantize: type ", ti.name, " has no quantizer yet (available: q8_0, q4_0, "
                 "q4_1, q5_0, q5_1, f16, bf16)");
    GgufQuantizeSummary sum;
    std::map<std::string, Tensor> model;
    bool original = false;
    for (const auto& [k, v] : in.tensors) original = original || starts_with(k, kLdmPrefix);
    for (const auto& [k, v] : in.tensors) {
        if (!original) model[k] = v;
        else if (starts_with(k, kLdmPrefix)) model[k.substr(std::string(kLdmPrefix).size())] = v;
        else ++sum.dropped;
    }
    NUANCE_CHECK(!model.empty(), "quantize: '", in.path, "' holds no tensors");
    sum.architecture = gguf_detect_architecture(model);
    const bool shape_fix = sum.architecture == "sd1" || sum.architecture == "sdxl";

    std::vector<std::pair<std::string, GgufValue>> kv = {
        {"general.architecture", gguf_string(sum.architecture)},
        {"general.quantization_version", gguf_u32(2)},
        {"general.file_type", gguf_u32(file_type(type))},
    };
    std::vector<std::pair<std::string, QuantizedTensor>> tensors;
    for (const auto& [name, t] : model) {
        NUANCE_CHECK(dtype_is_float(t.dtype()), "quantize: tensor '", name, "' is ", dtype_name(t.dtype()),
                     ", not a float tensor");
        const Shape& s = t.shape();
        const int64_t n = t.numel();
        GgmlType base = (s.size() <= 1 || n <= kQuantizationThreshold) ? GgmlType::F32 : GgmlType::F16;
        Tensor x = t.f32().contiguous();
        if (shape_fix && s.size() > 1 && n >= 512 && n % 256 == 0 && s.back() % 256 != 0) {
            kv.emplace_back("comfy.gguf.orig_shape." + name, gguf_i32_array(s));
            x = x.view({n / 256, 256});
        }
        GgmlType chosen = base;
        if (ends_with(name, "weight") && x.dim() == 2 && x.size(-1) % ti.block == 0 &&
            !kept_unquantized(sum.architecture, name))
            chosen = type;
        QuantizedTensor q = quantize(x, chosen);
        sum.tensors_per_type[ggml_type_info(chosen).name] += 1;
        sum.bytes += q.packed.nbytes();
        tensors.emplace_back(name, std::move(q));
    }
    write_gguf(out_path, kv, tensors);
    return sum;
}

}  // namespace nuance
