// The machine's roof: the arithmetic rate of a loop of independent vector multiply-adds on every nuance thread, with
// no memory traffic. The README's speed figures quote the share of this roof an op or a whole step reaches.
//   peak/fp32_fma     vfmadd231ps zmm: 32 FLOP per instruction (16 lanes x multiply + add)
//   peak/bf16_dot     vdpbf16ps zmm: 64 FLOP per instruction (32 bf16 pairs into 16 f32 sums)
//   peak/int8_vnni    vpdpbusd zmm: 128 OP per instruction (64 u8 x s8 products into 16 i32 sums)
// 12 accumulators per thread cover the instructions' latency on both pipes; the counter reads "FLOP=460G/s".
#include <immintrin.h>
#include <omp.h>

#include <cstdint>

#include "backends/cpu/dnnl_context.h"
#include "bench_util.h"

namespace nuance::bench {
namespace {

constexpr long kIters = 2'000'000;  // per thread and benchmark iteration: ~7 ms on the Zen 5 VM

// The sum of every lane (stored, then added: GCC 12's _mm512_reduce_add_ps warns about its own header).
__attribute__((target("avx512f"))) float lanes_sum(const __m512 (&acc)[12]) {
    alignas(64) float v[16];
    float s = 0;
    for (const auto& a : acc) {
        _mm512_store_ps(v, a);
        for (float x : v) s += x;
    }
    return s;
}

__attribute__((target("avx512f"))) float fma_loop(long iters) {
    __m512 acc[12];
    for (auto& a : acc) a = _mm512_setzero_ps();
    const __m512 x = _mm512_set1_ps(1e-9f), y = _mm512_set1_ps(1.0f);
    for (long it = 0; it < iters; ++it) {
#pragma GCC unroll 12
        for (int i = 0; i < 12; ++i) acc[i] = _mm512_fmadd_ps(x, y, acc[i]);
    }
    return lanes_sum(acc);
}

__attribute__((target("avx512f,avx512bf16"))) float bf16_loop(long iters) {
    __m512 acc[12];
    for (auto& a : acc) a = _mm512_setzero_ps();
    const __m512bh x = (__m512bh)_mm512_set1_epi16(0x3f80), y = (__m512bh)_mm512_set1_epi16(0x3f80);
    for (long it = 0; it < iters; ++it) {
#pragma GCC unroll 12
        for (int i = 0; i < 12; ++i) acc[i] = _mm512_dpbf16_ps(acc[i], x, y);
    }
    return lanes_sum(acc);
}

__attribute__((target("avx512f,avx512vnni"))) float vnni_loop(long iters) {
    __m512i acc[12];
    for (auto& a : acc) a = _mm512_setzero_si512();
    const __m512i x = _mm512_set1_epi8(1), y = _mm512_set1_epi8(1);
    for (long it = 0; it < iters; ++it) {
#pragma GCC unroll 12
        for (int i = 0; i < 12; ++i) acc[i] = _mm512_dpbusd_epi32(acc[i], x, y);
    }
    alignas(64) int32_t v[16];
    long s = 0;
    for (auto& a : acc) {
        _mm512_store_si512(v, a);
        for (int32_t x : v) s += x;
    }
    return (float)s;
}

void bm_peak(benchmark::State& state, float (*loop)(long), double flop_per_instruction) {
    const int threads = cpu::num_threads();
    float sink = 0;
    for (auto _ : state) {
#pragma omp parallel num_threads(threads) reduction(+ : sink)
        sink += loop(kIters);
    }
    benchmark::DoNotOptimize(sink);
    report_flops(state, (double)threads * (double)kIters * 12.0 * flop_per_instruction);
}

const int kRegistered = [] {
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f")) add("peak/fp32_fma", [](benchmark::State& s) { bm_peak(s, fma_loop, 32); });
    if (__builtin_cpu_supports("avx512bf16"))
        add("peak/bf16_dot", [](benchmark::State& s) { bm_peak(s, bf16_loop, 64); });
    if (__builtin_cpu_supports("avx512vnni"))
        add("peak/int8_vnni", [](benchmark::State& s) { bm_peak(s, vnni_loop, 128); });
    return 0;
}();

}  // namespace
}  // namespace nuance::bench
