// NumPy .npy files (format 1.0 / 2.0 / 3.0): float matrices such as saved feature vectors (np.save(path, feats)).
#pragma once
#include <string>

#include "core/tensor.h"

namespace nuance {

// A C-order little-endian '<f4' / '<f8' / '<f2' array of any rank (0..8) -> F32 / F64 / F16 tensor (a copy).
// Errors name the file and the header field (magic, version, header length, descr, fortran_order, shape, data
// size); the data size is checked against the file size before anything is read.
Tensor read_npy(const std::string& path);
// From bytes in memory; `name` names them in errors.
Tensor parse_npy(const uint8_t* data, size_t size, const std::string& name);
// Writes a contiguous F32/F64 tensor as a version 1.0 .npy (atomically).
void write_npy(const std::string& path, const Tensor& t);

}  // namespace nuance
