#include <gtest/gtest.h>

#include "io/safetensors.h"
#include "models/unet/unet2d.h"
#include "eval/golden/unet_golden.h"

using namespace nuance;

namespace {
const std::string kGolden = std::string(NUANCE_TEST_DATA) + "/golden/";

void expect_all_pass(const std::vector<CompareLine>& lines, size_t expected) {
    ASSERT_EQ(lines.size(), expected);
    for (const auto& l : lines) {
        EXPECT_TRUE(l.pass) << l.name << " max_abs=" << l.max_abs << " atol=" << l.atol << " " << l.reason;
        EXPECT_FALSE(l.skip);
    }
}
}  // namespace

TEST(UNet, GoldenSD15) { expect_all_pass(check_golden_unet(kGolden + "unet_sd15"), 2); }
TEST(UNet, GoldenSD2) { expect_all_pass(check_golden_unet(kGolden + "unet_sd2"), 2); }
TEST(UNet, GoldenSDXL) { expect_all_pass(check_golden_unet(kGolden + "unet_sdxl"), 2); }

TEST(UNet, DetectsConfigFromShapes) {
    const WeightFile wf = load_safetensors(kGolden + "unet_sdxl/unet.safetensors");
    const UNetConfig c = UNetConfig::detect(wf.tensors);
    EXPECT_EQ(c.block_out_channels, (std::vector<int64_t>{8, 16, 32}));
    EXPECT_EQ(c.down_depth, (std::vector<int64_t>{0, 2, 2}));
    EXPECT_EQ(c.up_depth, (std::vector<int64_t>{2, 2, 0}));
    EXPECT_EQ(c.mid_depth, 2);
    EXPECT_TRUE(c.use_linear_projection);
    EXPECT_TRUE(c.text_time);
    EXPECT_EQ(c.add_in_dim, 80);
    EXPECT_EQ(c.cross_attention_dim, 80);
}

TEST(UNet, MissingAndMisshapenTensorsAreNamed) {
    const WeightFile wf = load_safetensors(kGolden + "unet_sd15/unet.safetensors");
    UNetConfig cfg = UNetConfig::detect(wf.tensors);
    cfg.norm_num_groups = 4;
    cfg.heads.assign(4, 2);
    auto tensors = wf.tensors;
    tensors.erase("down_blocks.1.resnets.0.conv1.weight");
    UNet2DConditionModel unet(cfg);
    try {
        load_module(unet, tensors, {.source = "x.safetensors"});
        FAIL() << "expected an error";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("missing tensor 'down_blocks.1.resnets.0.conv1.weight'"), std::string::npos)
            << e.what();
    }
    tensors = wf.tensors;
    tensors["conv_out.bias"] = Tensor::zeros({5});
    try {
        load_module(unet, tensors, {.source = "x.safetensors"});
        FAIL() << "expected an error";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("'conv_out.bias': expected [4], got [5]"), std::string::npos) << e.what();
    }
    EXPECT_THROW(UNetConfig::detect({}), Error);
}
