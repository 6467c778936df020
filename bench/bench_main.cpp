// nuance_bench_ops: Google Benchmark's main plus one flag of our own, --threads=N (default 2, the dev machine's
// core count; 0 = one per core), applied through nuance::cpu::set_num_threads before any benchmark runs.
#include <benchmark/benchmark.h>

#include <charconv>
#include <cstdio>
#include <cstring>
#include <string>

#include "backends/cpu/dnnl_context.h"

namespace {

// Parses "N" as a thread count >= 0; false on anything else.
bool parse_threads(const char* s, int& out) {
    const char* end = s + std::strlen(s);
    auto [p, ec] = std::from_chars(s, end, out);
    return ec == std::errc() && p == end && *s != '\0' && out >= 0;
}

}  // namespace

int main(int argc, char** argv) {
    int threads = 2;
    // Take --threads=N / --threads N out of argv before benchmark::Initialize sees it (it rejects unknown flags).
    int kept = 1;
    for (int i = 1; i < argc; ++i) {
        const char* a = argv[i];
        const char* value = nullptr;
        if (std::strncmp(a, "--threads=", 10) == 0) {
            value = a + 10;
        } else if (std::strcmp(a, "--threads") == 0) {
            if (i + 1 >= argc) {
                std::fprintf(stderr, "nuance_bench_ops: --threads needs a value\n");
                return 2;
            }
            value = argv[++i];
        } else {
            argv[kept++] = argv[i];
            continue;
        }
        if (!parse_threads(value, threads)) {
            std::fprintf(stderr, "nuance_bench_ops: --threads expects a count >= 0 (0 = one per core), got '%s'\n",
                         value);
            return 2;
        }
    }
    argc = kept;
    argv[argc] = nullptr;

    nuance::cpu::set_num_threads(threads);
    benchmark::AddCustomContext("nuance_threads", std::to_string(nuance::cpu::num_threads()));
    benchmark::Initialize(&argc, argv);
    if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 2;
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    return 0;
}
