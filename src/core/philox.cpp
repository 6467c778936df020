// Philox4x32-10 and torch's CUDA normal stream (see philox.h).
//
// Per element the GPU computes curand's _curand_box_muller(x, y) for one pair of 32-bit Philox words:
//   u = x * 2^-32 + 2^-33 (one FFMA),  v = y * (2*pi * 2^-32) + pi * 2^-32 (one FFMA)
//   s = sqrtf(-2 * logf(u));  (sin, cos) = __sincosf(v);  result = (s * sin, s * cos)
// The Philox counter of thread i's c-th curand_normal4 call is (offset / 4 + c) in words 0-1 and i in
// words 2-3 (curand_init's skipahead and skipahead_sequence); the key is the 64-bit seed.
// logf and sqrtf are accurate on the GPU and here. __sincosf is not: it is FMUL.RZ(v, 1/(2*pi)) then the
// SFU (MUFU.SIN / MUFU.COS). Against torch's H200 output, libm's sin(v) is off by up to 2.4e-6 after
// the multiplication by s; taking the reduction as round-toward-zero leaves 1.1e-6, with a residual
// that is a function of the angle: a truncation of the revolution to 25 fraction bits (in the first
// quadrant, where floats carry more bits) and a bias of one unit in the odd quadrants, where the
// hardware folds the position with a ones' complement (x -> 1 - x - 2^-23, the classic table-
// interpolator trick). Modelling both (sfu_sincos_revolutions) leaves at most 6e-7 over all 50 CUDA golden
// tensors: what remains is the SFU's interpolation error (~2^-22), which is not modelled.
#include "core/philox.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "core/error.h"

