#include "pipelines/finite_check.h"

#include <cmath>
#include <vector>

#include "core/error.h"

namespace nuance {

int64_t find_non_finite(const Tensor& t, float* value) {
    if (!t.defined() || !dtype_is_float(t.dtype())) return -1;
    auto scan = [&](const float* p, int64_t n) -> int64_t {
        for (int64_t i = 0; i < n; ++i)
            if (!std::isfinite(p[i])) {
                if (value) *value = p[i];
                return i;
            }
        return -1;
    };
    if (t.dtype() == DType::F32 && t.is_contiguous()) return scan(t.data<float>(), t.numel());
    const std::vector<float> v = t.to_vector();
    return scan(v.data(), (int64_t)v.size());
}

void check_finite(const Tensor& t, const std::function<std::string()>& where, const std::string& hint) {
    float v = 0;
    const int64_t i = find_non_finite(t, &v);
    if (i < 0) return;
    const char* kind = std::isnan(v) ? "NaN" : (v > 0 ? "+Inf" : "-Inf");
    fail(ErrorCode::InvalidArgument, where(), " is ", kind, " (element ", i, " of ", t.shape(), "): ", hint);
}

}  // namespace nuance
