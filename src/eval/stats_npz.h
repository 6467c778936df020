// FID statistics files compatible with pytorch-fid's .npz (np.savez(path, mu=mu, sigma=sigma)): a zip of mu.npy
// [D] and sigma.npy [D, D]. Read: stored or deflated members, each through io/npy.h (format 1.0/2.0/3.0, dtype <f8
// or <f4, C or Fortran order, every size and offset checked; D at most 16384). Written: stored members, NPY 1.0, <f8
// (as np.savez).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace nuance {

struct FidStats {
    int64_t dim = 0;
    std::vector<double> mu;     // [dim]
    std::vector<double> sigma;  // [dim, dim] row-major
};

constexpr int64_t kMaxStatsDim = 16384;

FidStats read_fid_stats(const std::string& path);
// Atomically (a full disk keeps the old file).
void write_fid_stats(const std::string& path, const FidStats& s);

// One member's bytes through io/npy.h's reader with the statistics' limits (at most 2 dims of kMaxStatsDim; <f4 or
// <f8, C or Fortran order); `name` names it in errors.
Tensor parse_stats_member(const std::string& bytes, const std::string& name);

}  // namespace nuance
