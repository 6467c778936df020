// The shipped default model (models/nuance-emoji): `nuance generate` with no -m finds it, makes a 32x32 picture that
// is not flat, the files stay within the size budget and carry their licence and training record, and the C API
// loads it from a NULL path.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>

#include "../test_util.h"
#include "io/image.h"
#include "models/default_model.h"
#include "models/sd/stable_diffusion.h"
#include "nuance.h"

namespace nuance {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

const fs::path kModel = fs::path(NUANCE_TEST_DATA) / ".." / ".." / "models" / kDefaultModelName;

TEST(DefaultModel, ShipsWithinTheBudgetWithLicenceAndTrainingRecord) {
    ASSERT_TRUE(fs::exists(kModel / "model_index.json")) << kModel;
    uintmax_t bytes = 0;
    for (const auto& e : fs::recursive_directory_iterator(kModel))
        if (e.is_regular_file()) bytes += e.file_size();
    EXPECT_LE(bytes, 40u * 1024 * 1024);
    EXPECT_TRUE(fs::exists(kModel / "LICENSE.md"));
    EXPECT_TRUE(fs::exists(kModel / "TRAINING.md"));
    EXPECT_EQ(fs::weakly_canonical(default_model_path()), fs::weakly_canonical(kModel));
    const StableDiffusionModel m = load_stable_diffusion(kModel.string());
    EXPECT_EQ(m.native_size, 32);
    EXPECT_EQ(m.vae_scale(), 2);
}

TEST(DefaultModel, GenerateWithoutModelFlagMakesARealPicture) {
    const fs::path out = fs::path(NUANCE_SCRATCH_DIR) / ("nuance_default_" + std::to_string(::getpid()) + ".png");
    const test::CliRun r = test::run_cli("generate -q -p \"red apple, noto style\" --steps 12 -s 3 -o " + out.string());
    ASSERT_EQ(r.code, 0) << r.out;
    const Image img = read_image(out.string());
    fs::remove(out);
    EXPECT_EQ(img.width, 32);
    EXPECT_EQ(img.height, 32);
    // Not flat: the picture has structure (a random-weight model or a broken decode gives near-uniform output).
    double mean = 0, var = 0;
    for (uint8_t v : img.pixels) mean += v;
    mean /= (double)img.pixels.size();
    for (uint8_t v : img.pixels) var += (v - mean) * (v - mean);
    EXPECT_GT(std::sqrt(var / (double)img.pixels.size()), 20.0);
}

TEST(DefaultModel, CApiLoadsItFromANullPath) {
    nuance_model* m = nullptr;
    ASSERT_EQ(nuance_model_load(nullptr, nullptr, &m), NUANCE_OK) << nuance_last_error();
    nuance_model_free(m);
}

}  // namespace
}  // namespace nuance
