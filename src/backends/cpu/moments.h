// Mean and variance of a row of floats, as layer_norm / group_norm / layer_norm_modulate compute them: 8 f32 lanes over
// blocks of 512, each block's lanes added in double, blocks added in double (two passes: sum, then squared deviations).
#pragma once
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <utility>

namespace nuance::cpu {

inline double sum_n(const float* p, int64_t n) {
    double total = 0;
    for (int64_t b = 0; b < n; b += 512) {
        const int64_t e = std::min(n, b + 512);
        __m256 acc = _mm256_setzero_ps();
        int64_t i = b;
        for (; i + 8 <= e; i += 8) acc = _mm256_add_ps(acc, _mm256_loadu_ps(p + i));
        float lanes[8];
        _mm256_storeu_ps(lanes, acc);
        double s = 0;
        for (float v : lanes) s += v;
        for (; i < e; ++i) s += p[i];
        total += s;
    }
    return total;
}

inline double sq_dev_n(const float* p, int64_t n, float mu) {
    double total = 0;
    const __m256 m = _mm256_set1_ps(mu);
    for (int64_t b = 0; b < n; b += 512) {
        const int64_t e = std::min(n, b + 512);
        __m256 acc = _mm256_setzero_ps();
        int64_t i = b;
        for (; i + 8 <= e; i += 8) {
            const __m256 d = _mm256_sub_ps(_mm256_loadu_ps(p + i), m);
            acc = _mm256_fmadd_ps(d, d, acc);
        }
        float lanes[8];
        _mm256_storeu_ps(lanes, acc);
        double s = 0;
        for (float v : lanes) s += v;
        for (; i < e; ++i) s += (double)(p[i] - mu) * (p[i] - mu);
        total += s;
    }
    return total;
}

// {mean, 1 / sqrt(var + eps)} of n > 0 floats (biased variance, as torch's layer_norm).
inline std::pair<float, float> layer_norm_moments(const float* p, int64_t n, float eps) {
    const float mu = (float)(sum_n(p, n) / (double)n);
    return {mu, (float)(1.0 / std::sqrt(sq_dev_n(p, n, mu) / (double)n + eps))};
}

}  // namespace nuance::cpu
