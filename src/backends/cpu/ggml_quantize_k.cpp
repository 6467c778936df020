// ggml's K-quant (Q2_K .. Q6_K) and IQ4 (IQ4_NL, IQ4_XS) block quantizers: ggml's reference algorithms, scalar, and
// their scale searches 16 sub-blocks at a time on AVX-512 (ggml_quantize_x16.cpp; the same bytes). Built with
// -ffp-contract=off as ggml_quantize.cpp (CMakeLists.txt). The 32-value types and the row / tensor entry points:
// ggml_quantize.cpp.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "backends/cpu/ggml_quantize_k.h"
#include "backends/cpu/ggml_quantize_x16.h"

namespace nuance::ggml_q {

namespace {

// ---- K-quants (QK_K = 256-value super-blocks), following ggml's reference quantizers (quantize_row_q{4,5,6}_K_ref
// and their helpers make_qkx2_quants / make_qx_quants in ggml-quants.c): the same search for each sub-block's scale
// (and min), the same 6-/8-bit quantization of those scales, and the quants recomputed from the stored scales.

constexpr int QK_K = 256;
constexpr float kGroupMaxEps = 1e-15f;

// ggml's nearest_int: round to nearest, ties to even, through the float mantissa (|v| <= 2^22).
inline int nearest_int(float v) {
    const float t = v + 12582912.0f;
    int32_t i;
    std::memcpy(&i, &t, 4);
    return (i & 0x007fffff) - 0x00400000;
}

inline float f16_round(float v) { return f16_to_f32(f32_to_f16(v)); }

// An asymmetric n-value sub-block to 0..nmax: x ~ scale * L - min (min >= 0 returned in *the_min), minimizing the
// weighted squared error (absolute error with use_mad: Q2_K) over nstep + 1 trial scales around nmax / (max - min)
// (make_qkx2_quants).
float make_qkx2_quants(int n, int nmax, const float* x, const float* w, uint8_t* L, float* the_min, uint8_t* Laux,
                       float rmin, float rdelta, int nstep, bool use_mad = false) {
    float min = x[0], max = x[0], sum_w = w[0], sum_x = sum_w * x[0];
    for (int i = 1; i < n; ++i) {
        if (x[i] < min) min = x[i];
        if (x[i] > max) max = x[i];
        sum_w += w[i];
        sum_x += w[i] * x[i];
    }
    if (min > 0) min = 0;
    if (max == min) {
        for (int i = 0; i < n; ++i) L[i] = 0;
        *the_min = -min;
        return 0.0f;
    }
    float iscale = nmax / (max - min), scale = 1 / iscale, best = 0;
    for (int i = 0; i < n; ++i) {
        L[i] = (uint8_t)clampi(nearest_int(iscale * (x[i] - min)), 0, nmax);
        const float diff = scale * L[i] + min - x[i];
        best += w[i] * (use_mad ? std::fabs(diff) : diff * diff);
    }
    for (int is = 0; is <= nstep; ++is) {
        iscale = (rmin + rdelta * is + nmax) / (max - min);
        float sum_l = 0, sum_l2 = 0, sum_xl = 0;
        for (int i = 0; i < n; ++i) {
            const int l = clampi(nearest_int(iscale * (x[i] - min)), 0, nmax);
            Laux[i] = (uint8_t)l;
            sum_l += w[i] * l;
            sum_l2 += w[i] * l * l;
            sum_xl += w[i] * l * x[i];
        }
        const float D = sum_w * sum_l2 - sum_l * sum_l;
        if (D <= 0) continue;
        float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
        float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
        if (this_min > 0) {
            this_min = 0;
            this_scale = sum_xl / sum_l2;
        }
        float err = 0;
        for (int i = 0; i < n; ++i) {
            const float diff = this_scale * Laux[i] + this_min - x[i];
            err += w[i] * (use_mad ? std::fabs(diff) : diff * diff);
        }
        if (err < best) {
            for (int i = 0; i < n; ++i) L[i] = Laux[i];
            best = err;
            scale = this_scale;
            min = this_min;
        }
    }
    *the_min = -min;
    return scale;
}

// A symmetric n-value sub-block to -nmax..nmax-1 (stored + nmax): the scale of largest-magnitude value, refined by
// weighted least squares (weights x^2) over 18 trial scales (make_qx_quants, rmse_type 1, no importance weights).
float make_qx_quants(int n, int nmax, const float* x, int8_t* L) {
    const float max = signed_absmax(x, n);
    if (std::fabs(max) < kGroupMaxEps) {
        for (int i = 0; i < n; ++i) L[i] = 0;
        return 0.0f;
    }
    float iscale = -nmax / max, sumlx = 0, suml2 = 0;
    for (int i = 0; i < n; ++i) {
        const int l = clampi(nearest_int(iscale * x[i]), -nmax, nmax - 1);
        L[i] = (int8_t)(l + nmax);
        const float w = x[i] * x[i];
        sumlx += w * x[i] * l;
        suml2 += w * l * l;
    }
    float scale = suml2 ? sumlx / suml2 : 0.0f, best = scale * sumlx;
    for (int is = -9; is <= 9; ++is) {
        if (is == 0) continue;
        iscale = -(nmax + 0.1f * is) / max;
        sumlx = suml2 = 0;
        for (int i = 0; i < n; ++i) {
            const int l = clampi(nearest_int(iscale * x[i]), -nmax, nmax - 1);
            const float w = x[i] * x[i];
            sumlx += w * x[i] * l;
            suml2 += w * l * l;
        }
        if (suml2 > 0 && sumlx * sumlx > best * suml2) {
            for (int i = 0; i < n; ++i) L[i] = (int8_t)(clampi(nearest_int(iscale * x[i]), -nmax, nmax - 1) + nmax);
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    return scale;
}

// Q4_K / Q5_K's 12 bytes of eight 6-bit scales and eight 6-bit mins (ggml's get_scale_min_k4 layout).
void put_scale_min_k4(int j, uint8_t ls, uint8_t lm, uint8_t* s) {
    if (j < 4) {
        s[j] = ls;
        s[j + 4] = lm;
    } else {
        s[j + 4] = (uint8_t)((ls & 0xF) | ((lm & 0xF) << 4));
        s[j - 4] |= (uint8_t)((ls >> 4) << 6);
        s[j] |= (uint8_t)((lm >> 4) << 6);
    }
}
void get_scale_min_k4(int j, const uint8_t* s, int* d, int* m) {
    if (j < 4) {
        *d = s[j] & 63;
        *m = s[j + 4] & 63;
    } else {
        *d = (s[j + 4] & 0xF) | ((s[j - 4] >> 6) << 4);
        *m = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
    }
}

// Q4_K (nmax 15) and Q5_K (nmax 31): eight 32-value sub-blocks with a scale and a min each. Block layout: f16 d,
// f16 dmin, scales[12], then Q5_K's qh[32] (fifth bits), then qs[128] (nibbles of values j and j + 32 per 64).
// The scale search of one super-block (scalar): quants L, scales[8], mins[8].
void qk_asym_search(const float* x, int nmax, uint8_t* L, float* scales, float* mins) {
    uint8_t Laux[32];
    float w[32];
    for (int j = 0; j < QK_K / 32; ++j) {
        float sum_x2 = 0;
        for (int l = 0; l < 32; ++l) sum_x2 += x[32 * j + l] * x[32 * j + l];
        const float av_x = std::sqrt(sum_x2 / 32);
        for (int l = 0; l < 32; ++l) w[l] = av_x + std::fabs(x[32 * j + l]);
        scales[j] = nmax == 15 ? make_qkx2_quants(32, 15, x + 32 * j, w, L + 32 * j, &mins[j], Laux, -1.0f, 0.1f, 20)
                               : make_qkx2_quants(32, 31, x + 32 * j, w, L + 32 * j, &mins[j], Laux, -0.5f, 0.1f, 15);
    }
}

// The same search on 16 sub-blocks at once (two super-blocks: count 16, or one: 8); false for a NaN / infinity.
bool qk_asym_search_x16(const float* x, int nmax, int count, uint8_t* L, float* scales, float* mins) {
    return nmax == 15 ? ggml_x16::make_qkx2_quants(32, count, 15, x, ggml_x16::QkxWeights::RmsPlusAbs, -1.0f, 0.1f, 20,
                                                   false, L, scales, mins)
                      : ggml_x16::make_qkx2_quants(32, count, 31, x, ggml_x16::QkxWeights::RmsPlusAbs, -0.5f, 0.1f, 15,
                                                   false, L, scales, mins);
}

// One super-block from its search's results (L is rewritten).
void qk_asym_pack(const float* x, uint8_t* y, int nmax, uint8_t* L, const float* scales, const float* mins) {
    float max_scale = 0, max_min = 0;
    for (int j = 0; j < QK_K / 32; ++j) {
        if (scales[j] > max_scale) max_scale = scales[j];
        if (mins[j] > max_min) max_min = mins[j];
    }
    const float inv_scale = max_scale > 0 ? 63.0f / max_scale : 0.0f;
    const float inv_min = max_min > 0 ? 63.0f / max_min : 0.0f;
    uint8_t* sc = y + 4;
    std::memset(sc, 0, 12);
    for (int j = 0; j < QK_K / 32; ++j) {
        const uint8_t ls = (uint8_t)std::min(63, nearest_int(inv_scale * scales[j]));
        const uint8_t lm = (uint8_t)std::min(63, nearest_int(inv_min * mins[j]));
        put_scale_min_k4(j, ls, lm, sc);
    }
    put_f16(y, max_scale / 63.0f);
    put_f16(y + 2, max_min / 63.0f);
    const float d_all = f16_round(max_scale / 63.0f), dmin_all = f16_round(max_min / 63.0f);
    for (int j = 0; j < QK_K / 32; ++j) {
        int is = 0, im = 0;
        get_scale_min_k4(j, sc, &is, &im);
        const float d = d_all * is;
        if (!d) continue;
        const float dm = dmin_all * im;
        for (int i = 0; i < 32; ++i) L[32 * j + i] = (uint8_t)clampi(nearest_int((x[32 * j + i] + dm) / d), 0, nmax);
    }
    if (nmax == 15) {
        uint8_t* q = y + 16;
        for (int j = 0; j < QK_K; j += 64, q += 32)
            for (int l = 0; l < 32; ++l) q[l] = (uint8_t)(L[j + l] | (L[j + l + 32] << 4));
        return;
    }
    uint8_t* qh = y + 16;
    uint8_t* ql = y + 48;
    std::memset(qh, 0, QK_K / 8);
    uint8_t m1 = 1, m2 = 2;
    for (int n = 0; n < QK_K; n += 64, ql += 32, m1 <<= 2, m2 <<= 2)
        for (int j = 0; j < 32; ++j) {
            int l1 = L[n + j], l2 = L[n + j + 32];
            if (l1 > 15) { l1 -= 16; qh[j] |= m1; }
            if (l2 > 15) { l2 -= 16; qh[j] |= m2; }
            ql[j] = (uint8_t)(l1 | (l2 << 4));
        }
}

void qk_asym(const float* x, uint8_t* y, int nmax) {
    uint8_t L[QK_K];
    float scales[QK_K / 32], mins[QK_K / 32];
    qk_asym_search(x, nmax, L, scales, mins);
    qk_asym_pack(x, y, nmax, L, scales, mins);
}

// Q6_K: sixteen 16-value sub-blocks, symmetric 6-bit quants with an 8-bit signed scale each. Layout: ql[128] (low
// nibbles), qh[64] (two high bits of four values), scales[16] (int8), f16 d.
void q6_k_search(const float* x, int8_t* L, float* scales) {
    for (int ib = 0; ib < QK_K / 16; ++ib) scales[ib] = make_qx_quants(16, 32, x + 16 * ib, L + 16 * ib);
}

void q6_k_pack(const float* x, uint8_t* y, int8_t* L, const float* scales) {
    float max_scale = 0, max_abs_scale = 0;
    for (int ib = 0; ib < QK_K / 16; ++ib) {
        if (std::fabs(scales[ib]) > max_abs_scale) {
            max_abs_scale = std::fabs(scales[ib]);
            max_scale = scales[ib];
        }
    }
    std::memset(y, 0, 210);
    if (max_abs_scale < kGroupMaxEps) return;  // all zero (d = +0)
    const float iscale = -128.0f / max_scale;
    put_f16(y + 208, 1 / iscale);
    int8_t* sc = reinterpret_cast<int8_t*>(y + 192);
    for (int ib = 0; ib < QK_K / 16; ++ib) sc[ib] = (int8_t)std::min(127, nearest_int(iscale * scales[ib]));
    const float d_all = f16_round(1 / iscale);
    for (int j = 0; j < QK_K / 16; ++j) {
        const float d = d_all * sc[j];
        if (!d) continue;
        for (int i = 0; i < 16; ++i) L[16 * j + i] = (int8_t)(clampi(nearest_int(x[16 * j + i] / d), -32, 31) + 32);
    }
    uint8_t* ql = y;
    uint8_t* qh = y + 128;
    for (int j = 0; j < QK_K; j += 128, ql += 64, qh += 32)
        for (int l = 0; l < 32; ++l) {
            const int q1 = L[j + l], q2 = L[j + l + 32], q3 = L[j + l + 64], q4 = L[j + l + 96];
            ql[l] = (uint8_t)((q1 & 0xF) | ((q3 & 0xF) << 4));
            ql[l + 32] = (uint8_t)((q2 & 0xF) | ((q4 & 0xF) << 4));
            qh[l] = (uint8_t)((q1 >> 4) | ((q2 >> 4) << 2) | ((q3 >> 4) << 4) | ((q4 >> 4) << 6));
        }
}

void q6_k_block(const float* x, uint8_t* y) {
    int8_t L[QK_K];
    float scales[QK_K / 16];
    q6_k_search(x, L, scales);
    q6_k_pack(x, y, L, scales);
}

// A symmetric n-value sub-block to -nmax..nmax-1 (make_q3_quants with do_rmse, Q3_K): the scale of the
// largest-magnitude value, then up to 5 passes that move single quants while the weighted (x^2) least-squares fit
// sumlx^2 / suml2 improves. L comes back offset by nmax.
float make_q3_quants(int n, int nmax, const float* x, int8_t* L) {
    const float max = signed_absmax(x, n);
    if (std::fabs(max) < kGroupMaxEps) {
        for (int i = 0; i < n; ++i) L[i] = 0;
        return 0.0f;
    }
    const float iscale = -nmax / max;
    float sumlx = 0, suml2 = 0;
    for (int i = 0; i < n; ++i) {
        const int l = clampi(nearest_int(iscale * x[i]), -nmax, nmax - 1);
        L[i] = (int8_t)l;
        const float w = x[i] * x[i];
        sumlx += w * x[i] * l;
        suml2 += w * l * l;
    }
    for (int itry = 0; itry < 5; ++itry) {
        int n_changed = 0;
        for (int i = 0; i < n; ++i) {
            const float w = x[i] * x[i];
            float slx = sumlx - w * x[i] * L[i];
            if (slx > 0) {
                float sl2 = suml2 - w * L[i] * L[i];
                const int new_l = clampi(nearest_int(x[i] * sl2 / slx), -nmax, nmax - 1);
                if (new_l != L[i]) {
                    slx += w * x[i] * new_l;
                    sl2 += w * new_l * new_l;
                    if (sl2 > 0 && slx * slx * suml2 > sumlx * sumlx * sl2) {
                        L[i] = (int8_t)new_l;
                        sumlx = slx;
                        suml2 = sl2;
                        ++n_changed;
                    }
                }
            }
        }
        if (!n_changed) break;
    }
    for (int i = 0; i < n; ++i) L[i] = (int8_t)(L[i] + nmax);
    return suml2 > 0.0f ? sumlx / suml2 : 0.0f;
}

// Q2_K and Q3_K pack four 2-bit quants per byte: values j, j + 32, j + 64, j + 96 of each 128.
void pack2(const uint8_t* L, uint8_t* qs) {
    for (int j = 0; j < QK_K; j += 128)
        for (int l = 0; l < 32; ++l)
            qs[j / 4 + l] = (uint8_t)(L[j + l] | (L[j + l + 32] << 2) | (L[j + l + 64] << 4) | (L[j + l + 96] << 6));
}

// Q2_K: sixteen 16-value sub-blocks, asymmetric 2-bit quants with a 4-bit scale and a 4-bit min each, fitted on the
// weighted absolute error (weights |x|). Layout: scales[16] (scale low nibble, min high nibble), qs[64], f16 d,
// f16 dmin.
void q2_k_search(const float* x, uint8_t* L, float* scales, float* mins) {
    uint8_t Laux[16];
    float w[16];
    for (int j = 0; j < QK_K / 16; ++j) {
        for (int l = 0; l < 16; ++l) w[l] = std::fabs(x[16 * j + l]);
        scales[j] = make_qkx2_quants(16, 3, x + 16 * j, w, L + 16 * j, &mins[j], Laux, -0.5f, 0.1f, 15, true);
    }
}

bool q2_k_search_x16(const float* x, uint8_t* L, float* scales, float* mins) {
    return ggml_x16::make_qkx2_quants(16, 16, 3, x, ggml_x16::QkxWeights::Abs, -0.5f, 0.1f, 15, true, L, scales, mins);
}

void q2_k_pack(const float* x, uint8_t* y, uint8_t* L, const float* scales, const float* mins) {
    float max_scale = 0, max_min = 0;
    for (int j = 0; j < QK_K / 16; ++j) {
        if (scales[j] > max_scale) max_scale = scales[j];
        if (mins[j] > max_min) max_min = mins[j];
    }
    uint8_t* sc = y;
    constexpr float q4scale = 15.0f;
    if (max_scale > 0) {
        const float iscale = q4scale / max_scale;
        for (int j = 0; j < QK_K / 16; ++j) sc[j] = (uint8_t)nearest_int(iscale * scales[j]);
        put_f16(y + 80, max_scale / q4scale);
    } else {
        std::memset(sc, 0, QK_K / 16);
        put_f16(y + 80, 0.0f);
    }
    if (max_min > 0) {
        const float iscale = q4scale / max_min;
        for (int j = 0; j < QK_K / 16; ++j) sc[j] = (uint8_t)(sc[j] | (nearest_int(iscale * mins[j]) << 4));
        put_f16(y + 82, max_min / q4scale);
    } else {
        put_f16(y + 82, 0.0f);
    }
    uint16_t hd, hm;
    std::memcpy(&hd, y + 80, 2);
    std::memcpy(&hm, y + 82, 2);
    const float d_all = f16_to_f32(hd), dmin_all = f16_to_f32(hm);
    for (int j = 0; j < QK_K / 16; ++j) {
        const float d = d_all * (sc[j] & 0xF);
        if (!d) continue;
        const float dm = dmin_all * (sc[j] >> 4);
        for (int i = 0; i < 16; ++i) L[16 * j + i] = (uint8_t)clampi(nearest_int((x[16 * j + i] + dm) / d), 0, 3);
    }
    pack2(L, y + 16);
}

void q2_k_block(const float* x, uint8_t* y) {
    uint8_t L[QK_K];
    float scales[QK_K / 16], mins[QK_K / 16];
    q2_k_search(x, L, scales, mins);
    q2_k_pack(x, y, L, scales, mins);
}

// Q3_K: sixteen 16-value sub-blocks, symmetric 3-bit quants (-4..3) with a 6-bit signed scale each. Layout:
// hmask[32] (bit 2 of each quant: bit b of byte m for value 32 b + m), qs[64] (low 2 bits), scales[12] (low nibbles
// of scales 0-7 / 8-15 in bytes 0-7, the top 2 bits of scale j at bits 2 (j / 4) of byte 8 + j % 4), f16 d.
void q3_k_pack(const float* x, uint8_t* y, int8_t* L, const float* scales) {
    float max_scale = 0, amax = 0;
    for (int j = 0; j < QK_K / 16; ++j) {
        const float scale = std::fabs(scales[j]);
        if (scale > amax) {
            amax = scale;
            max_scale = scales[j];
        }
    }
    uint8_t* hmask = y;
    uint8_t* qs = y + 32;
    uint8_t* sc = y + 96;
    std::memset(sc, 0, 12);
    if (max_scale != 0) {
        const float iscale = -32.0f / max_scale;
        for (int j = 0; j < QK_K / 16; ++j) {
            int l = clampi((int8_t)nearest_int(iscale * scales[j]), -32, 31) + 32;
            if (j < 8) sc[j] = (uint8_t)(l & 0xF);
            else sc[j - 8] = (uint8_t)(sc[j - 8] | ((l & 0xF) << 4));
            l >>= 4;
            sc[j % 4 + 8] = (uint8_t)(sc[j % 4 + 8] | (l << (2 * (j / 4))));
        }
        put_f16(y + 108, 1 / iscale);
    } else {
        put_f16(y + 108, 0.0f);
    }
    uint16_t hd;
    std::memcpy(&hd, y + 108, 2);
    const float d_all = f16_to_f32(hd);
    for (int j = 0; j < QK_K / 16; ++j) {
        int s = j < 8 ? sc[j] & 0xF : sc[j - 8] >> 4;
        s = (s | (((sc[8 + j % 4] >> (2 * (j / 4))) & 3) << 4)) - 32;
        const float d = d_all * (float)s;
        if (!d) continue;
        for (int i = 0; i < 16; ++i) L[16 * j + i] = (int8_t)(clampi(nearest_int(x[16 * j + i] / d), -4, 3) + 4);
    }
    std::memset(hmask, 0, QK_K / 8);
    uint8_t Lu[QK_K];
    int m = 0;
    uint8_t hm = 1;
    for (int j = 0; j < QK_K; ++j) {
        Lu[j] = (uint8_t)L[j];
        if (L[j] > 3) {
            hmask[m] |= hm;
            Lu[j] = (uint8_t)(L[j] - 4);
        }
        if (++m == QK_K / 8) {
            m = 0;
            hm = (uint8_t)(hm << 1);
        }
    }
    pack2(Lu, qs);
}

void q3_k_block(const float* x, uint8_t* y) {
    int8_t L[QK_K];
    float scales[QK_K / 16];
    for (int j = 0; j < QK_K / 16; ++j) scales[j] = make_q3_quants(16, 4, x + 16 * j, L + 16 * j);
    q3_k_pack(x, y, L, scales);
}

// ---- IQ4_NL / IQ4_XS (ggml's 4-bit non-linear types): 4-bit indices into a fixed table of 16 values in -127..113, as
// llama-quantize writes them (ggml's quantize_iq4_nl / quantize_iq4_xs without an importance matrix). Per 32-value
// sub-block: weights x², a first scale -max / -127 (max = the value of largest magnitude) refined by least squares,
// then 15 trial inverse scales (k - 127) / max, k = -7..7, keeping the one of least weighted error. IQ4_NL stores that
// scale in f16 (a 32-value block); IQ4_XS (256-value super-blocks) stores d = -max_scale / 32 in f16 and each
// sub-block's scale as a 6-bit multiple l of it (l in -32..31), the indices recomputed from d * l.

constexpr int8_t kIq4Values[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};

// The table index nearest to x (ties to the upper value), by bisection as ggml's best_index_int8.
int iq4_index(float x) {
    if (x <= kIq4Values[0]) return 0;
    if (x >= kIq4Values[15]) return 15;
    int lo = 0, hi = 15;
    while (hi - lo > 1) {
        const int mid = (lo + hi) / 2;
        if (x < kIq4Values[mid]) hi = mid;
        else lo = mid;
    }
    return x - kIq4Values[hi - 1] < kIq4Values[hi] - x ? hi - 1 : hi;
}

// The weighted least-squares scale of one 32-value sub-block (0 for an all-zero one); its indices into L.
float iq4_subblock_scale(const float* x, uint8_t* L) {
    constexpr int ntry = 7;
    float w[32];
    float amax = 0, max = 0;
    for (int j = 0; j < 32; ++j) {
        w[j] = x[j] * x[j];
        const float ax = std::fabs(x[j]);
        if (ax > amax) {
            amax = ax;
            max = x[j];
        }
    }
    if (amax < kGroupMaxEps) return 0.0f;
    float d = -max / kIq4Values[0];
    float id = 1 / d;
    float sumqx = 0, sumq2 = 0;
    for (int j = 0; j < 32; ++j) {
        const int l = iq4_index(id * x[j]);
        L[j] = (uint8_t)l;
        const float q = kIq4Values[l];
        sumqx += w[j] * q * x[j];
        sumq2 += w[j] * q * q;
    }
    d = sumq2 > 0 ? sumqx / sumq2 : 0.0f;
    float best = d * sumqx;
    for (int itry = -ntry; itry <= ntry; ++itry) {
        id = (itry + kIq4Values[0]) / max;
        sumqx = sumq2 = 0;
        for (int j = 0; j < 32; ++j) {
            const float q = kIq4Values[iq4_index(id * x[j])];
            sumqx += w[j] * q * x[j];
            sumq2 += w[j] * q * q;
        }
        if (sumq2 > 0 && sumqx * sumqx > best * sumq2) {
            d = sumqx / sumq2;
            best = d * sumqx;
        }
    }
    return d;
}

// Indices of 32-value groups packed two per byte: byte j of a group holds index j (low nibble) and j + 16 (high).
void pack_iq4(const uint8_t* L, int n, uint8_t* qs) {
    for (int i = 0; i < n / 32; ++i)
        for (int j = 0; j < 16; ++j) qs[16 * i + j] = (uint8_t)(L[32 * i + j] | (L[32 * i + 16 + j] << 4));
}

// block_iq4_nl: d (f16), qs[16].
void iq4_nl_pack(const float* x, uint8_t* y, float d) {
    uint8_t L[32];
    put_f16(y, d);
    const float id = d != 0 ? 1 / d : 0.0f;
    for (int j = 0; j < 32; ++j) L[j] = (uint8_t)iq4_index(id * x[j]);
    pack_iq4(L, 32, y + 2);
}

void iq4_nl_block(const float* x, uint8_t* y) {
    uint8_t L[32];
    iq4_nl_pack(x, y, iq4_subblock_scale(x, L));
}

// block_iq4_xs: d (f16), scales_h (u16: 2 high bits per sub-block), scales_l[4] (4 low bits per sub-block), qs[128].
void iq4_xs_pack(const float* x, uint8_t* y, const float* scales) {
    uint8_t L[QK_K];
    float amax_scale = 0, max_scale = 0;
    for (int ib = 0; ib < QK_K / 32; ++ib) {
        if (std::fabs(scales[ib]) > amax_scale) {
            amax_scale = std::fabs(scales[ib]);
            max_scale = scales[ib];
        }
    }
    const float d = -max_scale / 32;
    put_f16(y, d);
    const float id = d != 0 ? 1 / d : 0.0f;
    uint16_t scales_h = 0;
    uint8_t* scales_l = y + 4;
    std::memset(scales_l, 0, 4);
    for (int ib = 0; ib < QK_K / 32; ++ib) {
        const int l = clampi(nearest_int(id * scales[ib]), -32, 31);
        const float dl = d * l;
        const float idl = dl != 0 ? 1 / dl : 0.0f;
        for (int j = 0; j < 32; ++j) L[32 * ib + j] = (uint8_t)iq4_index(idl * x[32 * ib + j]);
        const int u = l + 32;
        scales_l[ib / 2] |= (uint8_t)((u & 0xf) << (4 * (ib % 2)));
        scales_h |= (uint16_t)((u >> 4) << (2 * ib));
    }
    std::memcpy(y + 2, &scales_h, 2);
    pack_iq4(L, QK_K, y + 8);
}

void iq4_xs_block(const float* x, uint8_t* y) {
    uint8_t L[QK_K];
    float scales[QK_K / 32];
    for (int ib = 0; ib < QK_K / 32; ++ib) scales[ib] = iq4_subblock_scale(x + 32 * ib, L + 32 * ib);
    iq4_xs_pack(x, y, scales);
}

// Blocks of the types with a scale search (Q2_K .. Q6_K, IQ4_NL, IQ4_XS), the searches run 16 sub-blocks
// at a time (ggml_quantize_x16.cpp; the same bytes); a batch with a NaN or an infinity takes the scalar code. False
// for another type or a CPU without AVX-512.
bool blocks_x16(GgmlType t, const float* x, uint8_t* y, int64_t nblocks) {
    if (!ggml_x16::available()) return false;
    const int64_t bytes = ggml_type_info(t).bytes;
    switch (t) {
        case GgmlType::Q4_K:
        case GgmlType::Q5_K: {
            const int nmax = t == GgmlType::Q4_K ? 15 : 31;
            uint8_t L[2 * QK_K];
            float scales[16], mins[16];
            for (int64_t b = 0; b < nblocks; b += 2) {
                const int nb = nblocks - b >= 2 ? 2 : 1;
                const float* xb = x + b * QK_K;
                if (!qk_asym_search_x16(xb, nmax, 8 * nb, L, scales, mins)) {
                    for (int k = 0; k < nb; ++k) qk_asym(xb + k * QK_K, y + (b + k) * bytes, nmax);
                    continue;
                }
                for (int k = 0; k < nb; ++k)
                    qk_asym_pack(xb + k * QK_K, y + (b + k) * bytes, nmax, L + k * QK_K, scales + 8 * k, mins + 8 * k);
            }
            return true;
        }
        case GgmlType::Q2_K: {
            uint8_t L[QK_K];
            float scales[16], mins[16];
            for (int64_t b = 0; b < nblocks; ++b) {
                if (q2_k_search_x16(x + b * QK_K, L, scales, mins)) q2_k_pack(x + b * QK_K, y + b * bytes, L, scales, mins);
                else q2_k_block(x + b * QK_K, y + b * bytes);
            }
            return true;
        }
        case GgmlType::Q3_K:
        case GgmlType::Q6_K: {  // symmetric 16-value sub-blocks: one super-block per call
            const bool q3 = t == GgmlType::Q3_K;
            int8_t L[QK_K];
            float scales[16];
            for (int64_t b = 0; b < nblocks; ++b) {
                const float* xb = x + b * QK_K;
                uint8_t* yb = y + b * bytes;
                const bool ok = q3 ? ggml_x16::make_q3_quants(16, 16, 4, xb, L, scales)
                                   : ggml_x16::make_qx_quants(16, 16, 32, xb, L, scales);
                if (ok) (q3 ? q3_k_pack : q6_k_pack)(xb, yb, L, scales);
                else (q3 ? q3_k_block : q6_k_block)(xb, yb);
            }
            return true;
        }
        case GgmlType::IQ4_NL: {
            float scales[16];
            for (int64_t b = 0; b < nblocks; b += 16) {
                const int nb = (int)std::min<int64_t>(16, nblocks - b);
                const bool ok = ggml_x16::iq4_scales(nb, x + b * 32, scales);
                for (int k = 0; k < nb; ++k) {
                    if (ok) iq4_nl_pack(x + (b + k) * 32, y + (b + k) * bytes, scales[k]);
                    else iq4_nl_block(x + (b + k) * 32, y + (b + k) * bytes);
                }
            }
            return true;
        }
        case GgmlType::IQ4_XS: {
            float scales[16];
            for (int64_t b = 0; b < nblocks; b += 2) {
                const int nb = nblocks - b >= 2 ? 2 : 1;
                const bool ok = ggml_x16::iq4_scales(8 * nb, x + b * QK_K, scales);
                for (int k = 0; k < nb; ++k) {
                    if (ok) iq4_xs_pack(x + (b + k) * QK_K, y + (b + k) * bytes, scales + 8 * k);
                    else iq4_xs_block(x + (b + k) * QK_K, y + (b + k) * bytes);
                }
            }
            return true;
        }
        default: return false;
    }
}

}  // namespace

void q2_k(const float* x, uint8_t* y) { q2_k_block(x, y); }
void q3_k(const float* x, uint8_t* y) { q3_k_block(x, y); }
void q4_k(const float* x, uint8_t* y) { qk_asym(x, y, 15); }
void q5_k(const float* x, uint8_t* y) { qk_asym(x, y, 31); }
void q6_k(const float* x, uint8_t* y) { q6_k_block(x, y); }
void iq4_nl(const float* x, uint8_t* y) { iq4_nl_block(x, y); }
void iq4_xs(const float* x, uint8_t* y) { iq4_xs_block(x, y); }

bool quantize_blocks_x16(GgmlType t, const float* x, uint8_t* y, int64_t nblocks) { return blocks_x16(t, x, y, nblocks); }

}  // namespace nuance::ggml_q
