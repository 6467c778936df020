// `nuance quantize`: a checkpoint's diffusion model (UNet / transformer) as a ComfyUI-GGUF file, following
// ComfyUI-GGUF's tools/convert.py + lcpp.patch (llama-quantize) rules so that ComfyUI-GGUF and stable-diffusion.cpp
// load the result:
//   - keys: an original single-file checkpoint's model.diffusion_model.* with the prefix stripped (the other
//     components are left out); a bare UNet / transformer file's keys as they are;
//   - base type: F32 for 1-D tensors and tensors of at most 1024 values, F16 otherwise;
//   - shape fix (sd1/sdxl): a tensor of >1 dims, >= 512 values, a multiple of 256 values and a last dimension that
//     is not, is stored as [n / 256, 256] with comfy.gguf.orig_shape.<name> = its torch shape (i32 array);
//   - quantized to `type`: tensors named *weight, stored 2-D, whose row length is a multiple of the block and that
//     are not on the architecture's keep list (embeddings in and out: time_embed, label_emb, conv_in/out, img_in ...);
//   - metadata: general.architecture, general.quantization_version = 2, general.file_type.
#pragma once
#include <map>
#include <memory>
#include <optional>
#include <string>

#include "backends/cpu/ggml_quants.h"
#include "io/weight_file.h"

