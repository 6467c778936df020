#include "samplers/guidance.h"

#include <cmath>
#include <vector>

#include "core/error.h"
#include "ops/elementwise.h"

namespace nuance {

namespace {

// Unbiased standard deviation of each batch item (dim 0) over the other dims, in double.
std::vector<double> batch_std(const std::vector<float>& v, int64_t batch) {
    const int64_t per = (int64_t)v.size() / batch;
    std::vector<double> out((size_t)batch);
    for (int64_t b = 0; b < batch; ++b) {
        const float* p = v.data() + b * per;
        double mean = 0;
        for (int64_t i = 0; i < per; ++i) mean += p[i];
        mean /= (double)per;
        double ss = 0;
        for (int64_t i = 0; i < per; ++i) ss += ((double)p[i] - mean) * ((double)p[i] - mean);
        out[(size_t)b] = per > 1 ? std::sqrt(ss / (double)(per - 1)) : 0.0;
    }
    return out;
}

}  // namespace

Tensor cfg_combine(const Tensor& uncond, const Tensor& cond, double scale) {
    NUANCE_CHECK(uncond.defined() && cond.defined() && uncond.shape() == cond.shape(),
                 "cfg_combine: uncond and cond shapes differ");
    NUANCE_CHECK(std::isfinite(scale), "cfg_combine: guidance scale must be finite, got ", scale);
    return uncond + (cond - uncond) * (float)scale;
}

Tensor rescale_noise_cfg(const Tensor& guided, const Tensor& cond, double phi) {
    NUANCE_CHECK(std::isfinite(phi) && phi >= 0 && phi <= 1, "guidance rescale must be in [0, 1], got ", phi);
    NUANCE_CHECK(guided.defined() && cond.defined(), "rescale_noise_cfg: undefined input");
    NUANCE_CHECK(guided.shape() == cond.shape(), "rescale_noise_cfg: guided ", shape_str(guided.shape()),
                 " and cond ", shape_str(cond.shape()), " shapes differ");
    NUANCE_CHECK(guided.dim() >= 1 && guided.numel() > 0, "rescale_noise_cfg: need a batch-first tensor, got ",
                 shape_str(guided.shape()));
    if (phi == 0) return guided;
    const int64_t batch = guided.size(0);
    std::vector<float> g = guided.to_vector();
    const std::vector<double> std_g = batch_std(g, batch), std_c = batch_std(cond.to_vector(), batch);
    const int64_t per = guided.numel() / batch;
    for (int64_t b = 0; b < batch; ++b) {
        if (!(std_g[(size_t)b] > 0)) continue;
        // phi * g * (std_c / std_g) + (1 - phi) * g, in float32 per element as torch does it
        const float ratio = (float)(std_c[(size_t)b] / std_g[(size_t)b]);
        for (int64_t i = 0; i < per; ++i) {
            float& x = g[(size_t)(b * per + i)];
            x = (float)phi * (x * ratio) + (1.0f - (float)phi) * x;
        }
    }
    return Tensor::from_vector(g, guided.shape());
}

}  // namespace nuance
