// Memory-bound ops at Stable Diffusion 1.5 shapes (512x512, CFG batch 2): normalisations, softmax rows and the
// activations. Reported as bytes/s of the minimum traffic (input read once + output written once, F32); the kernels
// may read their input more than once (statistics pass, then normalise), so this is a lower bound on real traffic.
// Shape letters: N batch, C channels, H/W spatial, M rows, D row length.
#include <string>

#include "bench_util.h"
#include "ops/elementwise.h"
#include "ops/norm.h"

namespace nuance::bench {
namespace {

double f32_traffic(const Shape& s) { return 2.0 * 4.0 * (double)shape_numel(s); }

struct GroupNormCase {
    const char* name;
    Shape shape;  // [N, C, H, W]
};

const GroupNormCase kGroupNormCases[] = {
    {"unet_2x320x64x64", {2, 320, 64, 64}},     // resnet norm1/norm2 at the 64x64 level
    {"vae_dec_1x128x512x512", {1, 128, 512, 512}},  // VAE decoder up_blocks.3
};

void bm_group_norm(benchmark::State& state, const Shape& shape, bool silu) {
    const Tensor x = randn(shape, 1);
    const Tensor w = randn({shape[1]}, 2), b = randn({shape[1]}, 3);
    for (auto _ : state) {
        Tensor y = group_norm(x, 32, w, b, 1e-5f, silu);
        benchmark::DoNotOptimize(y);
    }
    report_bytes(state, f32_traffic(shape));
}

// The transformer blocks' norm1/2/3 at the 64x64 level: [2 x 4096 tokens, 320].
void bm_layer_norm(benchmark::State& state) {
    const Shape shape{8192, 320};
    const Tensor x = randn(shape, 1), w = randn({320}, 2), b = randn({320}, 3);
    for (auto _ : state) {
        Tensor y = layer_norm(x, w, b, 1e-5f);
        benchmark::DoNotOptimize(y);
    }
    report_bytes(state, f32_traffic(shape));
}

// Softmax over rows of attention scores: self-attention at 64x64 (rows of 4096 keys; 2048 query rows = 32 MB) and
// cross-attention (B·H·Lq = 65536 rows of 77 CLIP tokens).
void bm_softmax(benchmark::State& state, Shape shape) {
    const Tensor x = randn(shape, 1);
    for (auto _ : state) {
        Tensor y = softmax(x);
        benchmark::DoNotOptimize(y);
    }
    report_bytes(state, f32_traffic(shape));
}

// SiLU on a resnet activation at 64x64; exact GELU on GEGLU's gate half ([8192, 1280]).
template <Tensor (*Act)(const Tensor&)>
void bm_activation(benchmark::State& state, Shape shape) {
    const Tensor x = randn(shape, 1);
    for (auto _ : state) {
        Tensor y = Act(x);
        benchmark::DoNotOptimize(y);
    }
    report_bytes(state, f32_traffic(shape));
}

const int kRegistered = [] {
    for (const GroupNormCase& c : kGroupNormCases)
        for (bool silu : {false, true})
            add(std::string("group_norm/g32_") + c.name + (silu ? "_silu" : "") + "/f32",
                [&c, silu](benchmark::State& s) { bm_group_norm(s, c.shape, silu); });
    add("layer_norm/8192x320/f32", bm_layer_norm);
    add("softmax/rows_2048x4096/f32", [](benchmark::State& s) { bm_softmax(s, {2048, 4096}); });
    add("softmax/rows_65536x77/f32", [](benchmark::State& s) { bm_softmax(s, {65536, 77}); });
    add("silu/2x320x64x64/f32", [](benchmark::State& s) { bm_activation<silu>(s, {2, 320, 64, 64}); });
    add("gelu/8192x1280/f32", [](benchmark::State& s) { bm_activation<gelu>(s, {8192, 1280}); });
    return 0;
}();

}  // namespace
}  // namespace nuance::bench
