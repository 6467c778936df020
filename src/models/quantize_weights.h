// Quantizing a loaded model's weights in memory (`nuance generate --type q8_0`, ModelLoadOptions::weight_type, as
// stable-diffusion.cpp's --type): every product weight (Linear / Conv2d) of the denoiser and of the text encoders
// that `nuance quantize` would quantize becomes a block-quantized weight (core/quantized_weight.h), so a safetensors
// or .ckpt checkpoint runs on the quantized kernels (W8A8 at bf16) with the quantized file's memory, without writing
// a GGUF first. The choice of tensors and types is io/gguf_quantize.h's (resident_tensor_type: keep list, recipe
// rules, K-quant fallback), with the weights' own rows; for an SD1.x / SD2 checkpoint and the block-32 types the
// blocks are bit for bit those of `nuance quantize --layout full` loaded back. The VAE keeps its weights. Weights
// that are already quantized (a GGUF file's blocks, FP8) stay as they are.
#pragma once
#include <cstdint>
#include <map>
#include <string>

#include "io/gguf_quantize.h"
#include "models/diffusion_model.h"

namespace nuance {

struct QuantizeWeightsSummary {
    std::string recipe;                              // "q8_0", "q4_k_m" ...
    std::map<std::string, int64_t> tensors_per_type;  // ggml type name -> weights quantized to it
    int64_t kept = 0;                                // product weights left as they were (kept layers, odd rows)
    int64_t already_quantized = 0;                   // product weights that were blocks already
    uint64_t bytes_before = 0;                       // the quantized weights' bytes as loaded (file dtype)
    uint64_t bytes_after = 0;                        // ... and as blocks
    double seconds = 0;
    bool spilled = false;   // the blocks live in a scratch file (QuantizeWeightsOptions::spill)
    std::string spill_note;  // where, or why not
    std::string describe() const;  // "686 weights -> q8_0 (1640 MB -> 871 MB), 12 kept, in 2.31 s"
};

// The architecture name the recipe rules know for a model family ("sd1" for sd1 / sd2, "sdxl", "sd3", "flux",
// "dit"; the family's own name otherwise, which has no keep list).
std::string quantize_rules_arch(const std::string& family);

struct QuantizeWeightsOptions {
    bool text_encoders = true;  // the text encoders too (else the denoiser alone)
    // Where the blocks live. spill: in one unlinked scratch file (in spill_dir; "": $TMPDIR, else /var/tmp), mapped,
    // so that they behave as a GGUF file's blocks do: their pages leave the process when it lets them go (before the
    // VAE decode, and once a Q8_0 weight's int8 tiles are built and kept) and come back from the page cache. Without a
    // usable scratch file (missing, full, or a memory file system), and with spill off: the process's own memory.
    // NUANCE_QUANT_SPILL=0 in the environment turns the default off.
    bool spill = spill_default();
    std::string spill_dir;
    static bool spill_default();
};

// Quantizes `m`'s denoiser ("unet" / "transformer") and (options.text_encoders) its "text_encoder*" modules in place
// (the file pages of the float weights are given back as each is replaced). The recipe must have quantizers for its
// types (parse_quantize_recipe's f16 / bf16 are refused: InvalidArgument). Not thread-safe against a model in use.
QuantizeWeightsSummary quantize_model_weights(DiffusionModel& m, const QuantizeRecipe& recipe,
                                              const QuantizeWeightsOptions& options = {});

// parse_quantize_recipe for ModelLoadOptions::weight_type / --type: the recipe, or an InvalidArgument naming `what`
// and the accepted names (the block types and mixed recipes; f16 / bf16 are not quantizations here).
QuantizeRecipe parse_weight_type(const std::string& name, const char* what = "--type");

}  // namespace nuance
