#include "core/threads.h"

#include <algorithm>
#include <thread>

#include "core/error.h"

namespace nuance {

int hardware_threads() { return (int)std::max(1u, std::thread::hardware_concurrency()); }

int max_threads() { return std::max(256, 4 * hardware_threads()); }

void check_thread_count(int64_t n, const std::string& what) {
    NUANCE_CHECK(n >= 0 && n <= max_threads(), what, " must be in 1..", max_threads(), " (0: all cores), got ", n);
}

}  // namespace nuance
