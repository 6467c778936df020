#include "core/threads.h"

#include <sched.h>

#include <algorithm>
#include <thread>

#include "core/error.h"

namespace nuance {

// The CPUs this process may run on (its affinity mask: a container's cpuset, or the core(s) mpirun bound a rank to),
// else every online CPU.
int hardware_threads() {
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof set, &set) == 0) {
        const int n = CPU_COUNT(&set);
        if (n > 0) return n;
    }
    return (int)std::max(1u, std::thread::hardware_concurrency());
}

int max_threads() { return std::max(256, 4 * hardware_threads()); }

void check_thread_count(int64_t n, const std::string& what) {
    NUANCE_CHECK(n >= 0 && n <= max_threads(), what, " must be in 1..", max_threads(), " (0: all cores), got ", n);
}

}  // namespace nuance
