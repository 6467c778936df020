// MT19937 and torch's CPU normal fill (see mt19937.h).
//
// Exactness notes. The >= 16 path reproduces torch's normal_fill_16_AVX2, whose log and sincos are the
// Cephes-derived polynomials of avx_mathfun.h (Pommier / Garberoglio). torch's x86 wheels compile that
// header with GCC and -mfma, and GCC contracts each multiply whose only use is an add into one FMA; the
// reference streams match only with those contractions, so every fused step below is an explicit
// std::fma and every other product is either exact or feeds no addition (so no compiler contraction of
// this file can change a bit). The constants are avx_mathfun's, as float literals.
#include "core/mt19937.h"

#include <cmath>
#include <cstring>

#include "core/error.h"

namespace nuance {

// ---------------------------------------------------------------------------------------------- engine

Mt19937::Mt19937(uint64_t seed) {
    state_[0] = static_cast<uint32_t>(seed & 0xffffffffu);
    for (int j = 1; j < kN; ++j)
        state_[j] = 1812433253u * (state_[j - 1] ^ (state_[j - 1] >> 30)) + static_cast<uint32_t>(j);
    next_ = kN;
}

void Mt19937::refill() {
    constexpr int kM = 397;
    constexpr uint32_t kMatrixA = 0x9908b0dfu, kUpper = 0x80000000u, kLower = 0x7fffffffu;
    auto twist = [](uint32_t u, uint32_t v) {
        const uint32_t y = (u & kUpper) | (v & kLower);
        return (y >> 1) ^ ((v & 1u) ? kMatrixA : 0u);
    };
    int k = 0;
    for (; k < kN - kM; ++k) state_[k] = state_[k + kM] ^ twist(state_[k], state_[k + 1]);
    for (; k < kN - 1; ++k) state_[k] = state_[k + kM - kN] ^ twist(state_[k], state_[k + 1]);
    state_[kN - 1] = state_[kM - 1] ^ twist(state_[kN - 1], state_[0]);
    next_ = 0;
}

// ------------------------------------------------------------------ avx_mathfun's float log and sincos

namespace {

inline uint32_t bits_of(float f) { uint32_t u; std::memcpy(&u, &f, 4); return u; }
inline float float_of(uint32_t u) { float f; std::memcpy(&f, &u, 4); return f; }

// Natural log for x in (0, 1] (u1 = 1 - uniform never leaves that range): frexp-style split
// x = m * 2^e with m in [sqrt(1/2), sqrt(2)), then Cephes' degree-9 polynomial in (m - 1).
float cephes_logf(float x) {
    x = std::fmax(x, float_of(0x00800000u));  // cut off denormals, as the AVX code does
    const int32_t biased = static_cast<int32_t>(bits_of(x) >> 23);
    x = float_of((bits_of(x) & ~0x7f800000u) | bits_of(0.5f));  // mantissa in [0.5, 1)
    float e = static_cast<float>(biased - 0x7f) + 1.0f;
    if (x < 0.707106781186547524f) {  // x = x + x - 1, e -= 1
        e = e - 1.0f;
        x = (x - 1.0f) + x;
    } else {
        x = (x - 1.0f) + 0.0f;
    }
    const float z = x * x;
    float y = std::fma(7.0376836292E-2f, x, -1.1514610310E-1f);
    y = std::fma(y, x, 1.1676998740E-1f);
    y = std::fma(y, x, -1.2420140846E-1f);
    y = std::fma(y, x, 1.4249322787E-1f);
    y = std::fma(y, x, -1.6668057665E-1f);
    y = std::fma(y, x, 2.0000714765E-1f);
    y = std::fma(y, x, -2.4999993993E-1f);
    y = std::fma(y, x, 3.3333331174E-1f);
    y = y * x;
    y = std::fma(y, z, e * -2.12194440e-4f);  // the product y*z is the contracted one
    y = y - z * 0.5f;                         // exact product
    x = x + y;
    return x + e * 0.693359375f;              // exact product (e is a small integer)
}

// sin and cos of x >= 0 (theta = 2*pi*u2): reduce by pi/4 with Cephes' three-part pi/4 (DP1..DP3),
// evaluate both minimax polynomials, pick and sign them by octant.
void cephes_sincosf(float x, float* s, float* c) {
    int32_t j = static_cast<int32_t>(x * 1.27323954473516f);  // x * 4/pi, truncated
    j = (j + 1) & ~1;
    const float y = static_cast<float>(j);
    const uint32_t sign_sin = static_cast<uint32_t>(j & 4) << 29;
    const uint32_t sign_cos = static_cast<uint32_t>(~(j - 2) & 4) << 29;
    const bool sin_poly = (j & 2) == 0;
    x = std::fma(y, -0.78515625f, x);
    x = std::fma(y, -2.4187564849853515625e-4f, x);
    x = std::fma(y, -3.77489497744594108e-8f, x);
    const float z = x * x;
    float yc = std::fma(2.443315711809948E-005f, z, -1.388731625493765E-003f);
    yc = std::fma(yc, z, 4.166664568298827E-002f);
    yc = yc * z;
    yc = std::fma(yc, z, -(z * 0.5f));  // exact product z*0.5
    yc = yc + 1.0f;
    float ys = std::fma(-1.9515295891E-4f, z, 8.3321608736E-3f);
    ys = std::fma(ys, z, -1.6666654611E-1f);
    ys = ys * z;
    ys = std::fma(ys, x, x);
    // The AVX code selects by masking and adds the other lane's +0: -0 becomes +0, kept here.
    const float sv = (sin_poly ? ys : yc) + 0.0f;
    const float cv = (sin_poly ? yc : ys) + 0.0f;
    *s = float_of(bits_of(sv) ^ sign_sin);
    *c = float_of(bits_of(cv) ^ sign_cos);
}

// normal_fill_16_AVX2: d holds 16 uniforms in [0, 1); writes 16 normals in place.
void box_muller_16(float* d) {
    for (int j = 0; j < 8; ++j) {
        const float u1 = 1.0f - d[j];  // [0, 1) -> (0, 1] for the log
        const float u2 = d[j + 8];
        const float radius = std::sqrt(-2.0f * cephes_logf(u1));
        const float theta = 6.2831855f * u2;  // float(2 * pi)
        float sin_t, cos_t;
        cephes_sincosf(theta, &sin_t, &cos_t);
        // torch finishes with fmadd(n, std, mean) = fma(n, 1, 0): n, except that -0 becomes +0.
        d[j] = radius * cos_t + 0.0f;
        d[j + 8] = radius * sin_t + 0.0f;
    }
}

}  // namespace

// ------------------------------------------------------------------------------------- torch's stream

float TorchCpuRng::uniform_float() {
    return static_cast<float>(engine_() & 0xffffffu) * 0x1p-24f;
}

double TorchCpuRng::uniform_double() {
    return static_cast<double>(engine_.next64() & ((uint64_t{1} << 53) - 1)) * 0x1p-53;
}

double TorchCpuRng::normal_double() {
    if (next_double_normal_) {
        const double v = *next_double_normal_;
        next_double_normal_.reset();
        return v;
    }
    const double u1 = uniform_double();
    const double u2 = uniform_double();
    const double r = std::sqrt(-2.0 * std::log1p(-u2));
    const double theta = 2.0 * 3.14159265358979323846 * u1;
    next_double_normal_ = r * std::sin(theta);
    return r * std::cos(theta);
}

void TorchCpuRng::fill_randn(float* out, int64_t n) {
    NUANCE_CHECK(n >= 0, "randn: element count must be >= 0, got ", n);
    if (n == 0) return;
    NUANCE_CHECK(out != nullptr, "randn: null output buffer for ", n, " elements");
    if (n < 16) {
        for (int64_t i = 0; i < n; ++i) out[i] = static_cast<float>(normal_double());
        return;
    }
    for (int64_t i = 0; i < n; ++i) out[i] = uniform_float();
    for (int64_t i = 0; i + 16 <= n; i += 16) box_muller_16(out + i);
    if (n % 16 != 0) {  // torch redraws the last 16 and recomputes them
        float* tail = out + n - 16;
        for (int j = 0; j < 16; ++j) tail[j] = uniform_float();
        box_muller_16(tail);
    }
}

}  // namespace nuance
