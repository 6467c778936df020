// Random quantized weights (every ggml block type) and inputs for the quantized-product tests.
#pragma once
#include <gtest/gtest.h>

#include <cstring>
#include <random>

#include "backends/cpu/ggml_quants.h"
#include "core/quantized_weight.h"

namespace nuance::test {

// Byte offsets of the f16 scale fields (d, and dmin / m where the type has one) in each block type, so that random
// payloads hold finite, moderate scales (random bits there could be inf or NaN).
inline std::vector<int> scale_offsets(GgmlType t) {
    switch (t) {
        case GgmlType::Q4_0: case GgmlType::Q5_0: case GgmlType::Q8_0: case GgmlType::IQ4_NL: case GgmlType::IQ4_XS:
            return {0};
        case GgmlType::Q4_1: case GgmlType::Q5_1: case GgmlType::Q4_K: case GgmlType::Q5_K: return {0, 2};
        case GgmlType::Q2_K: return {80, 82};
        case GgmlType::Q3_K: return {108};
        case GgmlType::Q6_K: return {208};
        default: return {};
    }
}

// A random quantized weight of logical shape `shape` (numel / shape[0] a multiple of the block): random quant bits,
// scales in [0.002, 0.03] (sign random for the d fields of the symmetric types).
inline Tensor random_weight(GgmlType t, const Shape& shape, uint64_t seed) {
    const GgmlTypeInfo& ti = ggml_type_info(t);
    const int64_t n = shape_numel(shape), rows = shape[0], K = n / rows;
    const int64_t bytes = rows * (K / ti.block) * ti.bytes;
    QuantizedTensor q;
    q.type = t;
    q.shape = {rows, K};
    q.packed = Tensor::empty({rows, K / ti.block * ti.bytes}, DType::U8);
    std::mt19937_64 gen(seed);
    uint8_t* p = q.packed.data<uint8_t>();
    for (int64_t i = 0; i < bytes; ++i) p[i] = (uint8_t)gen();
    std::uniform_real_distribution<float> u(0.002f, 0.03f);
    for (int64_t b = 0; b < bytes / ti.bytes; ++b)
        for (int off : scale_offsets(t)) {
            const uint16_t h = f32_to_f16(u(gen) * (off == 0 && (gen() & 1) ? -1.0f : 1.0f));
            std::memcpy(p + b * ti.bytes + off, &h, 2);
        }
    Tensor w = quantized_weight_tensor(q, shape);
    EXPECT_TRUE(w.defined());
    return w;
}

inline Tensor random_input(const Shape& s, uint64_t seed, float scale = 1.0f) {
    std::mt19937_64 gen(seed);
    std::normal_distribution<float> nd(0.0f, scale);
    std::vector<float> v((size_t)shape_numel(s));
    for (auto& x : v) x = nd(gen);
    return Tensor::from_vector(v, s);
}

}  // namespace nuance::test
