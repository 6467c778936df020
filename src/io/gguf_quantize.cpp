#include "io/gguf_quantize.h"

#include "backends/backend.h"
#include "io/gguf.h"

#include <cctype>

#include "core/checked.h"
#include "core/quantized_weight.h"

namespace nuance {

namespace {

constexpr const char* kLdmPrefix = "model.diffusion_model.";
constexpr int64_t kQuantizationThreshold = 1024;  // convert.py: at most this many values stay F32

bool starts_with(const std::string& s, const std::string& p) { return s.rfind(p, 0) == 0; }
bool ends_with(const std::string& s, const std::string& p) {
    return s.size() >= p.size() && s.compare(s.size() - p.size(), p.size(), p) == 0;
}

// llama.cpp's llama_ftype for a file quantized to `t` alone.
uint32_t file_type(GgmlType t) {
    switch (t) {
        case GgmlType::F32: return 0;
        case GgmlType::F16: return 1;
        case GgmlType::Q4_0: return 2;
        case GgmlType::Q4_1: return 3;
        case GgmlType::Q8_0: return 7;
        case GgmlType::Q5_0: return 8;
        case GgmlType::Q5_1: return 9;
        case GgmlType::Q2_K: return 10;
        case GgmlType::Q3_K: return 11;  // Q3_K_S
        case GgmlType::Q4_K: return 14;  // Q4_K_S's number (its rules are the q4_k_s recipe)
        case GgmlType::Q5_K: return 16;  // Q5_K_S
        case GgmlType::Q6_K: return 18;
        case GgmlType::IQ4_NL: return 25;
        case GgmlType::IQ4_XS: return 30;
        case GgmlType::BF16: return 32;
        default: return 0;
    }
}

bool contains(const std::string& s, const char* part) { return s.find(part) != std::string::npos; }

// ComfyUI-GGUF's lcpp.patch keeps these in their convert.py type (plus the diffusers spellings of the UNet ones).
bool kept_unquantized(const std::string& arch, const std::string& name) {
    static const std::map<std::string, std::vector<std::string>> keep = {
        {"sd1", {"time_embed.", "label_emb.", "input_blocks.0.0.", "out.2.", "conv_in.", "conv_out.",
                 "time_embedding.", "add_embedding."}},
        {"sdxl", {"time_embed.", "label_emb.", "input_blocks.0.0.", "out.2.", "conv_in.", "conv_out.",
                  "time_embedding.", "add_embedding."}},
        // + the diffusers spellings of the same layers (a model's own module names, resident_tensor_type)
        {"flux", {"img_in.", "time_in.", "vector_in.", "guidance_in.", "final_layer.", "x_embedder.",
                  "time_text_embed.", "norm_out.", "proj_out."}},
        {"sd3", {"x_embedder.", "t_embedder.", "y_embedder.", "context_embedder.", "final_layer.", "pos_embed.",
                 "time_text_embed.", "norm_out.", "proj_out."}},
        {"dit", {"pos_embed.", "proj_out_1.", "proj_out_2."}},
    };
    if (arch == "dit" && contains(name, ".norm1.emb.")) return true;  // each block's timestep / class embedder
    const auto it = keep.find(arch);
    if (it == keep.end()) return false;
    for (const auto& p : it->second)
        if (starts_with(name, p)) return true;
    return false;
}

// llama-quantize's fallback for rows that are not whole K super-blocks.
GgmlType k_fallback(GgmlType t) {
    switch (t) {
        case GgmlType::Q2_K: case GgmlType::Q3_K: case GgmlType::Q4_K: return GgmlType::Q5_0;
        case GgmlType::Q5_K: return GgmlType::Q5_1;
        case GgmlType::Q6_K: return GgmlType::Q8_0;
        case GgmlType::IQ4_XS: return GgmlType::IQ4_NL;
        default: return t;
    }
}

// lcpp.patch's name tests (img_tensor_get_type), in its order: value projection, fused qkv, feed-forward output.
bool is_attn_v(const std::string& n) {
    return contains(n, "attn_v.weight") || contains(n, ".to_v.weight") || contains(n, ".v.weight") ||
           contains(n, ".attn.w1v.weight") || contains(n, ".attn.w2v.weight") || contains(n, "_attn.v_proj.weight");
}
bool is_attn_qkv(const std::string& n) {
    return contains(n, "attn_qkv.weight") || contains(n, "attn.qkv.weight") || contains(n, "attention.qkv.weight");
}
bool is_ffn_down(const std::string& n) {
    return contains(n, "ffn_down") || (contains(n, "experts.") && contains(n, ".w2.weight")) ||
           contains(n, ".ffn.2.weight") || contains(n, ".ff.net.2.weight") || contains(n, ".mlp.layer2.weight") ||
           contains(n, ".adaln_modulation_mlp.2.weight") || contains(n, ".feed_forward.w2.weight");
}

const std::vector<QuantizeRecipe>& mixed_recipes() {
    using T = GgmlType;
    static const std::vector<QuantizeRecipe> r = {
        {"q2_k", T::Q2_K, 10, T::Q3_K, T::Q3_K, 0, std::nullopt, std::nullopt},
        {"q3_k_s", T::Q3_K, 11, std::nullopt, std::nullopt, 0, std::nullopt, std::nullopt},
        {"q3_k_m", T::Q3_K, 12, T::Q5_K, T::Q4_K, 2, T::Q4_K, T::Q4_K},
        {"q3_k_l", T::Q3_K, 13, T::Q5_K, T::Q5_K, 0, T::Q4_K, T::Q5_K},
        {"q4_k_s", T::Q4_K, 14, T::Q5_K, std::nullopt, 4, std::nullopt, T::Q5_K},
        {"q4_k_m", T::Q4_K, 15, T::Q6_K, T::Q6_K, 0, T::Q5_K, T::Q6_K},
        {"q5_k_s", T::Q5_K, 16, std::nullopt, std::nullopt, 0, std::nullopt, std::nullopt},
        {"q5_k_m", T::Q5_K, 17, T::Q6_K, T::Q6_K, 0, T::Q6_K, T::Q6_K},
    };
    return r;
}

}  // namespace

QuantizeRecipe plain_recipe(GgmlType type) {
    std::string n = ggml_type_info(type).name;
    for (char& c : n) c = (char)std::tolower((unsigned char)c);
    return QuantizeRecipe{n, type, file_type(type), std::nullopt, std::nullopt, 0, std::nullopt, std::nullopt};
}

std::optional<QuantizeRecipe> parse_quantize_recipe(const std::string& name) {
    std::string n;
    for (char c : name) n.push_back((char)std::tolower((unsigned char)c));
    for (const QuantizeRecipe& r : mixed_recipes())
        if (r.name == n) return r;
    GgmlType t;
    try {
        t = parse_ggml_type(n);
    } catch (const Error&) {
        return std::nullopt;
    }
    if (!can_quantize(t) || t == GgmlType::F32) return std::nullopt;
    return plain_recipe(t);
}

std::string quantize_recipe_names() {
    return "q8_0, q4_0, q4_1, q5_0, q5_1, q2_k, q3_k, q4_k, q5_k, q6_k, iq4_nl, iq4_xs, q3_k_s, q3_k_m, q3_k_l, "
           "q4_k_s, q4_k_m, q5_k_s, q5_k_m, f16, bf16";
}

GgmlType recipe_tensor_type(const QuantizeRecipe& r, const std::string& name, int& attn_v_seen) {
    if (is_attn_v(name)) {
        const std::optional<GgmlType> t = attn_v_seen < r.attn_v_first ? r.attn_v : r.attn_v_later;
        ++attn_v_seen;
        return t.value_or(r.type);
    }
    if (is_attn_qkv(name)) return r.attn_qkv.value_or(r.type);
    if (is_ffn_down(name)) return r.ffn_down.value_or(r.type);
    return r.type;
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

GgufTensorChoice gguf_tensor_choice(const std::string& arch, const std::string& rule_name, const Shape& s,
                                    GgufComponent component, const QuantizeRecipe& recipe, int& attn_v_seen) {
    const bool denoiser = component == GgufComponent::Denoiser;
    const bool shape_fix = arch == "sd1" || arch == "sdxl";
    int64_t n = 1;
    for (int64_t d : s) n = mul_or_throw<int64_t>(n, d, "quantize: tensor size");
    GgufTensorChoice c;
    c.type = (s.size() <= 1 || n <= kQuantizationThreshold) ? GgmlType::F32 : GgmlType::F16;
    c.stored = s;
    if (denoiser && shape_fix && s.size() > 1 && n >= 512 && n % 256 == 0 && s.back() % 256 != 0) {
        c.stored = {n / 256, 256};
        c.shape_fixed = true;
    }
    const bool candidate = ends_with(rule_name, "weight") && c.stored.size() == 2 &&
                           ((denoiser && !kept_unquantized(arch, rule_name)) ||
                            (component == GgufComponent::TextEncoder && rule_name.find("embedding") == std::string::npos));
    if (candidate) {
        GgmlType want = recipe_tensor_type(recipe, rule_name, attn_v_seen);
        if (c.stored.back() % ggml_type_info(want).block != 0) want = k_fallback(want);
        if (c.stored.back() % ggml_type_info(want).block == 0) c.type = want;
    }
    return c;
}

GgmlType resident_tensor_type(const std::string& arch, const std::string& rule_name, const Shape& s,
                              GgufComponent component, const QuantizeRecipe& recipe, int& attn_v_seen) {
    if (s.size() < 2 || !ends_with(rule_name, "weight") || s[0] <= 0) return GgmlType::F32;
    int64_t n = 0;
    NUANCE_CHECK(shape_numel_checked(s, &n), "quantize: weight '", rule_name, "' ", shape_str(s), " is too large");
    const bool candidate = (component == GgufComponent::Denoiser && !kept_unquantized(arch, rule_name)) ||
                           (component == GgufComponent::TextEncoder && rule_name.find("embedding") == std::string::npos);
    if (!candidate || n == 0) return GgmlType::F32;
    const int64_t row = n / s[0];
    GgmlType want = recipe_tensor_type(recipe, rule_name, attn_v_seen);
    if (row % ggml_type_info(want).block != 0) want = k_fallback(want);
    return row % ggml_type_info(want).block == 0 ? want : GgmlType::F32;
}

size_t resident_weight_bytes(const Shape& s, GgmlType t) {
    const GgmlTypeInfo& ti = ggml_type_info(t);
    int64_t n = 0;
    NUANCE_CHECK(shape_numel_checked(s, &n) && s.size() >= 2 && s[0] > 0 && n % s[0] == 0 && (n / s[0]) % ti.block == 0, "quantize: a weight of ",
                 shape_str(s), " has no whole ", ti.name, " rows");
    return mul_or_throw<size_t>((size_t)s[0], (size_t)((n / s[0]) / ti.block * ti.bytes), "quantize: weight size");
}

Tensor quantize_weight_into(const Tensor& w, GgmlType t, uint8_t* dst, std::shared_ptr<void> keepalive,
                            bool file_backed) {
    const GgmlTypeInfo& ti = ggml_type_info(t);
    const size_t bytes = resident_weight_bytes(w.shape(), t);
    const int64_t rows = w.size(0), k = w.numel() / rows, row_bytes = k / ti.block * ti.bytes;
    const Tensor f = w.f32().contiguous();
    const float* src = f.data<float>();
#pragma omp parallel for schedule(static) if (rows * k > (1 << 16))
    for (int64_t r = 0; r < rows; ++r) quantize_row(t, src + r * k, dst + r * row_bytes, k);
    return make_quantized_weight((uint32_t)t, ti.name, ti.block, ti.bytes, dst, bytes, std::move(keepalive), w.shape(),
                                 file_backed);
}

bool sdcpp_quantizes(const std::string& name, const Shape& shape, GgmlType t) {
    if (shape.size() < 2 || !ends_with(name, ".weight") || shape.back() % ggml_type_info(t).block != 0) return false;
    for (const char* keep : {"img_in.", "txt_in.", "time_in.", "vector_in.", "guidance_in.", "final_layer.",
                             "x_embedder.", "t_embedder.", "y_embedder.", "pos_embed", "context_embedder.",
                             "time_embed.", "label_emb.", "embedding"})
        if (contains(name, keep)) return false;
    return true;
}

GgufQuantizeSummary quantize_to_gguf(const WeightFile& in, const std::string& out_path, const QuantizeRecipe& recipe,
                                     GgufLayout layout) {
    for (const std::optional<GgmlType> t :
         {std::optional(recipe.type), recipe.attn_v, recipe.attn_v_later, recipe.attn_qkv, recipe.ffn_down})
        NUANCE_CHECK(!t || can_quantize(*t), "quantize: type ", ggml_type_info(*t).name,
                     " has no quantizer (available: ", quantize_recipe_names(), ")");
    GgufQuantizeSummary sum;
    std::map<std::string, Tensor> model;
    bool original = false;
    for (const auto& [k, v] : in.tensors) original = original || starts_with(k, kLdmPrefix);
    const bool sdcpp = layout == GgufLayout::SdCpp;
    const bool full = layout == GgufLayout::Full || sdcpp;
    NUANCE_CHECK(!full || original, "quantize: --layout ", sdcpp ? "sdcpp" : "full",
                 " needs an original single-file checkpoint (model.diffusion_model.* keys); '", in.path, "' has none");
    for (const auto& [k, v] : in.tensors) {
        if (!original) model[k] = v;
        else if (starts_with(k, kLdmPrefix)) model[k.substr(std::string(kLdmPrefix).size())] = v;
        else ++sum.dropped;
    }
    NUANCE_CHECK(!model.empty(), "quantize: '", in.path, "' holds no tensors");
    sum.architecture = gguf_detect_architecture(model);
    if (full) {  // every tensor under its own key
        sum.dropped = 0;
        model = in.tensors;
    }

    std::vector<std::pair<std::string, GgufValue>> kv = {
        {"general.architecture", gguf_string(sum.architecture)},
        {"general.quantization_version", gguf_u32(2)},
        {"general.file_type", gguf_u32(recipe.file_type)},
    };
    int attn_v_seen = 0, attn_v_seen_te = 0;  // per component: the text encoder of --layout full counts its own
    // Plan every tensor from its name and shape alone, then write them one at a time (write_gguf's produce): only
    // one tensor's f32 copy and blocks are held, and the input's pages are let go after use, so peak memory stays
    // near the largest tensor's instead of the whole output's.
    std::vector<GgufTensorPlan> plan;
    std::vector<const Tensor*> source;
    for (const auto& [name, t_in] : model) {
        NUANCE_CHECK(dtype_is_float(t_in.dtype()) || quantized_weight_view(t_in).has_value(), "quantize: tensor '",
                     name, "' is ", dtype_name(t_in.dtype()), ", not a float tensor");
        // Which component, and the name the Comfy rules see (the diffusion model's without its prefix).
        const bool denoiser = !full || starts_with(name, kLdmPrefix);
        const bool text_encoder =  // SD1/SD2's cond_stage_model, SDXL's two conditioner.embedders
            full && (starts_with(name, "cond_stage_model.") || starts_with(name, "conditioner.embedders."));
        const std::string rule_name = full && denoiser ? name.substr(std::string(kLdmPrefix).size()) : name;
        const GgufComponent comp = denoiser ? GgufComponent::Denoiser
                                   : text_encoder ? GgufComponent::TextEncoder
                                                  : GgufComponent::Other;
        GgufTensorChoice c;
        if (sdcpp) {  // sd.cpp's converter: own shape; its name rule; the recipe's per-tensor types where they fit
            c.stored = t_in.shape();
            const GgmlType want = recipe_tensor_type(recipe, rule_name, denoiser ? attn_v_seen : attn_v_seen_te);
            c.type = sdcpp_quantizes(name, c.stored, want) ? want
                     : c.stored.size() <= 1                ? GgmlType::F32
                                                           : GgmlType::F16;
        } else {
            c = gguf_tensor_choice(sum.architecture, rule_name, t_in.shape(), comp, recipe,
                                   denoiser ? attn_v_seen : attn_v_seen_te);
        }
        const int64_t n = t_in.numel();
        if (c.shape_fixed) kv.emplace_back("comfy.gguf.orig_shape." + name, gguf_i32_array(t_in.shape()));
        const Shape stored = c.stored;
        const GgmlType chosen = c.type;
        const GgmlTypeInfo& ti = ggml_type_info(chosen);
        sum.tensors_per_type[ti.name] += 1;
        sum.bytes += (uint64_t)(n / ti.block * ti.bytes);
        plan.push_back({name, chosen, stored});
        source.push_back(&t_in);
    }
    write_gguf(out_path, kv, plan, [&](size_t i) {
        const Tensor& t_in = *source[i];
        // A GGUF input re-quantized: its blocks' values. One f32 copy of this tensor at a time.
        QuantizedTensor q = quantize(dequantize_weight(t_in).f32().contiguous().view(plan[i].shape), plan[i].type);
        release_file_pages(t_in);
        return q;
    });
    return sum;
}

}  // namespace nuance
