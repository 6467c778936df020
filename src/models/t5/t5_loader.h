// Loading the T5 encoder from the files people use (the SD3 / Flux families call these):
//   * t5xxl_fp16.safetensors / t5xxl_fp8_e4m3fn.safetensors: transformers keys (shared.weight or
//     encoder.embed_tokens.weight, encoder.block.N...), F16 / BF16 / F32, or F8_E4M3 / F8_E5M2: a T5 file given by
//     path keeps its FP8 matrices as FP8 bytes in memory (mmap'd, 4.9 GB for T5-XXL instead of 9.5 GB of F16); each
//     product widens one layer's weight to the compute dtype as it runs (exact: every FP8 value is a bf16 value) and
//     the embedding widens the rows it looks up. ComfyUI's scaled fp8 (X.scale_weight) is multiplied in once, into
//     F16; FP8 tensors inside a whole-model file are converted to F16 by the safetensors reader;
//   * SD3 all-in-one checkpoints: the same keys under "text_encoders.t5xxl.transformer." (any prefix ending in '.'
//     is found from the key of block 0's q weight);
//   * a diffusers text_encoder_3/ (SD3) or text_encoder_2/ (Flux) folder: config.json + model.safetensors, or
//     model-0000N-of-0000M.safetensors shards with model.safetensors.index.json; or the pipeline root holding it.
// Weight matrices stay as stored (mmap'd) and run in `precision` (Auto, the default: default_precision(), bf16
// where the CPU has bf16 dot products, since fp32 T5-XXL does not fit a 24 GB machine); the ops pack them
// once, on first use (T5-XXL: 9.5 GB packed as bf16, 19 GB as f32); FP8 matrices are never packed.
#pragma once
#include <map>
#include <memory>
#include <string>

#include <nlohmann/json_fwd.hpp>

#include "core/dtype.h"
#include "io/weight_file.h"
#include "models/t5/t5_encoder.h"
#include "text/t5_tokenizer.h"

namespace nuance {

// The key prefix of the T5 encoder in `tensors` ("" or e.g. "text_encoders.t5xxl.transformer."); NotFound when
// there is no "<prefix>encoder.block.0.layer.0.SelfAttention.q.weight", InvalidArgument when several prefixes have one.
std::string find_t5_prefix(const std::map<std::string, Tensor>& tensors, const std::string& source);

// From tensors already loaded (views are kept: nothing is copied for F16/BF16/F32 matrices). `prefix` "" or ending
// in '.'; hf_config (optional) is a transformers config.json object. Errors name `source`.
std::unique_ptr<T5EncoderModel> load_t5_encoder(const std::map<std::string, Tensor>& tensors,
                                                const std::string& prefix, const std::string& source,
                                                Precision precision = Precision::Auto,
                                                const nlohmann::json* hf_config = nullptr);
// From a weight file (prefix found with find_t5_prefix when `prefix` is "auto").
std::unique_ptr<T5EncoderModel> load_t5_encoder(const WeightFile& file, const std::string& prefix = "auto",
                                                Precision precision = Precision::Auto);
// From a path: a weight file (safetensors, .bin/.pt zip, *.index.json), a diffusers text encoder folder, or a
// diffusers pipeline folder (text_encoder_3/, else text_encoder_2/ when it holds a T5).
std::unique_ptr<T5EncoderModel> load_t5_encoder(const std::string& path, Precision precision = Precision::Auto);

// The text conditioning SD3 (max_length 256) and Flux (512) take from T5: each prompt tokenized as
// T5Tokenizer(legacy=True)(p, padding='max_length', max_length, truncation=True), encoded without an attention mask
// (as diffusers' pipelines call it) -> last_hidden_state [B, max_length, d_model].
Tensor encode_t5_prompts(const T5EncoderModel& model, const std::vector<std::string>& prompts, int max_length,
                         const T5Tokenizer& tokenizer = T5Tokenizer::builtin());

// One prompt as SD3 / Flux take it from T5, F32 [1, max_length, d_model]. weighted = false: encode_t5_prompts
// (the text literally, as diffusers). weighted = true: the A1111 syntax (text/t5_prompt.h tokenize_t5_weighted) with
// ComfyUI's weighting: when some token's weight is not 1, the empty prompt ([</s>, <pad> ...]) is encoded too and
// each weighted token is moved away from it (apply_t5_token_weights). A prompt without syntax gives exactly the
// unweighted output.
Tensor encode_t5_prompt(const T5EncoderModel& model, const std::string& prompt, int max_length, bool weighted,
                        const T5Tokenizer& tokenizer = T5Tokenizer::builtin());

}  // namespace nuance
