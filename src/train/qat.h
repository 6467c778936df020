// Quantization-aware training (`nuance train --model ldm --init MODEL --qat TYPE`; Jacob et al. 2018, "Quantization
// and Training of Integer-Arithmetic-Only Inference"): during each step's forward and backward the UNet weights that
// `nuance quantize --type TYPE` would quantize hold their round trip through the exported file and the GGUF blocks
// (f32 -> f16 as the export writes them -> TYPE's quantizer -> dequantized), so the loss is the quantized model's;
// the gradient taken at those values is applied to the f32 master weights (the straight-through estimator, Bengio et
// al. 2013). Which tensors and which type per tensor (mixed recipes such as q4_k_m, the K-quant fallbacks, the sd1
// shape fix) come from io/gguf_quantize.h's gguf_tensor_choice, the function the quantizer itself uses, so the
// weights trained against are bit for bit the ones the .gguf will hold. The text encoder is not quantized
// (`nuance quantize` writes the UNet only).
#pragma once
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "autograd/param_grads.h"
#include "io/gguf_quantize.h"

namespace nuance {

// The recipe `nuance train --qat NAME` simulates: parse_quantize_recipe's names, "int8" for q8_0; not f32.
std::optional<QuantizeRecipe> qat_recipe(const std::string& name);

// `w` (F32) as the GGUF file quantized to `type` holds it, dequantized: f16-rounded first (the export's dtype), the
// values quantized in rows of stored.back() (stored: gguf_tensor_choice's shape, the same number of values as w).
Tensor fake_quantize(const Tensor& w, GgmlType type, const Shape& stored);

class FakeQuantizer {
public:
    // The parameters of `params` named `prefix` + <a UNet tensor name as the exported file has it> that `recipe`
    // quantizes ("q8_0", "q4_k_m", ...; f16 / bf16 round to that type). Fails when it would quantize none.
    FakeQuantizer(ParamGrads& params, const std::string& prefix, const QuantizeRecipe& recipe);
    // Puts the round-tripped values in the parameters (the leaves follow them); the master weights are kept.
    void apply();
    // Puts the master weights back (before the optimizer step, the EMA and checkpoints). A no-op when not applied.
    void restore();
    bool applied() const { return applied_; }
    size_t size() const { return targets_.size(); }
    int64_t numel() const;
    // ggml type name -> tensors, for the log.
    std::map<std::string, int64_t> tensors_per_type() const;

private:
    struct Target {
        Param* param;
        std::string name;
        GgmlType type;
        Shape stored;
        Tensor master;
    };
    std::vector<Target> targets_;
    bool applied_ = false;
};

}  // namespace nuance
