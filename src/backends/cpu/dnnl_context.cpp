#include "backends/cpu/dnnl_context.h"

#include <omp.h>
#include <thread>

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
    if (n <= 0) n = (int)std::max(1u, std::thread::hardware_concurrency());
    omp_set_num_threads(n);
}

int num_threads() { return omp_get_max_threads(); }

}  // namespace nuance::cpu
