// Non-finite values in a pipeline's tensors: NaN/Inf weights (a broken fine-tune, a bad conversion, fp16
// overflow) turn every later value into NaN, and an image made of them is a silent all-black PNG. The pipelines
// check the conditioning, each step's latents and the decoded image (one pass each) and fail naming the stage.
#pragma once
#include <cstdint>
#include <functional>
#include <string>

#include "core/tensor.h"

namespace nuance {

// Index of the first NaN/Inf element of a float tensor (row-major), or -1 when all are finite; `value` receives it.
int64_t find_non_finite(const Tensor& t, float* value = nullptr);

// Throws ErrorCode::InvalidArgument "<where()> is NaN<at()>: <hint>" when t holds a NaN or an Inf; where/at are
// only called on failure (e.g. where = "the UNet output", at = " at step 3 of 20 (sigma 4.2)").
void check_finite(const Tensor& t, const std::function<std::string()>& where, const std::string& hint);

}  // namespace nuance