namespace nuance {

std::array<uint32_t, 4> philox4x32_10(std::array<uint32_t, 4> c, std::array<uint32_t, 2> key) {
    constexpr uint32_t kM0 = 0xD2511F53u, kM1 = 0xCD9E8D57u;  // round multipliers
    constexpr uint32_t kW0 = 0x9E3779B9u, kW1 = 0xBB67AE85u;  // key schedule (golden ratio, sqrt(3) - 1)
    uint32_t k0 = key[0], k1 = key[1];
    for (int round = 0; round < 10; ++round) {
        const uint64_t p0 = static_cast<uint64_t>(kM0) * c[0];
        const uint64_t p1 = static_cast<uint64_t>(kM1) * c[2];
        c = {static_cast<uint32_t>(p1 >> 32) ^ c[1] ^ k0, static_cast<uint32_t>(p1),
             static_cast<uint32_t>(p0 >> 32) ^ c[3] ^ k1, static_cast<uint32_t>(p0)};
        k0 += kW0;
        k1 += kW1;
    }
    return c;
}

namespace {

// philox4x32_10 on kLanes counters at once (structure of arrays, so the compiler vectorises it).
constexpr int kLanes = 8;
struct PhiloxLanes {
    uint32_t w[4][kLanes];
};

void philox_lanes(PhiloxLanes& c, uint32_t k0, uint32_t k1) {
    for (int round = 0; round < 10; ++round) {
        for (int i = 0; i < kLanes; ++i) {
            const uint64_t p0 = static_cast<uint64_t>(0xD2511F53u) * c.w[0][i];
            const uint64_t p1 = static_cast<uint64_t>(0xCD9E8D57u) * c.w[2][i];
            const uint32_t n0 = static_cast<uint32_t>(p1 >> 32) ^ c.w[1][i] ^ k0;
            const uint32_t n2 = static_cast<uint32_t>(p0 >> 32) ^ c.w[3][i] ^ k1;
            c.w[0][i] = n0;
            c.w[1][i] = static_cast<uint32_t>(p1);
            c.w[2][i] = n2;
            c.w[3][i] = static_cast<uint32_t>(p0);
        }
        k0 += 0x9E3779B9u;
        k1 += 0xBB67AE85u;
    }
}

// sin(pi/2 * p) for p in [0, 1]: Taylor series to a^15 (truncation error < 1e-11), in double.
inline double sin_quarter_turn(double p) {
    const double a = 1.57079632679489661923 * p, a2 = a * a;
    double r = -1.0 / 1307674368000.0;  // -1/15!
    r = r * a2 + 1.0 / 6227020800.0;    //  1/13!
    r = r * a2 - 1.0 / 39916800.0;      // -1/11!
    r = r * a2 + 1.0 / 362880.0;        //  1/9!
    r = r * a2 - 1.0 / 5040.0;          // -1/7!
    r = r * a2 + 1.0 / 120.0;           //  1/5!
    r = r * a2 - 1.0 / 6.0;             // -1/3!
    return a + a * a2 * r;
}

// The SFU's fixed-point angle: 2 quadrant bits + 23 position bits of a revolution.
constexpr int kPositionBits = 23;
constexpr uint32_t kPositionMask = (1u << kPositionBits) - 1;
constexpr uint32_t kTurnMask = (1u << (kPositionBits + 2)) - 1;
constexpr uint32_t kQuarterTurn = 1u << kPositionBits;

// sin of a fixed-point revolution x: odd quadrants fold the position with a ones' complement.
inline float sfu_sin_fixed(uint32_t x) {
    const uint32_t quadrant = (x >> kPositionBits) & 3u;
    const uint32_t pos = (quadrant & 1u) ? kPositionMask - (x & kPositionMask) : x & kPositionMask;
    const double mag = sin_quarter_turn(static_cast<double>(static_cast<int32_t>(pos)) * 0x1p-23);
    return static_cast<float>(quadrant >= 2 ? -mag : mag);
}

// FMUL.RZ for positive a and b: the float product rounded toward zero (the double product of two
// floats is exact, so rounding it to nearest and stepping down once when that went up is exact too).
inline float mul_round_toward_zero(float a, float b) {
    const double exact = static_cast<double>(a) * static_cast<double>(b);
    float r = static_cast<float>(exact);
    uint32_t u;
    std::memcpy(&u, &r, 4);
    u -= static_cast<double>(r) > exact ? 1u : 0u;
    std::memcpy(&r, &u, 4);
    return r;
}

// curand's _curand_box_muller(x[i], y[i]) for kLanes pairs as compiled for the GPU (file comment):
// sin_out[i] = radius * sin(angle) and, when cos_out is given, cos_out[i] = radius * cos(angle).
void box_muller_lanes(const uint32_t* x, const uint32_t* y, float* sin_out, float* cos_out) {
    constexpr float kInv2Pow32 = 2.3283064e-10f;                    // CURAND_2POW32_INV
    constexpr float kInv2Pow32TwoPi = 2.3283064e-10f * 6.2831855f;  // CURAND_2POW32_INV_2PI
    float radius[kLanes];
    uint32_t angle[kLanes];
    for (int i = 0; i < kLanes; ++i) {
        const float u = std::fma(static_cast<float>(x[i]), kInv2Pow32, kInv2Pow32 / 2.0f);  // (0, 1]
        radius[i] = std::sqrt(-2.0f * std::log(u));
    }
    for (int i = 0; i < kLanes; ++i) {
        const float v = std::fma(static_cast<float>(y[i]), kInv2Pow32TwoPi, kInv2Pow32TwoPi / 2.0f);
        const float turns = mul_round_toward_zero(v, 0.15915494f);  // v / (2*pi), in [0, 1.0000001]
        angle[i] = static_cast<uint32_t>(static_cast<int32_t>(static_cast<double>(turns) * 0x1p25)) & kTurnMask;
    }
    for (int i = 0; i < kLanes; ++i) sin_out[i] = radius[i] * sfu_sin_fixed(angle[i]);
    if (cos_out)
        for (int i = 0; i < kLanes; ++i) cos_out[i] = radius[i] * sfu_sin_fixed(angle[i] + kQuarterTurn);
}

}  // namespace

void sfu_sincos_revolutions(float t, float* sin_out, float* cos_out) {
    NUANCE_CHECK(t >= 0.0f && t < 0x1p38f, "sfu_sincos_revolutions: t must be in [0, 2^38), got ", t);
    // truncate to the fixed-point revolution; whole turns drop out
    const uint32_t x = static_cast<uint32_t>(static_cast<uint64_t>(static_cast<double>(t) * 0x1p25)) & kTurnMask;
    *sin_out = sfu_sin_fixed(x);
    *cos_out = sfu_sin_fixed(x + kQuarterTurn);  // a quarter turn later
}

PhiloxRng::PhiloxRng(uint64_t seed, int sm_count, int max_threads_per_sm) : seed_(seed) {
    NUANCE_CHECK(sm_count > 0 && max_threads_per_sm >= 256,
                 "PhiloxRng: need sm_count > 0 and max_threads_per_sm >= 256, got ", sm_count, " and ",
                 max_threads_per_sm);
    max_blocks_ = static_cast<uint32_t>(sm_count) * static_cast<uint32_t>(max_threads_per_sm / 256);
}

void PhiloxRng::fill_randn(float* out, int64_t n) {
    NUANCE_CHECK(n >= 0, "randn: element count must be >= 0, got ", n);
    if (n == 0) return;  // torch returns before touching the generator
    // Past 2^31 bytes torch splits the launch into 32-bit-indexable pieces, each drawing its own offset.
    constexpr int64_t kMaxSingleLaunch = (std::numeric_limits<int32_t>::max() - 1) / 4 + 1;
    NUANCE_CHECK_CODE(n <= kMaxSingleLaunch, Unsupported, "randn (cuda stream): ", n,
                      " elements exceed torch's single-launch limit of ", kMaxSingleLaunch);
    NUANCE_CHECK(out != nullptr, "randn: null output buffer for ", n, " elements");

    constexpr uint64_t kBlock = 256, kUnroll = 4;
    const uint64_t numel = static_cast<uint64_t>(n);
    const uint64_t blocks = std::min<uint64_t>((numel + kBlock - 1) / kBlock, max_blocks_);
    const uint64_t stride = kBlock * blocks;
    const uint64_t calls = (numel - 1) / (stride * kUnroll) + 1;  // curand_normal4 calls per thread
    const uint64_t first_block = offset_ / 4;  // curand_init(seed, thread, offset): counter += offset / 4
    offset_ += calls * 4;

    const uint32_t key0 = static_cast<uint32_t>(seed_), key1 = static_cast<uint32_t>(seed_ >> 32);
    for (uint64_t call = 0; call < calls; ++call) {
        const uint64_t call_first = stride * kUnroll * call;  // element of thread 0 in this call
        if (call_first >= numel) break;
        const uint64_t threads = std::min(stride, numel - call_first);
        const uint64_t block = first_block + call;
        for (uint64_t t0 = 0; t0 < threads; t0 += kLanes) {
            const int lanes = static_cast<int>(std::min<uint64_t>(kLanes, threads - t0));
            PhiloxLanes c;
            for (int i = 0; i < kLanes; ++i) {
                const uint64_t thread = t0 + static_cast<uint64_t>(i);
                c.w[0][i] = static_cast<uint32_t>(block);
                c.w[1][i] = static_cast<uint32_t>(block >> 32);
                c.w[2][i] = static_cast<uint32_t>(thread);
                c.w[3][i] = static_cast<uint32_t>(thread >> 32);
            }
            philox_lanes(c, key0, key1);
            // Lanes k = 0..3 of curand_normal4 land on elements first + k * stride.
            const uint64_t first = call_first + t0;
            const bool need_pair1 = first + 2 * stride < numel;
            float lane[4][kLanes];
            box_muller_lanes(c.w[0], c.w[1], lane[0], first + stride < numel ? lane[1] : nullptr);
            if (need_pair1) box_muller_lanes(c.w[2], c.w[3], lane[2], lane[3]);
            for (int k = 0; k < 4; ++k) {
                for (int i = 0; i < lanes; ++i) {
                    const uint64_t e = first + static_cast<uint64_t>(i) + static_cast<uint64_t>(k) * stride;
                    if (e < numel) out[e] = lane[k][i];
                }
            }
        }
    }
}

}  // namespace nuance
