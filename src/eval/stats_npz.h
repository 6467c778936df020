// FID statistics files compatible with pytorch-fid's .npz (np.savez(path, mu=mu, sigma=sigma)): a zip of mu.npy
// [D] and sigma.npy [D, D]. Read: stored or deflated members, NPY format 1.0/2.0/3.0, dtype <f8 or <f4, C or Fortran
// order, every size and offset checked (D at most 16384). Written: stored members, NPY 1.0, <f8 (as np.savez).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

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

// The pieces, for tests: one .npy member's bytes -> (shape, values as double); `what` names it in errors.
std::vector<double> parse_npy(const std::string& bytes, const std::string& what, std::vector<int64_t>& shape);
std::string make_npy_f8(const std::vector<double>& values, const std::vector<int64_t>& shape);

}  // namespace nuance
