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

GgufQuantizeSummary quantize_to_gguf(const WeightFile& in, const std::string& out_path, GgmlType type);

}  // namespace nuance
