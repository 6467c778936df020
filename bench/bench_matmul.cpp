// linear and matmul at Stable Diffusion 1.5 shapes (512x512, CFG batch 2: latent 64x64 = 4096 tokens per image).
// Shape letters: M rows (tokens), K reduction (in features), N out features, B batch of matrices.
// Each linear case runs with an F32 weight and with a BF16 weight (x stays F32, the result is F32): the bf16 variant
// measures whatever compute path linear() picks for a bf16 weight.
#include <string>

#include "bench_util.h"
#include "ops/matmul.h"

namespace nuance::bench {
namespace {

struct LinearCase {
    const char* name;
    int64_t M, K, N;
    bool bias;
};

// y = x · wᵀ + b, the UNet's transformer blocks at the 64x64 level and the text-conditioning projection.
constexpr LinearCase kLinearCases[] = {
    {"attn_out_8192x320x320", 8192, 320, 320, true},      // to_out.0 (to_q/k/v of attn1: same shape, no bias)
    {"geglu_proj_8192x320x2560", 8192, 320, 2560, true},  // ff.net.0.proj: GEGLU's value and gate halves
    {"ff_out_8192x1280x320", 8192, 1280, 320, true},      // ff.net.2
    {"cross_kv_154x768x320", 154, 768, 320, false},       // attn2.to_k / to_v on the CLIP context, 2 x 77 tokens
    {"inception_1x1_4624x768x192", 4624, 768, 192, true},  // FID Inception Mixed_6's 1x1 convolutions, batch 16
};

void bm_linear(benchmark::State& state, LinearCase c, DType wtype) {
    const Tensor x = randn({c.M, c.K}, 1);
    const Tensor w = randn({c.N, c.K}, 2).to(wtype);
    const Tensor b = c.bias ? randn({c.N}, 3) : Tensor();
    for (auto _ : state) {
        Tensor y = linear(x, w, b);
        benchmark::DoNotOptimize(y);
    }
    report_flops(state, 2.0 * (double)c.M * (double)c.K * (double)c.N);
}

// Attention scores at the 16x16 level (1280 channels, 8 heads of d = 160) as one batched matmul with a transposed
// operand: q [B, L, d] · kᵀ [B, d, L], B = 2 images x 8 heads, L = 256 tokens.
void bm_matmul_scores(benchmark::State& state) {
    const int64_t B = 16, L = 256, d = 160;
    const Tensor q = randn({B, L, d}, 1), k = randn({B, L, d}, 2);
    const Tensor kt = k.transpose(1, 2);
    for (auto _ : state) {
        Tensor s = matmul(q, kt);
        benchmark::DoNotOptimize(s);
    }
    report_flops(state, 2.0 * (double)B * (double)L * (double)L * (double)d);
}

const int kRegistered = [] {
    for (const LinearCase& c : kLinearCases)
        for (DType t : {DType::F32, DType::BF16})
            add(std::string("linear/") + c.name + "/" + dtype_tag(t),
                [c, t](benchmark::State& s) { bm_linear(s, c, t); });
    add("matmul/scores_16x256x160x256_kT/f32", bm_matmul_scores);
    return 0;
}();

}  // namespace
}  // namespace nuance::bench
