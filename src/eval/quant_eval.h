// `nuance eval-quant`: what each quantization type does to a model (issue 14 item 5).
//
//   golden   the tiny SD1.5 UNet of the golden case unet_sd15 (its input): the UNet's output with each type's
//            weights (`nuance quantize` rules, read back from the written GGUF) against its f32 weights, max and
//            mean |difference|, fp32 products.
//   images   a model (default: the built-in nuance-emoji) at fp32: `samples` images with the f32 UNet and, for each
//            type, the same prompts and seeds with the UNet replaced by the quantized GGUF's (weights kept as blocks
//            and computed on, as `nuance generate -m unet.gguf` runs them; text encoder and VAE unchanged): PSNR
//            (pooled MSE) and mean SSIM against the f32 images, and with an emoji classifier the share of images
//            it puts in the same category as the f32 image ("agreement") and its accuracy against the prompts'
//            categories (prompts from the emoji manifest when `data` is given, else the model's default prompt).
//   size     the UNet's GGUF data bytes and bits per UNet parameter.
#pragma once
#include "core/dtype.h"
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace nuance {

struct QuantEvalProgress {
    std::string recipe;  // "f32" for the reference images
    int64_t done = 0, total = 0;
};

struct QuantEvalOptions {
    std::string model;                 // SD-family model (folder or single file); "" = no image measurement
    std::vector<std::string> recipes;  // nuance quantize --type names
    std::string golden;                // the unet_sd15 golden case folder; "" = no golden measurement
    std::string classifier, data;      // optional: emoji classifier (`nuance train-classifier`) and emoji folder
    std::string work_dir;              // where the quantized GGUF files are written (required)
    int64_t samples = 32;
    int resolution = 0;  // 0 = the model's native size
    int steps = 20;
    float cfg = 5.0f;
    std::string sampler = "euler_a";
    uint64_t seed = 0;
    // Products of the quantized UNet (golden and images): FP32 measures the weights' error alone; BF16 / Auto what
    // generate runs (bf16 products, W8A8 for the integer block types on VNNI). The f32 reference is always fp32.
    Precision precision = Precision::FP32;
    std::function<void(const QuantEvalProgress&)> on_progress;
};

// Report: settings, reference_accuracy, and "rows": one object per recipe in order {recipe, golden {max_abs,
// mean_abs}, unet_bytes, bits_per_param, psnr (or identical: true, when every image equals its f32 image), ssim,
// agreement, accuracy} (keys present where measured).
nlohmann::json evaluate_quantization(const QuantEvalOptions& o);

// The report as a Markdown table (one row per recipe).
std::string quant_eval_markdown(const nlohmann::json& report);

}  // namespace nuance
