// DiT-XL/2 speed (issue 13 item 5): one forward at 256² (32x32 latent, 256 tokens) and 512² (64x64, 1024 tokens),
// fp32 and bf16 products, random weights (init_random). A measurement, not a test: disabled by default, never
// asserts a time. Run:
//   ./build/nuance_tests --gtest_also_run_disabled_tests --gtest_filter='DISABLED_DiTSpeed.*'
// It prints one line per case: "DiT-XL/2 <size> N=<batch> <precision>: <ms> ms (min of 2, after 1 warm-up)".
#include <gtest/gtest.h>

#include <chrono>
#include <algorithm>
#include <cstdio>
#include <vector>

#include "core/op_stats.h"
#include "models/dit/dit.h"

using namespace nuance;

namespace {

DiTConfig xl2(int64_t sample_size) {
    DiTConfig c;  // Peebles & Xie 2022, table 1: XL, patch 2
    c.hidden = 1152;
    c.depth = 28;
    c.heads = 16;
    c.mlp_hidden = 4608;
    c.patch_size = 2;
    c.in_channels = 4;
    c.out_channels = 8;
    c.num_classes = 1000;
    c.sample_size = sample_size;
    return c;
}

double forward_ms(const DiTTransformer2DModel& m, int64_t n, int64_t s) {
    const Tensor x = Tensor::full({n, 4, s, s}, 0.5f);
    const Tensor t = Tensor::full({n}, 500.0f);
    std::vector<int64_t> y(n, 207);
    const Tensor labels = Tensor::from_ids(y, {n});
    double best = 1e30;
    for (int i = 0; i < 3; ++i) {
        const auto t0 = std::chrono::steady_clock::now();
        const Tensor out = m.forward(x, t, labels);
        const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
        EXPECT_EQ(out.shape(), (Shape{n, 8, s, s}));
        if (i > 0) best = std::min(best, ms);
    }
    return best;
}

void print_profile(const DiTTransformer2DModel& m, int64_t n, int64_t s) {
    OpProfile prof;
    {
        OpProfileScope scope(prof);
        m.forward(Tensor::full({n, 4, s, s}, 0.5f), Tensor::full({n}, 500.0f), Tensor::from_ids({207}, {1}).expand({n}));
    }
    std::vector<std::pair<std::string, OpProfileEntry>> v(prof.begin(), prof.end());
    std::sort(v.begin(), v.end(), [](const auto& a, const auto& b) { return a.second.seconds > b.second.seconds; });
    for (const auto& [name, e] : v)
        std::printf("  %-28s %6lld calls %9.1f ms %8.1f GFLOP/s\n", name.c_str(), (long long)e.calls, e.seconds * 1e3,
                    e.seconds > 0 ? e.flops / e.seconds / 1e9 : 0.0);
}

}  // namespace

TEST(DISABLED_DiTSpeed, Profile256) {
    DiTTransformer2DModel m(xl2(32));
    init_random(m, 1);
    for (const Precision p : {Precision::FP32, Precision::BF16}) {
        for_each_param(m, [&](const std::string&, Param& q) {
            if (q.matrix) q.compute = p;
        });
        forward_ms(m, 1, 32);
        std::printf("DiT-XL/2 256x256 N=1 %s profile:\n", precision_name(p));
        print_profile(m, 1, 32);
    }
}

TEST(DISABLED_DiTSpeed, XL2Forward) {
    for (const int64_t s : {32, 64}) {
        DiTTransformer2DModel m(xl2(s));
        const auto t0 = std::chrono::steady_clock::now();
        init_random(m, 1);
        int64_t params = 0;
        for_each_param(m, [&](const std::string&, Param& p) { params += p.value.numel(); });
        std::printf("DiT-XL/2 init_random: %.1f M params (diffusers layout, an embedder per block), %.1f s\n",
                    params / 1e6,
                    std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
        for (const Precision p : {Precision::FP32, Precision::BF16}) {
            for_each_param(m, [&](const std::string&, Param& q) {
                if (q.matrix) q.compute = p;
            });
            for (const int64_t n : {1, 2}) {
                std::printf("DiT-XL/2 %lldx%lld (%lld tokens) N=%lld %s: %.0f ms (min of 2, after 1 warm-up)\n",
                            (long long)s * 8, (long long)s * 8, (long long)(s / 2) * (s / 2), (long long)n,
                            precision_name(p), forward_ms(m, n, s));
                std::fflush(stdout);
            }
        }
    }
}
