// `nuance train` from the command line: a pixel DDPM on Fashion-MNIST end to end (progress lines, summary, run
// folder), and usage errors.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>

#include "../test_util.h"

namespace nuance {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using test::run_cli;

const char* kTinyArch =
    "'{\"unet\":{\"block_out_channels\":[8,16],\"attention_levels\":[false,true],\"heads\":2,\"norm_num_groups\":4},"
    "\"text_encoder\":{\"hidden\":16,\"layers\":1,\"heads\":2}}'";

TEST(TrainCli, PixelDdpmOnFashionMnist) {
    if (!fs::exists("/usr/share/datasets/fashion-mnist")) GTEST_SKIP() << "dataset-fashion-mnist not installed";
    const fs::path out = fs::path(NUANCE_SCRATCH_DIR) / ("nuance_train_cli_" + std::to_string(::getpid()));
    const auto r = run_cli("train --model ddpm --limit 16 --batch 4 --steps 6 --resolution 32 --checkpoint-every 3 "
                           "--warmup 0 --arch " + std::string(kTinyArch) + " -o " + out.string());
    ASSERT_EQ(r.code, 0) << r.out;
    EXPECT_THAT(r.out, HasSubstr("ddpm step 6/6 loss"));
    EXPECT_THAT(r.out, HasSubstr("trained 6 steps"));
    EXPECT_THAT(r.out, HasSubstr("step median_s="));
    EXPECT_TRUE(fs::exists(out / "checkpoints/step-0000006.safetensors"));
    EXPECT_TRUE(fs::exists(out / "checkpoints/step-0000003.safetensors"));
    EXPECT_TRUE(fs::exists(out / "model/unet/config.json"));
    fs::remove_all(out);
}

TEST(TrainCli, UsageErrors) {
    auto r = run_cli("train --model ldm");
    EXPECT_EQ(r.code, 2) << r.out;  // -o is required
    r = run_cli("train --model vae -o /tmp/x --precision fp16");
    EXPECT_EQ(r.code, 2) << r.out;
    EXPECT_THAT(r.out, HasSubstr("fp16"));
    r = run_cli("train --model vae -o /tmp/nuance_train_cli_bad --arch '{not json'");
    EXPECT_NE(r.code, 0);
    EXPECT_THAT(r.out, HasSubstr("--arch is not valid JSON"));
    r = run_cli("train --model vae -o /tmp/nuance_train_cli_bad --data /nonexistent/folder");
    EXPECT_NE(r.code, 0);
    EXPECT_THAT(r.out, HasSubstr("'/nonexistent/folder' does not exist"));
    fs::remove_all("/tmp/nuance_train_cli_bad");
}

}  // namespace
}  // namespace nuance
