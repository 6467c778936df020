// Internal to src/models/convert: per-component converters of the original single-file layout and the small key
// helpers they share. Keys passed in and out carry no component prefix ("input_blocks.1.0.in_layers.0.weight",
// "encoder.down.0.block.0.conv1.weight", "transformer.resblocks.0.ln_1.weight").
#pragma once
#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "core/tensor.h"

namespace nuance::original_format {

using TensorMap = std::map<std::string, Tensor>;

// UNet: CompVis openaimodel names <-> diffusers UNet2DConditionModel names.
// encoder_only: no output_blocks/out expected (a ControlNet's copy of the encoder half).
TensorMap unet_from_original(const TensorMap& ldm, bool encoder_only = false);
TensorMap unet_to_original(const TensorMap& unet);

// VAE: CompVis AutoencoderKL names <-> diffusers AutoencoderKL names.
TensorMap vae_from_original(const TensorMap& ldm);
TensorMap vae_to_original(const TensorMap& vae);

// Text encoders. HF layout: keys under a `transformer.` module (with or without `text_model.`).
// OpenCLIP layout: keys under a `model.` module (fused in_proj, text_projection stored [D, P]).
TensorMap clip_from_hf(const TensorMap& hf);
TensorMap clip_from_open_clip(const TensorMap& oc);
TensorMap clip_to_open_clip(const TensorMap& hf);

// ---- helpers ----
std::vector<std::string> split_key(const std::string& key);  // on '.'
std::string join_key(const std::vector<std::string>& parts, size_t from, size_t to = SIZE_MAX);
int64_t parse_index(std::string_view s);  // decimal block index, -1 when not one (or absurdly large)
// Throws when `indices` is not exactly 0..n-1, naming the first missing index and listing what was found.
void check_contiguous(const std::string& what, const std::set<int64_t>& indices);
std::string index_ranges(const std::set<int64_t>& indices);  // "0-3, 5-11"
// Inserts, failing (Internal) on a duplicate target key: two source keys must never map to one name.
void put(TensorMap& out, const std::string& key, const Tensor& t);
// Row concatenation of same-dtype tensors with equal trailing dims (fresh contiguous memory).
Tensor concat_rows(const std::vector<Tensor>& ts);

}  // namespace nuance::original_format
