// torch's CUDA noise stream on the CPU: the Philox4x32-10 counter-based generator (Salmon et al. 2011,
// "Parallel random numbers: as easy as 1, 2, 3") as curand uses it, and PhiloxRng, which reproduces
// torch.randn(..., device='cuda') for a seeded CUDA generator (A1111's default "GPU" noise, diffusers on GPU).
#pragma once
#include <array>
#include <cstdint>

#include "core/rng.h"

namespace nuance {

// One Philox4x32 block: 10 rounds on the 128-bit counter under the 64-bit key.
std::array<uint32_t, 4> philox4x32_10(std::array<uint32_t, 4> counter, std::array<uint32_t, 2> key);

// sin(2*pi*t) and cos(2*pi*t) as an sm_70+ GPU's SFU (MUFU.SIN / MUFU.COS) computes them for t >= 0 in
// revolutions: t is taken in fixed point with 25 fraction bits (quadrant + 23 bits, truncated) and the
// odd quadrants fold the position with a ones' complement. Matches the hardware to ~2.5e-7 absolute
// (the SFU's own interpolation error is not modelled); used for __sincosf.
void sfu_sincos_revolutions(float t, float* sin_out, float* cos_out);

// g = torch.Generator('cuda').manual_seed(seed); torch.randn(shape, generator=g, device='cuda'), to
// within ~1e-6 absolute (the GPU uses the approximate __sincosf, modelled above), including successive
// calls. torch launches a grid-stride kernel: 256 threads per block, blocks = min(ceil(n / 256),
// sm_count * (max_threads_per_sm / 256)); thread i seeds curand with subsequence i and the generator's
// philox offset, and each of its curand_normal4 calls (one Philox block -> two Box-Muller pairs)
// serves elements i + stride * (4 * call + k), k = 0..3. Every call then advances the offset by
// 4 * ceil(n / (4 * stride)). The launch shape only matters once n exceeds 256 * blocks of the
// largest grid (270,336 on an H100/H200 with 132 SMs x 2048 threads; the defaults); for smaller
// tensors every GPU gives the same stream.
class PhiloxRng final : public Rng {
public:
    static constexpr int kDefaultSmCount = 132;            // H100 SXM / H200
    static constexpr int kDefaultMaxThreadsPerSm = 2048;   // sm_70..sm_90 datacenter parts (1536 on GA10x/AD10x)

    explicit PhiloxRng(uint64_t seed, int sm_count = kDefaultSmCount,
                       int max_threads_per_sm = kDefaultMaxThreadsPerSm);
    void fill_randn(float* out, int64_t n) override;
    uint64_t offset() const { return offset_; }  // torch's philox_offset_per_thread

private:
    uint64_t seed_;
    uint64_t offset_ = 0;
    uint32_t max_blocks_;
};

}  // namespace nuance
