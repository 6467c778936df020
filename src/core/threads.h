// Bounds of user-given thread counts (CLI -t, C API n_threads, server workers). OpenMP and oneDNN spawn the threads
// they are told to: 100000 of them crash, thousands thrash for minutes, so every boundary refuses counts above
// max_threads() before they reach the runtime.
#pragma once
#include <cstdint>
#include <string>

namespace nuance {

// std::thread::hardware_concurrency(), at least 1.
int hardware_threads();

// The largest thread count accepted anywhere: max(256, 4 * hardware_threads()). Oversubscription up to 4x (or to
// 256 on small machines) stays legal for experiments; more is always a typo or an attack.
int max_threads();

// Throws ErrorCode::InvalidArgument unless n is 0 (all cores) or in 1..max_threads():
// "<what> must be in 1..256 (0: all cores), got 100000".
void check_thread_count(int64_t n, const std::string& what);

}  // namespace nuance
