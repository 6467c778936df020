// Hostile JSON read by training checkpoints and trained-VAE folders (train/checkpoint.h): a config.json or a
// nuance_train metadata block that is huge, nested a million deep or a FIFO is refused with the file's name,
// never parsed recursively or waited on.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sys/stat.h>

#include "../test_util.h"
#include "data_test_util.h"
#include "io/safetensors.h"
#include "train/checkpoint.h"

namespace nuance {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

// A folder load_trained_vae accepts up to its config.json (the weights file is only looked up before the config).
std::string vae_folder(const test::TempDir& d) {
    const std::string dir = d / "vae";
    fs::create_directories(dir);
    std::ofstream(dir + "/diffusion_pytorch_model.safetensors") << "x";
    return dir;
}

TEST(CheckpointHostile, TrainedVaeConfigNestedAMillionDeepIsRefusedNamingTheFile) {
    test::TempDir d("ckpt_deep");
    const std::string dir = vae_folder(d);
    std::ofstream(dir + "/config.json") << std::string(1000000, '[') << std::string(1000000, ']');
    EXPECT_EQ(test::error_of([&] { load_trained_vae(d.path().string()); }),
              "'" + dir + "/config.json' nests JSON deeper than 128 levels");
}

TEST(CheckpointHostile, TrainedVaeConfigOverTheSizeLimitIsRefusedBeforeReading) {
    test::TempDir d("ckpt_big");
    const std::string dir = vae_folder(d);
    std::ofstream(dir + "/config.json") << "{}";
    fs::resize_file(dir + "/config.json", 1ull << 30);  // sparse: 1 GiB on paper, nothing on disk
    EXPECT_EQ(test::error_of([&] { load_trained_vae(d.path().string()); }),
              "JSON file '" + dir + "/config.json' is 1073741824 bytes (at most 67108864 are accepted)");
}

TEST(CheckpointHostile, TrainedVaeConfigThatIsAFifoIsRefusedWithoutBlocking) {
    test::TempDir d("ckpt_fifo");
    const std::string dir = vae_folder(d);
    ASSERT_EQ(::mkfifo((dir + "/config.json").c_str(), 0600), 0);
    EXPECT_EQ(test::error_of([&] { load_trained_vae(d.path().string()); }),
              "JSON file '" + dir + "/config.json' is not a regular file (it is a FIFO)");
}

TEST(CheckpointHostile, TrainedVaeConfigThatIsNotAnObjectIsRefused) {
    test::TempDir d("ckpt_array");
    const std::string dir = vae_folder(d);
    std::ofstream(dir + "/config.json") << "[1, 2]";
    EXPECT_EQ(test::error_of([&] { load_trained_vae(d.path().string()); }),
              "'" + dir + "/config.json' is not a JSON object (it is array)");
}

TEST(CheckpointHostile, DeeplyNestedTrainMetadataIsRefusedNamingTheCheckpoint) {
    test::TempDir d("ckpt_meta");
    const std::string path = d / "step-0000001.safetensors";
    save_safetensors(path, {{"model.w", Tensor::zeros({2})}},
                     {{"format", "nuance-train"}, {"nuance_train", std::string(100000, '[') + std::string(100000, ']')}});
    EXPECT_EQ(test::error_of([&] { load_checkpoint_file(path); }),
              "checkpoint '" + path + "': bad nuance_train metadata: 'nuance_train' nests JSON deeper than 128 levels");
}

}  // namespace
}  // namespace nuance