namespace nuance {

struct GgufQuantizeSummary {
    std::string architecture;
    std::map<std::string, int64_t> tensors_per_type;  // ggml type name -> count
    int64_t dropped = 0;                              // tensors of other components left out
    uint64_t bytes = 0;                               // data bytes written
};

// Detects sd1 / sdxl / sd3 / flux from the (prefix-stripped) key names; "unknown" otherwise.
std::string gguf_detect_architecture(const std::map<std::string, Tensor>& t);

// Comfy: the ComfyUI-GGUF file above (the diffusion model only). Full: every tensor of an original single-file
// checkpoint under its full key (model.diffusion_model.*, cond_stage_model.* / SDXL's conditioner.embedders.*,
// first_stage_model.*, as
// stable-diffusion.cpp's files), so that `nuance generate -m FILE.gguf` runs from it alone: the diffusion model's
// tensors follow the Comfy rules (shape fix and comfy.gguf.orig_shape included, so its 3x3 convs are quantized too:
// nuance reads that key under any name; stable-diffusion.cpp does not, and reads only the files it writes itself),
// text encoder weights are quantized where their rows allow (not the token / position embeddings: gathers), the VAE
// stays F16 / F32.
// SdCpp: every tensor under its full key in its own shape, quantized as stable-diffusion.cpp's own converter
// (`sd -M convert`) does: a `.weight` whose last dimension (ggml's ne0) is a multiple of the type's block, except
// biases, scales, embeddings and the input/time/label/final layers it keeps (img_in, txt_in, time_in, vector_in,
// guidance_in, final_layer, x_embedder, t_embedder, y_embedder, pos_embed, context_embedder, time_embed, label_emb);
// the rest F16 (rank >= 2) or F32. 3x3 and 1x1 convolutions therefore stay F16, as in sd.cpp's files, which is what
// lets stable-diffusion.cpp load the file (it checks every tensor's shape against its model).
enum class GgufLayout { Comfy, Full, SdCpp };

// stable-diffusion.cpp's converter rule above: whether it quantizes the tensor `name` of `shape` to `t`.
bool sdcpp_quantizes(const std::string& name, const Shape& shape, GgmlType t);

// The recipes: a base type for every quantized tensor and ComfyUI-GGUF's per-tensor rules (tools/lcpp.patch,
// img_tensor_get_type: the llama-quantize ftypes for image models), which put three kinds of tensor higher:
//   attention value projections (to_v, attn_v, .v, _attn.v_proj): Q2_K -> Q3_K; Q3_K_M -> Q5_K for the first two
//     and Q4_K after; Q3_K_L -> Q5_K; Q4_K_S -> Q5_K for the first four; Q4_K_M / Q5_K_M -> Q6_K;
//   fused qkv (attn.qkv, attn_qkv: SD3 / Flux): Q3_K_M / Q3_K_L / Q4_K_M -> Q4_K / Q4_K / Q5_K; Q5_K_M -> Q6_K;
//   the feed-forward output (ff.net.2, ffn_down, ...): Q3_K_M -> Q4_K; Q3_K_L / Q4_K_S -> Q5_K; Q4_K_M / Q5_K_M -> Q6_K.
// ("first" counts in the order tensors are written: sorted names, as convert.py's files are.) The plain type names
// (q8_0, q4_0, ..., q3_k, q4_k, q5_k, q6_k) quantize every such tensor to that one type; q3_k is Q3_K_S and q5_k
// Q5_K_S, which have no rules. The keep list (time embeddings, in/out layers) and 1-D / small tensors stay F32 / F16
// in every recipe. A K-quant tensor whose rows are not whole 256-value super-blocks falls back as llama-quantize
// does: Q4_K -> Q5_0, Q5_K -> Q5_1, Q6_K -> Q8_0, and Q2_K / Q3_K -> Q5_0 (llama-quantize's IQ4_NL has no quantizer
// here; Q5_0 is lcpp.patch's listed fallback).
struct QuantizeRecipe {
    std::string name;     // "q4_k_m"
    GgmlType type;        // the base type
    uint32_t file_type;   // llama_ftype written as general.file_type
    std::optional<GgmlType> attn_v, attn_v_later;  // attention value projections: the first attn_v_first, the rest
    int attn_v_first = 0;
    std::optional<GgmlType> attn_qkv, ffn_down;
};
// "q8_0" ... "q6_k", "q2_k", "q3_k_s|m|l", "q4_k_s|m", "q5_k_s|m", "f16", "bf16" (any case); nullopt otherwise.
std::optional<QuantizeRecipe> parse_quantize_recipe(const std::string& name);
// Every name parse_quantize_recipe knows, for messages: "q8_0, q4_0, ...".
std::string quantize_recipe_names();
// The recipe of one type alone (no per-tensor rules).
QuantizeRecipe plain_recipe(GgmlType type);
// The type the recipe gives the quantizable tensor `name` (its name in the ComfyUI file) with base type `base`;
// `attn_v_seen` counts the value projections before it and is advanced.
GgmlType recipe_tensor_type(const QuantizeRecipe& r, const std::string& name, int& attn_v_seen);

// What quantize_to_gguf stores one tensor as (the rules above): its ggml type and the shape whose rows are quantized
// (2-D [n / 256, 256] where the sd1/sdxl shape fix applies: shape_fixed, written with comfy.gguf.orig_shape). `arch`:
// gguf_detect_architecture's; `rule_name`: the tensor's name in the ComfyUI file (a text encoder's under its full
// key); `attn_v_seen` counts this component's value projections written before it (tensors go in sorted name order)
// and is advanced. Quantization-aware training (train/qat.h) asks the same question.
enum class GgufComponent { Denoiser, TextEncoder, Other };
struct GgufTensorChoice {
    GgmlType type = GgmlType::F32;
    Shape stored;
    bool shape_fixed = false;
};
GgufTensorChoice gguf_tensor_choice(const std::string& arch, const std::string& rule_name, const Shape& shape,
                                    GgufComponent component, const QuantizeRecipe& recipe, int& attn_v_seen);

// The type a product weight gets when a model is quantized in memory as it loads (ModelLoadOptions::weight_type,
// `--type`): the same choice as gguf_tensor_choice's (keep list, recipe rules, K-quant fallback) for a weight named
// `rule_name` of torch shape `shape`, except that rows are the weight's own (numel / shape[0] values: a Linear's in
// features, a convolution's C * kh * kw), never ComfyUI's 256-value storage rows, so that the blocks can be computed
// on directly. F32 means "not quantized": rank < 2, a name that does not end in "weight", a kept layer, a text
// encoder's embedding, or rows that split the block of the type and of its fallback. `arch` takes the diffusers
// spellings of the kept layers too (sd3 / flux: x_embedder, time_text_embed, context_embedder (sd3), norm_out,
// proj_out; dit: pos_embed, the blocks' norm1.emb, proj_out_1/2).
GgmlType resident_tensor_type(const std::string& arch, const std::string& rule_name, const Shape& shape,
                              GgufComponent component, const QuantizeRecipe& recipe, int& attn_v_seen);

// Bytes of a weight of torch shape `s` quantized to `t` in its own rows (numel / s[0] values each, whole blocks).
size_t resident_weight_bytes(const Shape& s, GgmlType t);
// The float weight `w` quantized to `t` in its own rows into `dst` (resident_weight_bytes bytes; quantize_row per
// row, in parallel, over one f32 copy of w), returned as a quantized-weight handle of w's shape over `dst`, which
// `keepalive` keeps alive (file_backed: dst is a file mapping whose pages may be released).
Tensor quantize_weight_into(const Tensor& w, GgmlType t, uint8_t* dst, std::shared_ptr<void> keepalive,
                            bool file_backed);

GgufQuantizeSummary quantize_to_gguf(const WeightFile& in, const std::string& out_path, const QuantizeRecipe& recipe,
                                     GgufLayout layout = GgufLayout::Comfy);
inline GgufQuantizeSummary quantize_to_gguf(const WeightFile& in, const std::string& out_path, GgmlType type,
                                            GgufLayout layout = GgufLayout::Comfy) {
    return quantize_to_gguf(in, out_path, plain_recipe(type), layout);
}

}  // namespace nuance
