// NumPy .npy files (format 1.0 / 2.0 / 3.0), the one reader and writer of the project: feature matrices
// (np.save(path, feats)) and the members of pytorch-fid's .npz statistics (eval/stats_npz.h).
#pragma once
#include <cstdint>
#include <string>

#include "core/tensor.h"

namespace nuance {

// Bounds a caller puts on what it accepts, checked on the header before any data is copied.
struct NpyLimits {
    int max_rank = 8;
    int64_t max_dim = INT64_MAX;          // every dimension
    uint64_t max_elements = 1ull << 40;   // their product
};

// A little-endian '<f4' / '<f8' / '<f2' array of any rank in C or Fortran order -> a C-order F32 / F64 / F16 tensor
// (a copy). Errors name `name` and the header field (magic, version, header length, descr, fortran_order, shape,
// data size); the data size is checked against the bytes there are before anything is read.
Tensor parse_npy(const uint8_t* data, size_t size, const std::string& name, const NpyLimits& limits = {});
Tensor read_npy(const std::string& path, const NpyLimits& limits = {});
// A contiguous F32/F64 tensor as version 1.0 .npy bytes (np.save's header, padded to 64 bytes).
std::string npy_bytes(const Tensor& t);
// npy_bytes, written atomically.
void write_npy(const std::string& path, const Tensor& t);

}  // namespace nuance
