// GroupNorm gradients on the CPU backend (backends/cpu/norm_backward.cpp) against a float64 reference, on shapes
// that run the 8-lane path, its 256-element flushes and the scalar tail; with and without the fused SiLU and the
// affine parameters; and the error paths.
#include <cmath>
#include <gtest/gtest.h>

#include "backends/backend.h"
#include "core/error.h"
#include "core/rng.h"

namespace nuance {
namespace {

Tensor randn(const Shape& s, uint64_t seed) { return make_rng(RngKind::Cpu, seed)->randn(s).contiguous(); }

struct Ref {
    std::vector<double> dx, dw, db;
};

Ref reference(const Tensor& x, const Tensor& w, const Tensor& b, const Tensor& g, int64_t G, double eps, bool silu) {
    const int64_t N = x.size(0), C = x.size(1), S = x.numel() / (N * C), cg = C / G, m = cg * S;
    const float *X = x.data<float>(), *Gd = g.data<float>();
    Ref r;
    r.dx.assign((size_t)x.numel(), 0);
    r.dw.assign((size_t)C, 0);
    r.db.assign((size_t)C, 0);
    for (int64_t n = 0; n < N; ++n)
        for (int64_t gi = 0; gi < G; ++gi) {
            const int64_t base = (n * C + gi * cg) * S;
            double mu = 0, var = 0;
            for (int64_t i = 0; i < m; ++i) mu += X[base + i];
            mu /= (double)m;
            for (int64_t i = 0; i < m; ++i) var += (X[base + i] - mu) * (X[base + i] - mu);
            const double rstd = 1.0 / std::sqrt(var / (double)m + eps);
            std::vector<double> dxh((size_t)m), xh((size_t)m);
            double s1 = 0, s2 = 0;
            for (int64_t c = 0; c < cg; ++c) {
                const int64_t ch = gi * cg + c;
                const double wc = w.defined() ? w.data<float>()[ch] : 1.0, bc = b.defined() ? b.data<float>()[ch] : 0.0;
                for (int64_t i = 0; i < S; ++i) {
                    const int64_t k = c * S + i;
                    xh[(size_t)k] = (X[base + k] - mu) * rstd;
                    double dz = Gd[base + k];
                    if (silu) {
                        const double z = xh[(size_t)k] * wc + bc, sg = 1.0 / (1.0 + std::exp(-z));
                        dz *= sg * (1.0 + z * (1.0 - sg));
                    }
                    r.dw[(size_t)ch] += dz * xh[(size_t)k];
                    r.db[(size_t)ch] += dz;
                    dxh[(size_t)k] = dz * wc;
                    s1 += dxh[(size_t)k];
                    s2 += dxh[(size_t)k] * xh[(size_t)k];
                }
            }
            for (int64_t k = 0; k < m; ++k)
                r.dx[(size_t)(base + k)] = rstd * (dxh[(size_t)k] - s1 / (double)m - xh[(size_t)k] * s2 / (double)m);
        }
    return r;
}

double max_rel(const Tensor& t, const std::vector<double>& ref) {
    double m = 0, scale = 1e-30;
    for (double r : ref) scale = std::max(scale, std::fabs(r));
    const float* p = t.data<float>();
    for (size_t i = 0; i < ref.size(); ++i) m = std::max(m, std::fabs(p[i] - ref[i]));
    return m / scale;
}

struct Case {
    Shape shape;
    int64_t groups;
    bool silu, affine;
};
void PrintTo(const Case& c, std::ostream* os) {  // gtest's description of the case, not its bytes
    *os << "x [";
    for (size_t i = 0; i < c.shape.size(); ++i) *os << (i ? ", " : "") << c.shape[i];
    *os << "], " << c.groups << " groups" << (c.silu ? ", +SiLU" : "") << (c.affine ? ", affine" : "");
}

class GroupNormBackward : public ::testing::TestWithParam<Case> {};

TEST_P(GroupNormBackward, MatchesFloat64) {
    const Case c = GetParam();
    const int64_t C = c.shape[1];
    const Tensor x = randn(c.shape, 11), g = randn(c.shape, 12);
    const Tensor w = c.affine ? randn({C}, 13) : Tensor(), b = c.affine ? randn({C}, 14) : Tensor();
    const Ref r = reference(x, w, b, g, c.groups, 1e-5, c.silu);
    const NormGrads got = backend_for(Device::cpu()).group_norm_backward(x, w, b, g, c.groups, 1e-5f, c.silu);
    ASSERT_EQ(got.dx.shape(), x.shape());
    ASSERT_EQ(got.dw.numel(), C);
    ASSERT_EQ(got.db.numel(), C);
    EXPECT_LT(max_rel(got.dx, r.dx), 2e-5);
    EXPECT_LT(max_rel(got.dw, r.dw), 2e-5);
    EXPECT_LT(max_rel(got.db, r.db), 2e-5);
    // Channels-last input and gradient (the training UNet's layout): the NHWC kernel, dx channels-last.
    if (c.shape.size() == 4) {
        const NormGrads cl = backend_for(Device::cpu())
                                 .group_norm_backward(x.channels_last(), w, b, g.channels_last(), c.groups, 1e-5f, c.silu);
        EXPECT_TRUE(cl.dx.is_channels_last());
        EXPECT_LT(max_rel(cl.dx.contiguous(), r.dx), 2e-5);
        EXPECT_LT(max_rel(cl.dw, r.dw), 2e-5);
        EXPECT_LT(max_rel(cl.db, r.db), 2e-5);
    }
}

INSTANTIATE_TEST_SUITE_P(Shapes, GroupNormBackward,
                         ::testing::Values(Case{{2, 8, 19, 21}, 4, true, true},    // 399 per channel: flushes + tail
                                           Case{{2, 8, 19, 21}, 4, false, true},
                                           Case{{3, 6, 5, 3}, 3, true, false},     // 15: one vector + tail
                                           Case{{1, 4, 2, 3}, 2, false, false},    // 6: tail only
                                           Case{{2, 32, 16, 16}, 32, true, true},  // one channel per group
                                           Case{{3, 20, 9, 11}, 5, true, true},    // NHWC: 99 pixels (2 blocks), 20
                                                                                    // channels (2 vectors + tail)
                                           Case{{2, 16, 1024}, 8, true, true}));   // 3-D input, long rows

TEST(GroupNormBackwardErrors, BadShapesAreRejected) {
    Backend& be = backend_for(Device::cpu());
    const Tensor x = randn({2, 6, 4, 4}, 1);
    EXPECT_THROW(be.group_norm_backward(x, Tensor(), Tensor(), randn({2, 6, 4, 5}, 2), 3, 1e-5f, false), Error);
    EXPECT_THROW(be.group_norm_backward(x, Tensor(), Tensor(), randn({2, 6, 4, 4}, 2), 4, 1e-5f, false), Error);
    EXPECT_THROW(be.group_norm_backward(x, randn({5}, 3), Tensor(), randn({2, 6, 4, 4}, 2), 3, 1e-5f, true), Error);
    EXPECT_THROW(be.group_norm_backward(randn({6}, 4), Tensor(), Tensor(), randn({6}, 4), 3, 1e-5f, true), Error);
    // a channels-last input with an NCHW gradient (or the reverse) is refused, not misread
    EXPECT_THROW(be.group_norm_backward(x.channels_last(), Tensor(), Tensor(), randn({2, 6, 4, 4}, 2), 3, 1e-5f, false),
                 Error);
}

}  // namespace
}  // namespace nuance
