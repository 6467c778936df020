// Full-size SD3.5-Medium forward at 1024x1024 (128x128 latent: 4096 image tokens + 333 context tokens), random
// weights. A measurement, not a gate (design.md §5): DISABLED_ so ctest never runs it. Run by hand:
//   ./build/nuance_tests --gtest_also_run_disabled_tests --gtest_filter='MMDiTSpeed.*'
// The random model is written once as a BF16 safetensors file (5 GB; NUANCE_MMDIT_BENCH_FILE, default
// /tmp/nuance-sd35m-random-bf16.safetensors) and loaded mmap'd the way a downloaded file is, so the weights are
// resident once (packed) and not twice. NUANCE_MMDIT_BENCH_PRECISION=fp32|bf16|both (default both).
// NUANCE_MMDIT_BENCH_HALVES=1 (for a machine without room for the 10 GB of packed fp32 weights): blocks 0-11 and
// 12-23 run as two skip-layer forwards with the packed weights dropped in between, plus one with every block
// skipped (embeddings and final layer); the full forward is A + B - C. Weights are packed on first use, so each
// half only ever holds its own blocks.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <sys/resource.h>

#include "backends/cpu/dnnl_cache.h"
#include "core/op_stats.h"
#include "core/rng.h"
#include "io/safetensors.h"
#include "io/weights.h"
#include "models/mmdit/mmdit_load.h"
#include "models/mmdit/mmdit_presets.h"

using namespace nuance;

namespace {

// User + system CPU seconds of this process: on a shared machine wall time says little, CPU time / threads says
// what the wall time would be with the cores to ourselves.
double cpu_seconds() {
    rusage u{};
    getrusage(RUSAGE_SELF, &u);
    return (double)u.ru_utime.tv_sec + 1e-6 * (double)u.ru_utime.tv_usec + (double)u.ru_stime.tv_sec +
           1e-6 * (double)u.ru_stime.tv_usec;
}

double peak_rss_gib() {
    rusage u{};
    getrusage(RUSAGE_SELF, &u);
    return (double)u.ru_maxrss / (1024.0 * 1024.0);
}

}  // namespace

TEST(MMDiTSpeed, DISABLED_FullSizeSD35MediumForward1024) {
    const char* env_file = std::getenv("NUANCE_MMDIT_BENCH_FILE");
    const std::string file = env_file ? env_file : "/tmp/nuance-sd35m-random-bf16.safetensors";
    if (!file_exists(file)) {
        const int64_t n = write_random_mmdit(file, mmdit_preset("sd3.5-medium"), DType::BF16, 1, false);
        std::printf("wrote %s: %.3f B parameters (bf16)\n", file.c_str(), (double)n / 1e9);
    }
    const char* env_p = std::getenv("NUANCE_MMDIT_BENCH_PRECISION");
    const std::string which = env_p ? env_p : "both";
    auto rng = make_rng(RngKind::Cpu, 2);
    const Tensor x = rng->randn({1, 16, 128, 128});
    const Tensor ctx = rng->randn({1, 333, 4096});
    const Tensor pooled = rng->randn({1, 2048});
    const Tensor t = Tensor::full({1}, 500.0f);
    const bool halves = std::getenv("NUANCE_MMDIT_BENCH_HALVES") && std::string(std::getenv("NUANCE_MMDIT_BENCH_HALVES")) == "1";
    std::vector<int64_t> keep_0_11, keep_12_23, all;  // skip lists
    for (int64_t i = 0; i < 24; ++i) (i < 12 ? keep_12_23 : keep_0_11).push_back(i), all.push_back(i);
    for (const Precision p : {Precision::FP32, Precision::BF16}) {
        if (which != "both" && which != precision_name(p)) continue;
        const auto m = load_sd3_transformer(file, p);
        auto timed = [&](const std::vector<int64_t>& skip, const char* what) {
            double steady = 0;
            for (int run = 0; run < 2; ++run) {
                OpProfile prof;
                const auto t0 = std::chrono::steady_clock::now();
                const double c0 = cpu_seconds();
                Tensor v;
                {
                    OpProfileScope scope(prof);
                    v = m->forward(x, t, ctx, pooled, skip);
                }
                const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
                const double cpu = cpu_seconds() - c0;
                EXPECT_EQ(v.shape(), x.shape());
                std::printf("SD3.5-Medium 1024x1024 %s %s run %d (%s): %.2f s wall, %.2f s CPU, peak RSS %.2f "
                            "GiB\n", what, precision_name(p), run, run == 0 ? "includes packing the weights" : "steady",
                            s, cpu, peak_rss_gib());
                std::fflush(stdout);
                steady = s;
                if (run == 1)
                    for (const auto& [op, e] : prof)
                        if (e.seconds > 0.01 * s)
                            std::printf("  op %-12s calls %5lld  %7.2f s  %5.1f%%  %7.1f GFLOP/s\n", op.c_str(),
                                        (long long)e.calls, e.seconds, 100.0 * e.seconds / s,
                                        e.flops > 0 ? e.flops / e.seconds / 1e9 : 0.0);
            }
            return steady;
        };
        if (!halves) {
            timed({}, "forward");
        } else {
            const double a = timed(keep_0_11, "blocks 0-11");
            cpu::clear_packed_weights();
            const double b = timed(keep_12_23, "blocks 12-23");
            cpu::clear_packed_weights();
            const double c = timed(all, "no blocks");
            std::printf("SD3.5-Medium 1024x1024 forward %s (A + B - C): %.2f s\n", precision_name(p), a + b - c);
        }
        cpu::clear_packed_weights();
    }
}
