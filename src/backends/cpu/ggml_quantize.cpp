// ggml block quantization (gguf-py's quants.quantize, ggml's quantize_row_*_ref): the f32 -> block direction of
// ggml_quants.cpp. Built with -ffp-contract=off: the scale and the quants are computed in float32 with one rounding
// per operation, as numpy does, so the bytes match gguf-py's exactly.
//
// Legend: x one block of QK = 32 values, amax / max / min its extremes, d the scale (stored f16), id = 1 / d, q the
// integer quants, qs the packed nibbles (q[j] low, q[j + 16] high), qh the fifth bits (bit j of a u32 = bit 4 of q[j]).
#include <cmath>
#include <cstring>

#include "backends/cpu/ggml_quants.h"
#include "core/checked.h"

namespace nuance {

namespace {

constexpr int QK = 32;

inline void put_f16(uint8_t* p, float v) {
    const uint16_t h = f32_to_f16(v);
    std::memcpy(p, &h, 2);
}

// gguf-py's np_roundf: round half away from zero, computed in float32.
inline float roundf_ggml(float n) {
    const float a = std::fabs(n);
    const float fl = std::floor(a);
    const float b = fl + std::floor(2.0f * (a - fl));
    return n < 0 ? -b : (n > 0 ? b : 0.0f * b);
}

// The value of largest magnitude (first one on ties), sign kept: numpy's abs(x).argmax then take.
inline float signed_absmax(const float* x) {
    float amax = 0, max = 0;
    for (int j = 0; j < QK; ++j)
        if (std::fabs(x[j]) > amax) {
            amax = std::fabs(x[j]);
            max = x[j];
        }
    return max;
}

inline float inverse(float d) { return d == 0 ? 0.0f : 1.0f / d; }

inline int clampi(int v, int lo, int hi) { return v < lo ? lo : (v > hi ? hi : v); }

void q8_0(const float* x, uint8_t* y) {
    float amax = 0;
    for (int j = 0; j < QK; ++j) amax = std::fmax(amax, std::fabs(x[j]));
    const float d = amax / 127.0f, id = inverse(d);
    put_f16(y, d);
    for (int j = 0; j < QK; ++j) y[2 + j] = (uint8_t)(int8_t)roundf_ggml(x[j] * id);
}

void q4_0(const float* x, uint8_t* y) {
    const float d = signed_absmax(x) / -8.0f, id = inverse(d);
    put_f16(y, d);
    for (int j = 0; j < 16; ++j) {
        const int a = clampi((int)std::trunc(x[j] * id + 8.5f), 0, 15);
        const int b = clampi((int)std::trunc(x[j + 16] * id + 8.5f), 0, 15);
        y[2 + j] = (uint8_t)(a | (b << 4));
    }
}

void q4_1(const float* x, uint8_t* y) {
    float max = x[0], min = x[0];
    for (int j = 1; j < QK; ++j) {
        max = std::fmax(max, x[j]);
        min = std::fmin(min, x[j]);
    }
    const float d = (max - min) / 15.0f, id = inverse(d);
    put_f16(y, d);
    put_f16(y + 2, min);
    for (int j = 0; j < 16; ++j) {
        const int a = clampi((int)std::trunc((x[j] - min) * id + 0.5f), 0, 15);
        const int b = clampi((int)std::trunc((x[j + 16] - min) * id + 0.5f), 0, 15);
        y[4 + j] = (uint8_t)(a | (b << 4));
    }
}

void pack5(const int* q, uint8_t* qh_out, uint8_t* qs) {
    uint32_t qh = 0;
    for (int j = 0; j < QK; ++j) qh |= (uint32_t)((q[j] >> 4) & 1) << j;
    std::memcpy(qh_out, &qh, 4);
    for (int j = 0; j < 16; ++j) qs[j] = (uint8_t)((q[j] & 0x0F) | ((q[j + 16] & 0x0F) << 4));
}

void q5_0(const float* x, uint8_t* y) {
    const float d = signed_absmax(x) / -16.0f, id = inverse(d);
    put_f16(y, d);
    int q[QK];
    for (int j = 0; j < QK; ++j) q[j] = clampi((int)std::trunc(x[j] * id + 16.5f), 0, 31);
    pack5(q, y + 2, y + 6);
}

void q5_1(const float* x, uint8_t* y) {
    float max = x[0], min = x[0];
    for (int j = 1; j < QK; ++j) {
        max = std::fmax(max, x[j]);
        min = std::fmin(min, x[j]);
    }
    const float d = (max - min) / 31.0f, id = inverse(d);
    put_f16(y, d);
    put_f16(y + 2, min);
    int q[QK];
    for (int j = 0; j < QK; ++j) q[j] = clampi((int)std::trunc((x[j] - min) * id + 0.5f), 0, 31);
    pack5(q, y + 4, y + 8);
}

}  // namespace

bool can_quantize(GgmlType t) {
    switch (t) {
        case GgmlType::F32: case GgmlType::F16: case GgmlType::BF16: case GgmlType::Q8_0: case GgmlType::Q4_0:
        case GgmlType::Q4_1: case GgmlType::Q5_0: case GgmlType::Q5_1:
            return true;
        default: return false;
    }
}

void quantize_row(GgmlType t, const float* x, void* dst, int64_t n) {
    const GgmlTypeInfo& ti = ggml_type_info(t);
    NUANCE_CHECK(can_quantize(t), "quantize: ggml type ", ti.name, " has no quantizer yet");
    NUANCE_CHECK(n >= 0 && n % ti.block == 0, "quantize: a ", ti.name, " row of ", n,
                 " values is not a whole number of ", ti.block, "-value blocks");
    auto* y = static_cast<uint8_t*>(dst);
    switch (t) {
        case GgmlType::F32: std::memcpy(y, x, (size_t)n * 4); return;
        case GgmlType::F16:
            for (int64_t i = 0; i < n; ++i) put_f16(y + 2 * i, x[i]);
            return;
        case GgmlType::BF16:
            for (int64_t i = 0; i < n; ++i) {
                const uint16_t h = f32_to_bf16(x[i]);
                std::memcpy(y + 2 * i, &h, 2);
            }
            return;
        default: break;
    }
    void (*f)(const float*, uint8_t*) = t == GgmlType::Q8_0   ? q8_0
                                        : t == GgmlType::Q4_0 ? q4_0
                                        : t == GgmlType::Q4_1 ? q4_1
                                        : t == GgmlType::Q5_0 ? q5_0
                                                              : q5_1;
    for (int64_t b = 0; b < n / QK; ++b) f(x + b * QK, y + b * ti.bytes);
}

QuantizedTensor quantize(const Tensor& x, GgmlType t) {
    const GgmlTypeInfo& ti = ggml_type_info(t);
    const Tensor f = x.f32().contiguous();
    QuantizedTensor q;
    q.type = t;
    q.shape = x.shape();
    const int64_t n = q.row_length();
    NUANCE_CHECK(n % ti.block == 0, "quantize: tensor ", x.str(), ": the last dimension ", n,
                 " is not a multiple of the ", ti.name, " block size ", ti.block);
    const int64_t rows = n == 0 ? 0 : f.numel() / n;
    const int64_t row_bytes = n / ti.block * ti.bytes;
    q.packed = Tensor::empty({rows, row_bytes}, DType::U8);
    const float* src = f.data<float>();
    uint8_t* dst = q.packed.data<uint8_t>();
#pragma omp parallel for schedule(static) if (rows * n > (1 << 16))
    for (int64_t r = 0; r < rows; ++r) quantize_row(t, src + r * n, dst + r * row_bytes, n);
    return q;
}

}  // namespace nuance
