// The oneDNN engine and stream used by every CPU primitive (one per process: oneDNN's own threads are OpenMP's).
#pragma once
#include <oneapi/dnnl/dnnl.hpp>

#include "core/dtype.h"

namespace nuance::cpu {

dnnl::engine& engine();
dnnl::stream& stream();  // primitives execute synchronously on this in-order stream

// Sets the number of threads used by oneDNN and nuance's own OpenMP kernels. n <= 0: one per core.
void set_num_threads(int n);
int num_threads();

// BF16 where the CPU has native bf16 dot products (AVX512_BF16 or AMX), else FP32.
Precision default_precision();
Precision resolve_precision(Precision p);  // Auto -> default_precision()

}  // namespace nuance::cpu
