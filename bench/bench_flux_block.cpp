// One Flux.1 double-stream and one single-stream block at full width (D 3072 = 24 heads x 128, mlp 12288), at the
// token counts of 512² (32x32 = 1024 image + 512 text tokens) and 1024² (64x64 = 4096 + 512), batch 1, with the
// weights in F32 (fp32 products) and in BF16 (bf16 products, bf16 q/k/v into the fused attention).
// A Flux.1 step is 19 double + 38 single blocks plus the (small) embedders and final layer, so
// step ≈ 19 · double + 38 · single. Random weights (values do not change the time).
// Shape letters: L = Lt + Li tokens, D width.
#include <string>

#include "bench_util.h"
#include "core/op_stats.h"
#include "models/flux/flux_blocks.h"
#include "ops/rope.h"
#include "models/flux/flux_transformer.h"

namespace nuance::bench {
namespace {

constexpr int64_t kD = 3072, kHeads = 24, kHeadDim = 128, kMlp = 12288, kText = 512;

// Weights to the precision under test: BF16 values and bf16 products, or F32 values and fp32 products.
void set_precision(Module& m, DType t) {
    for_each_param(m, [&](const std::string&, Param& p) {
        if (!p.matrix) return;
        p.compute = t == DType::BF16 ? Precision::BF16 : Precision::FP32;
        p.value = p.value.to(t);
    });
}

// FLOPs of the products: linears 2·tokens·in·out, attention 4·L²·D.
double double_flops(int64_t Li) {
    const double L = (double)(Li + kText), D = (double)kD;
    const double per_token = 2.0 * (4 * D * D + 2 * D * kMlp);  // q,k,v,out + ff, each stream
    return L * per_token + 2.0 * 6 * D * D + 4.0 * L * L * D;
}
double single_flops(int64_t Li) {
    const double L = (double)(Li + kText), D = (double)kD;
    return L * 2.0 * (3 * D * D + D * kMlp + (D + kMlp) * D) + 2.0 * 3 * D * D + 4.0 * L * L * D;
}

// One more call under the op profile: where the time goes (ms per call) as counters linear / attention / rest
// (norms, rope, elementwise, copies).
template <class Fn>
void report_profile(benchmark::State& state, Fn&& call) {
    OpProfile prof;
    {
        OpProfileScope scope(prof);
        call();
    }
    double lin = 0, attn = 0, rest = 0;
    for (const auto& [name, e] : prof)
        (name == "linear" ? lin : name == "attention" ? attn : rest) += e.seconds * 1e3;
    for (const auto& [name, e] : prof) state.counters[name] = e.seconds * 1e3;
    state.counters["linear_ms"] = lin;
    state.counters["attn_ms"] = attn;
    state.counters["rest_ms"] = rest;
}

Tensor freqs_for(int64_t side) {
    const Tensor ids = cat({flux_text_ids(kText), flux_image_ids(side * 2, side * 2)}, 0);
    return rope_frequencies(ids, {16, 56, 56});
}

void bm_double(benchmark::State& state, int64_t side, DType t) {
    FluxDoubleBlock b(kD, kHeads, kHeadDim, kMlp, 1e-6f);
    init_random(b, 1, 0.02f);
    set_precision(b, t);
    const int64_t Li = side * side;
    const Tensor x = randn({1, Li, kD}, 2), ctx = randn({1, kText, kD}, 3), vec = randn({1, kD}, 4);
    const Tensor freqs = freqs_for(side);
    b.forward(x, ctx, vec, freqs);  // packs the weights
    for (auto _ : state) benchmark::DoNotOptimize(b.forward(x, ctx, vec, freqs));
    report_flops(state, double_flops(Li));
    report_profile(state, [&] { b.forward(x, ctx, vec, freqs); });
}

void bm_single(benchmark::State& state, int64_t side, DType t) {
    FluxSingleBlock b(kD, kHeads, kHeadDim, kMlp, 1e-6f);
    init_random(b, 1, 0.02f);
    set_precision(b, t);
    const int64_t Li = side * side;
    const Tensor x = randn({1, Li + kText, kD}, 2), vec = randn({1, kD}, 4);
    const Tensor freqs = freqs_for(side);
    b.forward(x, vec, freqs);
    for (auto _ : state) benchmark::DoNotOptimize(b.forward(x, vec, freqs));
    report_flops(state, single_flops(Li));
    report_profile(state, [&] { b.forward(x, vec, freqs); });
}

const bool registered = [] {
    for (const auto& [res, side] : {std::pair<const char*, int64_t>{"512", 32}, {"1024", 64}})
        for (const DType t : {DType::F32, DType::BF16}) {
            add(std::string("flux_double_block/") + res + "/" + dtype_tag(t),
                [side = side, t](benchmark::State& s) { bm_double(s, side, t); });
            add(std::string("flux_single_block/") + res + "/" + dtype_tag(t),
                [side = side, t](benchmark::State& s) { bm_single(s, side, t); });
        }
    return true;
}();

}  // namespace
}  // namespace nuance::bench
