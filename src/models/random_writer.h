// Streaming writer of random-weight safetensors files: the header is made from (key, shape) alone, then each tensor is
// drawn, converted and written in chunks, so writing a 24 GB Flux-dev file holds a few MiB of weights at a time
// (make-random's full-size files; nothing can be downloaded here). Values are seeded per tensor (seed and key), so a
// tensor's values do not depend on the order or on the other tensors of the file.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace nuance {

struct RandomTensor {
    std::string key;
    Shape shape;
    Tensor value;  // when defined: written as it is (converted to the file's dtype) instead of drawn
};

// How a drawn tensor is filled: 1-D norm scales (".scale", "norm*.weight", "ln_*.weight") are ones, other 1-D tensors
// N(0, 0.02^2), matrices and tables N(0, 1/fan_in) with fan_in = the product of the dims after the first.
enum class RandomInit { Ones, Small, FanIn };
RandomInit random_init_of(const std::string& key, const Shape& shape);

// Writes `tensors` in the given order to `path` (atomic: temp file + rename), each in `dtype` (F32, F16 or BF16).
// Checks: keys unique and non-empty, every dim >= 1, the byte offsets free of overflow. Returns the element count.
// fp8_matrices: the drawn weight matrices (rank >= 2, named *.weight) as F8_E4M3 (float8_e4m3fn, round to nearest
// even, as flux1-dev-fp8 / t5xxl_fp8_e4m3fn files store them); given values (the VAEs) and the rest stay in `dtype`.
int64_t write_random_safetensors(const std::string& path, const std::vector<RandomTensor>& tensors, DType dtype,
                                 uint64_t seed, const std::map<std::string, std::string>& metadata = {},
                                 bool fp8_matrices = false);

}  // namespace nuance
