// Classifier-free guidance and guidance rescale (Lin et al. 2023; diffusers rescale_noise_cfg), by hand.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "core/error.h"
#include "ops/elementwise.h"
#include "samplers/guidance.h"

using namespace nuance;
using ::testing::HasSubstr;

TEST(Guidance, CfgCombine) {
    const Tensor u = Tensor::from_vector({1, 2}, {1, 2}), c = Tensor::from_vector({3, 0}, {1, 2});
    EXPECT_EQ(cfg_combine(u, c, 7.5).to_vector(), (std::vector<float>{16.0f, -13.0f}));  // u + 7.5 (c - u)
    EXPECT_EQ(cfg_combine(u, c, 1.0).to_vector(), c.to_vector());
    EXPECT_THROW(cfg_combine(u, Tensor::zeros({2, 2}), 2.0), Error);
}

TEST(Guidance, RescaleByHand) {
    // item 0: cond [1 2 3 4] (unbiased std 1.2910), guided [2 4 6 8] (std 2.5820): ratio 1/2, so the rescaled
    //         guidance is [1 2 3 4] and phi = 0.7 gives 0.7 [1 2 3 4] + 0.3 [2 4 6 8] = [1.3 2.6 3.9 5.2]
    // item 1: guided is constant (std 0): left unchanged
    const Tensor cond = Tensor::from_vector({1, 2, 3, 4, 0, 0, 1, 1}, {2, 2, 2});
    const Tensor guided = Tensor::from_vector({2, 4, 6, 8, 1, 1, 1, 1}, {2, 2, 2});
    const std::vector<float> out = rescale_noise_cfg(guided, cond, 0.7).to_vector();
    const std::vector<float> want = {1.3f, 2.6f, 3.9f, 5.2f, 1, 1, 1, 1};
    for (size_t i = 0; i < want.size(); ++i) EXPECT_NEAR(out[i], want[i], 1e-6) << i;
    // phi = 1: the full rescale; phi = 0: off (returns the input untouched)
    const std::vector<float> full = rescale_noise_cfg(guided, cond, 1.0).to_vector();
    EXPECT_NEAR(full[3], 4.0f, 1e-6);
    EXPECT_EQ(rescale_noise_cfg(guided, cond, 0.0).to_vector(), guided.to_vector());
    // the std is per batch item: scaling item 1 of cond does not touch item 0
    const Tensor cond2 = Tensor::from_vector({1, 2, 3, 4, 0, 0, 5, 5}, {2, 2, 2});
    EXPECT_NEAR(rescale_noise_cfg(guided, cond2, 0.7).to_vector()[0], 1.3f, 1e-6);
}

TEST(Guidance, RescaleErrors) {
    const Tensor a = Tensor::zeros({1, 4});
    try {
        rescale_noise_cfg(a, a, 1.5);
        FAIL();
    } catch (const Error& e) {
        EXPECT_THAT(e.what(), HasSubstr("guidance rescale must be in [0, 1], got 1.5"));
    }
    EXPECT_THROW(rescale_noise_cfg(a, a, -0.1), Error);
    try {
        rescale_noise_cfg(a, Tensor::zeros({1, 5}), 0.7);
        FAIL();
    } catch (const Error& e) {
        EXPECT_THAT(e.what(), HasSubstr("guided [1, 4] and cond [1, 5] shapes differ"));
    }
    EXPECT_THROW(rescale_noise_cfg(Tensor(), a, 0.7), Error);
}
