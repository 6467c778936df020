// The fid_inception golden case (../shared/golden/fid_inception): pytorch-fid's FID Inception v3 features (pool3 and
// blocks 0-2) for inputs of three sizes with pytorch-fid's resize, clean-fid's "clean" resize, FID
// (calculate_frechet_distance) and KID (clean-fid kernel_distance with the stored subsets) on the stored features.
#pragma once
#include <string>
#include <vector>

#include "core/compare.h"

namespace nuance {

std::vector<CompareLine> check_golden_fid_inception(const std::string& case_dir);

}  // namespace nuance
