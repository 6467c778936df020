// torch's CPU noise stream: the MT19937 engine seeded the way at::CPUGeneratorImpl seeds it, and
// TorchCpuRng, which turns it into exactly the floats torch.randn returns on an x86-64 CPU.
#pragma once
#include <array>
#include <cstdint>
#include <optional>

#include "core/rng.h"

namespace nuance {

// 32-bit Mersenne Twister (Matsumoto & Nishimura 1998). torch seeds it from a 64-bit seed with the
// low 32 bits only (state[0] = seed & 0xffffffff, then Knuth's 1812433253 recurrence), so seeds that
// agree modulo 2^32 give the same stream, exactly as in torch. Same outputs as std::mt19937(uint32_t(seed)).
class Mt19937 {
public:
    explicit Mt19937(uint64_t seed = 5489);
    uint32_t operator()() {
        if (next_ >= kN) refill();
        uint32_t y = state_[next_++];
        y ^= y >> 11;
        y ^= (y << 7) & 0x9d2c5680u;
        y ^= (y << 15) & 0xefc60000u;
        y ^= y >> 18;
        return y;
    }
    // at::CPUGeneratorImpl::random64(): the first 32-bit draw is the high half.
    uint64_t next64() {
        const uint64_t hi = (*this)();
        const uint64_t lo = (*this)();
        return (hi << 32) | lo;
    }

private:
    static constexpr int kN = 624;
    void refill();  // the "twist": regenerates all kN words
    std::array<uint32_t, kN> state_{};
    int next_ = kN;
};

// torch.Generator('cpu').manual_seed(seed); torch.randn(shape, generator=g), bit for bit, including
// successive calls on one generator. torch has two algorithms, chosen per call by the element count:
//  - n >= 16 (contiguous float, the only case here): n uniforms from 24-bit draws, then Box-Muller on
//    blocks of 16 (u1 = 1 - d[j], u2 = d[j + 8] for j < 8) with the AVX2 kernel's float log/sincos
//    (Cephes polynomials of avx_mathfun.h, FMA-contracted as GCC builds them); when 16 does not divide n
//    the last 16 values are redrawn and recomputed.
//  - n < 16: one at::normal_distribution<double> per element, a double Box-Muller from 53-bit uniforms
//    whose second value is cached in the generator and returned by the next such draw.
// The >= 16 stream is the one torch gives on x86-64 CPUs with AVX2 (every machine the references were
// made on); torch on CPUs without AVX2 (e.g. ARM) uses libm sin/cos/log there and differs in the last bit.
class TorchCpuRng final : public Rng {
public:
    explicit TorchCpuRng(uint64_t seed) : engine_(seed) {}
    void fill_randn(float* out, int64_t n) override;

private:
    float uniform_float();    // at::uniform_real_distribution<float>(0, 1): 24 low bits of one draw
    double uniform_double();  // at::uniform_real_distribution<double>(0, 1): 53 low bits of random64()
    double normal_double();   // at::normal_distribution<double>(0, 1) with the generator's cache
    Mt19937 engine_;
    std::optional<double> next_double_normal_;
};

}  // namespace nuance
