// Scaled dot-product attention at Stable Diffusion 1.5 shapes (512x512, CFG batch 2; 8 heads, head dim = channels/8)
// and the VAE's single-head mid-block attention, f32 and bf16 operands, on the fused kernel (AVX-512 CPUs) and on
// the oneDNN tiled path (`tiled`: what CPUs without AVX-512 run).
// Shape letters: B batch, H heads, Lq/Lk query/key tokens, d head dim.
// FLOPs count the two products only (q·kᵀ and p·v: 4·B·H·Lq·Lk·d); the softmax's exp/sum is extra work not counted.
#include <string>

#include "backends/cpu/flash_attention.h"
#include "bench_util.h"
#include "ops/attention.h"

namespace nuance::bench {
namespace {

struct AttnCase {
    const char* name;
    int64_t B, H, Lq, Lk, d;
};

constexpr AttnCase kAttnCases[] = {
    {"self_64x64_b2h8_l4096_d40", 2, 8, 4096, 4096, 40},    // attn1 at the 320-channel level
    {"cross_64x64_b2h8_l4096x77_d40", 2, 8, 4096, 77, 40},  // attn2 over the 77 CLIP tokens
    {"self_32x32_b2h8_l1024_d80", 2, 8, 1024, 1024, 80},    // attn1 at the 640-channel 32x32 level
    {"cross_32x32_b2h8_l1024x77_d80", 2, 8, 1024, 77, 80},  // attn2 at 32x32
    {"self_16x16_b2h8_l256_d160", 2, 8, 256, 256, 160},     // attn1 at the 1280-channel 16x16 level
    {"self_mid_8x8_b2h8_l64_d160", 2, 8, 64, 64, 160},      // mid_block (8x8 latent)
    {"vae_mid_b1h1_l4096_d512", 1, 1, 4096, 4096, 512},     // VAE decoder mid-block attention, 64x64
    {"sdxl_64x64_b2h10_l4096_d64", 2, 10, 4096, 4096, 64},  // SDXL at 1024²: 640-channel level
    {"sdxl_32x32_b2h20_l1024_d64", 2, 20, 1024, 1024, 64},  // SDXL at 1024²: 1280-channel level
    {"sdxl_16x16_b2h20_l256_d64", 2, 20, 256, 256, 64},     // SDXL at 512²: 1280-channel level
};

double attention_flops(const AttnCase& c) {
    return 4.0 * (double)c.B * (double)c.H * (double)c.Lq * (double)c.Lk * (double)c.d;
}

void bm_sdpa(benchmark::State& state, AttnCase c, DType t, bool fused) {
    const Tensor q = randn({c.B, c.H, c.Lq, c.d}, 1).to(t);
    const Tensor k = randn({c.B, c.H, c.Lk, c.d}, 2).to(t);
    const Tensor v = randn({c.B, c.H, c.Lk, c.d}, 3).to(t);
    cpu::set_flash_attention_enabled(fused);
    for (auto _ : state) {
        Tensor o = scaled_dot_product_attention(q, k, v);
        benchmark::DoNotOptimize(o);
    }
    cpu::set_flash_attention_enabled(true);
    report_flops(state, attention_flops(c));
}

// The same self-attention as the UNet's Attention module calls it: token-major [B, L, H*d] in and out, so the
// head split/merge (permute + copies) is included.
void bm_mha_self_64x64(benchmark::State& state) {
    const AttnCase c = kAttnCases[0];
    const Tensor q = randn({c.B, c.Lq, c.H * c.d}, 1);
    const Tensor k = randn({c.B, c.Lk, c.H * c.d}, 2);
    const Tensor v = randn({c.B, c.Lk, c.H * c.d}, 3);
    for (auto _ : state) {
        Tensor o = multi_head_attention(q, k, v, c.H);
        benchmark::DoNotOptimize(o);
    }
    report_flops(state, attention_flops(c));
}

const int kRegistered = [] {
    for (const AttnCase& c : kAttnCases)
        for (DType t : {DType::F32, DType::BF16})
            for (bool fused : {true, false})
                add(std::string("sdpa/") + c.name + (t == DType::BF16 ? "/bf16" : "/f32") + (fused ? "" : "/tiled"),
                    [c, t, fused](benchmark::State& s) { bm_sdpa(s, c, t, fused); });
    add("mha/self_64x64_b2h8_l4096_d40_tokens/f32", bm_mha_self_64x64);
    return 0;
}();

}  // namespace
}  // namespace nuance::bench
