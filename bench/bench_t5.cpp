// T5-XXL (SD3 / Flux text encoder) at full width: one encoder block (d_model 4096, d_ff 10240, 64 heads of 64,
// gated-GELU) on 256 tokens (SD3) and 512 (Flux), random weights, f32 and bf16 products; the whole 24-block encode
// is 24 of these plus an embedding gather and a norm. And the attention alone with T5's additive position bias
// against the same attention without a bias (the fused flash kernel runs only without one).
// Shape letters: L tokens, D d_model, F d_ff, H heads, K d_kv.
// FLOPs: 2·L·(4·D·H·K + 3·D·F) for the projections plus 4·H·L²·K for the two attention products.
#include <memory>
#include <string>

#include "bench_util.h"
#include "models/t5/t5_encoder.h"
#include "ops/attention.h"

namespace nuance::bench {
namespace {

T5Config xxl_block() {
    T5Config c;  // defaults are T5-XXL's widths
    c.layers = 1;
    c.vocab = 1024;  // the embedding is a row gather: its size does not matter here
    return c;
}

// One random full-width block, its matrices in `t` (F32 or BF16) with products in that precision. Built once per
// dtype (initialising 193 M parameters takes seconds).
const T5EncoderModel& model(DType t) {
    static std::unique_ptr<T5EncoderModel> m[2];
    auto& slot = m[t == DType::BF16 ? 1 : 0];
    if (!slot) {
        slot = std::make_unique<T5EncoderModel>(xxl_block());
        init_random(*slot, 7);
        for_each_param(*slot, [&](const std::string&, Param& p) {
            if (!p.matrix) return;
            p.value = p.value.to(t);
            p.compute = t == DType::BF16 ? Precision::BF16 : Precision::FP32;
        });
    }
    return *slot;
}

void bm_block(benchmark::State& state, int64_t L, DType t) {
    const T5EncoderModel& m = model(t);
    const T5Config& c = m.config();
    const Tensor x = randn({1, L, c.d_model}, 1);
    const Tensor bias = m.position_bias(L, Tensor());
    benchmark::DoNotOptimize(m.block[0](x, bias));  // first call packs the weights (once per weight): not timed
    for (auto _ : state) {
        Tensor y = m.block[0](x, bias);
        benchmark::DoNotOptimize(y);
    }
    const double proj = 2.0 * (double)L * (double)(4 * c.d_model * c.heads * c.d_kv + 3 * c.d_model * c.d_ff);
    report_flops(state, proj + 4.0 * (double)c.heads * (double)L * (double)L * (double)c.d_kv);
}

void bm_attention(benchmark::State& state, int64_t L, bool with_bias) {
    const int64_t H = 64, K = 64;
    const Tensor q = randn({1, H, L, K}, 1), k = randn({1, H, L, K}, 2), v = randn({1, H, L, K}, 3);
    const Tensor bias = with_bias ? randn({1, H, L, L}, 4) : Tensor();
    benchmark::DoNotOptimize(scaled_dot_product_attention(q, k, v, false, 1.0f, bias));
    for (auto _ : state) {
        Tensor o = scaled_dot_product_attention(q, k, v, false, 1.0f, bias);
        benchmark::DoNotOptimize(o);
    }
    report_flops(state, 4.0 * (double)H * (double)L * (double)L * (double)K);
}

const int kRegistered = [] {
    for (int64_t L : {256, 512})
        for (DType t : {DType::F32, DType::BF16})
            add("t5xxl/block_L" + std::to_string(L) + "/" + dtype_tag(t),
                [L, t](benchmark::State& s) { bm_block(s, L, t); });
    for (int64_t L : {256, 512})
        for (bool b : {true, false})
            add("t5xxl/attention_h64_L" + std::to_string(L) + (b ? "/bias" : "/nobias"),
                [L, b](benchmark::State& s) { bm_attention(s, L, b); });
    return 0;
}();

}  // namespace
}  // namespace nuance::bench
