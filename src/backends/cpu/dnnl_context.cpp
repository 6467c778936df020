#include "backends/cpu/dnnl_context.h"

#include <omp.h>
#include <thread>

#include "core/threads.h"

namespace nuance::cpu {

dnnl::engine& engine() {
    static dnnl::engine e(dnnl::engine::kind::cpu, 0);
    return e;
}

dnnl::stream& stream() {
    static thread_local dnnl::stream s(engine());
    return s;
}

void set_num_threads(int n) {
    if (n <= 0) n = hardware_threads();  // the CPUs of this process's affinity mask
    omp_set_num_threads(n);
}

int num_threads() { return omp_get_max_threads(); }

Precision default_precision() {
    const dnnl::cpu_isa isa = dnnl::get_effective_cpu_isa();
    const bool bf16 = isa == dnnl::cpu_isa::avx512_core_bf16 || isa == dnnl::cpu_isa::avx512_core_amx;
    return bf16 ? Precision::BF16 : Precision::FP32;
}

Precision resolve_precision(Precision p) { return p == Precision::Auto ? default_precision() : p; }

}  // namespace nuance::cpu
