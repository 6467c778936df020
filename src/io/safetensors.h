// safetensors: 8-byte LE header length N, N bytes of JSON {name: {dtype, shape, data_offsets}, "__metadata__"},
// then the raw little-endian data. Loaded with mmap; every field is checked before use (the file is hostile).
// FP8 tensors (F8_E4M3 = float8_e4m3fn, F8_E5M2) are converted to owned F16 tensors at load (exact), or, with
// Fp8Load::KeepMatrices, those of rank >= 2 stay as their mmap'd bytes: quantized-weight handles
// (core/quantized_weight.h) of the FP8 ggml ids, which Linear products and embedding lookups widen as they run.
#pragma once
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "io/weight_file.h"

namespace nuance {

enum class Fp8Load { ToF16, KeepMatrices };

bool is_safetensors_file(const std::string& path);  // by header sanity, not by extension
WeightFile load_safetensors(const std::string& path, Fp8Load fp8 = Fp8Load::ToF16);
// The same from bytes already in memory (tests, fuzzing); `name` is used in messages and as WeightFile::path.
// Tensors are views into `file` where aligned.
WeightFile load_safetensors(std::shared_ptr<Storage> file, const std::string& name, Fp8Load fp8 = Fp8Load::ToF16);

// Writes atomically: temp file in the same folder, fsync, rename. Tensors are written in the given order with their
// own dtype (contiguous copies are made as needed).
void save_safetensors(const std::string& path, const std::vector<std::pair<std::string, Tensor>>& tensors,
                      const std::map<std::string, std::string>& metadata = {});

// ComfyUI's "scaled" FP8 files (t5xxl_fp8_e4m3fn_scaled, *_fp8_scaled checkpoints): a "scaled_fp8" marker (under
// any prefix) and, per matrix X.weight, a one-element X.scale_weight: the weight's values are its FP8 values times the
// scale. load_safetensors applies this when the file has the marker: a weight kept as FP8 bytes carries the scale in
// its handle (products and lookups multiply by it), a widened one is multiplied once (into F16, checked for
// overflow); the scale tensors, X.scale_input (which only matters for FP8 activations) and the markers are dropped.
void fold_fp8_scales(std::map<std::string, Tensor>& tensors, const std::string& source);

DType parse_safetensors_dtype(const std::string& s);  // throws Unsupported for unknown dtypes

}  // namespace nuance
