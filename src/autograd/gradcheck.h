// Finite-difference check of backward rules (design.md §5: every op gets one).
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "autograd/var.h"

namespace nuance {

struct GradcheckOptions {
    float eps = 1e-2f;   // step of the central difference (f32 values: too small and rounding dominates)
    float atol = 2e-3f;  // |analytic - numeric| <= atol + rtol * |numeric|
    float rtol = 1e-2f;
    uint64_t seed = 1;   // of the random output weights R
};

struct GradcheckResult {
    bool ok = true;
    std::string message;  // the first mismatch: input, element, both values
    double max_abs_err = 0.0;
    int64_t checked = 0;  // elements compared
};

// Compares the analytic gradient of L = Σ f(x)·R (R fixed, uniform in [-1, 1], so every output element matters)
// with central differences (L(x + eps) − L(x − eps)) / 2eps, element by element, for every input whose `wrt` flag is
// set (all inputs when `wrt` is empty). Inputs are copied; f must build its graph from the Vars it is given.
GradcheckResult gradcheck(const std::function<Var(const std::vector<Var>&)>& f, const std::vector<Tensor>& inputs,
                          const GradcheckOptions& o = {}, const std::vector<bool>& wrt = {});

}  // namespace nuance
