// Helpers shared by the op micro-benchmarks (bench_*.cpp): inputs, counters and registration.
// Every benchmark measures wall time (UseRealTime): the ops run on oneDNN/OpenMP worker threads, so the main
// thread's CPU time would undercount.
#pragma once
#include <benchmark/benchmark.h>

#include <cstdint>
#include <string>
#include <utility>

#include "core/dtype.h"
#include "core/rng.h"
#include "core/tensor.h"

namespace nuance::bench {

// Standard-normal F32 input; a fixed seed per tensor keeps runs comparable.
inline Tensor randn(const Shape& shape, uint64_t seed) { return make_rng(RngKind::Cpu, seed)->randn(shape); }

// "FLOP" rate counter: flops_per_iter (multiply-add = 2) times iterations over wall time; printed with a k=1000
// suffix, so "FLOP=512G/s" reads 512 GFLOP/s. Call after the timing loop.
inline void report_flops(benchmark::State& state, double flops_per_iter) {
    state.counters["FLOP"] = benchmark::Counter(flops_per_iter, benchmark::Counter::kIsIterationInvariantRate);
}

// bytes_per_second: the minimum memory traffic of one call (read the input once, write the output once) times
// iterations over wall time. Call after the timing loop.
inline void report_bytes(benchmark::State& state, double bytes_per_iter) {
    state.SetBytesProcessed((int64_t)(bytes_per_iter * (double)state.iterations()));
}

// "f32" or "bf16": the suffix of a precision variant's name.
inline std::string dtype_tag(DType t) { return t == DType::BF16 ? "bf16" : t == DType::F16 ? "f16" : "f32"; }

// Registers fn(state) under `name` with the settings every op benchmark shares.
template <class Fn>
void add(const std::string& name, Fn&& fn) {
    benchmark::RegisterBenchmark(name.c_str(), std::forward<Fn>(fn))
        ->Unit(benchmark::kMillisecond)
        ->UseRealTime();
}

}  // namespace nuance::bench
