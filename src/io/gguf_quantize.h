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
// checkpoint under its full key (model.diffusion_model.*, cond_stage_model.*, first_stage_model.*, as
// stable-diffusion.cpp's files), so that `nuance generate -m FILE.gguf` runs from it alone: the diffusion model's
// tensors follow the Comfy rules (shape fix and comfy.gguf.orig_shape included, so its 3x3 convs are quantized too:
// nuance reads that key under any name; stable-diffusion.cpp does not, and reads only the files it writes itself),
// text encoder weights are quantized where their rows allow (not the token / position embeddings: gathers), the VAE
// stays F16 / F32.
enum class GgufLayout { Comfy, Full };

// `type` for every quantized tensor, except the sensitive ones (`sensitive`, when given: the _K_M recipes below).
// A K-quant tensor whose rows are not whole 256-value super-blocks falls back as llama-quantize does: Q4_K -> Q5_0,
// Q5_K -> Q5_1, Q6_K -> Q8_0.
GgufQuantizeSummary quantize_to_gguf(const WeightFile& in, const std::string& out_path, GgmlType type,
                                     GgufLayout layout = GgufLayout::Comfy,
                                     std::optional<GgmlType> sensitive = std::nullopt);

// The mixed recipes (llama.cpp's Q4_K_M / Q5_K_M idea, as ComfyUI-GGUF's _K_M files for image models): "q4_k_m" =
// Q4_K with the sensitive tensors at Q6_K, "q5_k_m" = Q5_K with them at Q6_K. Sensitive: the attention value and
// output projections and the feed-forward output (llama.cpp's attn_v / attn_output / ffn_down): to_v, to_out.0,
// proj_out, ff.net.2 (UNet / SD3), img_attn.proj, txt_attn.proj, img_mlp.2, txt_mlp.2, linear2 (Flux). The keep
// list (time embeddings, in/out layers) and 1-D / small tensors stay F32 / F16 as in every recipe.
struct QuantizeRecipe {
    GgmlType type;
    std::optional<GgmlType> sensitive;
};
// "q8_0" ... "q6_k", "q4_k_m", "q5_k_m", "f16", "bf16" (any case); nullopt for anything else.
std::optional<QuantizeRecipe> parse_quantize_recipe(const std::string& name);
bool is_sensitive_tensor(const std::string& name);

}  // namespace nuance
