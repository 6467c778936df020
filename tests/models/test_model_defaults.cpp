// Generation defaults that follow the model (models/model_defaults.h): the built-in 32x32 emoji model, family
// defaults of single files, and hostile "_nuance.defaults" blocks, each refused with a message naming the file and
// the field.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sys/stat.h>
#include <unistd.h>

#include "../test_util.h"
#include "models/default_model.h"
#include "models/model_defaults.h"
#include "models/sd/stable_diffusion.h"
#include "models/random_model.h"

namespace nuance {
namespace {

namespace fs = std::filesystem;
using nuance::test::error_of;
using ::testing::HasSubstr;

const fs::path kEmoji = fs::path(NUANCE_TEST_DATA) / ".." / ".." / "models" / kDefaultModelName;

class TempDir {
public:
    TempDir() : path_(fs::path(NUANCE_SCRATCH_DIR) / ("nuance_model_defaults_" + std::to_string(::getpid()) + "_" +
                                                    std::to_string(counter_++))) {
        fs::remove_all(path_);
        fs::create_directories(path_);
    }
    ~TempDir() { fs::remove_all(path_); }
    const fs::path& path() const { return path_; }

private:
    static inline int counter_ = 0;
    fs::path path_;
};

void write(const fs::path& p, const std::string& text) {
    fs::create_directories(p.parent_path());
    std::ofstream(p, std::ios::binary) << text;
}

// A diffusers-looking folder (JSON files only: the probe reads no weights).
fs::path folder_with_index(const TempDir& t, const std::string& index) {
    write(t.path() / "model_index.json", index);
    return t.path();
}

TEST(ModelDefaults, BuiltInEmojiModelIs32x32WithItsExamplePrompt) {
    const GenerationDefaults d = probe_generation_defaults(kEmoji.string());
    EXPECT_EQ(d.width, 32);
    EXPECT_EQ(d.height, 32);
    EXPECT_EQ(d.steps, 20);
    EXPECT_FLOAT_EQ(d.cfg_scale, 3.0f);  // (the best of 3, 4, 5 on every measure: README, "The built-in model, measured")
    EXPECT_EQ(d.sampler, "euler_a");
    EXPECT_EQ(d.scheduler, "");
    EXPECT_EQ(d.prompt, "grinning face, noto style");
    // The loaded model says the same.
    const GenerationDefaults l = generation_defaults(load_stable_diffusion(kEmoji.string()));
    EXPECT_EQ(l.width, 32);
    EXPECT_FLOAT_EQ(l.cfg_scale, 3.0f);
    EXPECT_EQ(l.prompt, d.prompt);
}

TEST(ModelDefaults, FolderSizeFromUnetSampleSizeAndVaeLevels) {
    TempDir t;
    folder_with_index(t, R"({"_class_name": "StableDiffusionPipeline"})");
    EXPECT_EQ(probe_generation_defaults(t.path().string()).width, 512);  // no configs: the SD1 size
    write(t.path() / "unet" / "config.json", R"({"sample_size": 8})");
    write(t.path() / "vae" / "config.json", R"({"block_out_channels": [32, 64, 64]})");
    EXPECT_EQ(probe_generation_defaults(t.path().string()).width, 32);  // 8 latents x 2^2
    write(t.path() / "unet" / "config.json", R"({"sample_size": 4000000000})");  // absurd: ignored
    EXPECT_EQ(probe_generation_defaults(t.path().string()).width, 512);
    write(t.path() / "scheduler" / "scheduler_config.json", R"({"prediction_type": "v_prediction"})");
    EXPECT_EQ(probe_generation_defaults(t.path().string()).width, 768);
    TempDir xl;
    folder_with_index(xl, R"({"_class_name": "StableDiffusionXLPipeline"})");
    EXPECT_EQ(probe_generation_defaults(xl.path().string()).width, 1024);
}

TEST(ModelDefaults, SingleFileFamilyDefaults) {
    TempDir t;
    RandomModelOptions o;
    o.tiny = true;
    const fs::path sd15 = t.path() / "sd15.safetensors";
    write_random_checkpoint(sd15.string(), o);
    const GenerationDefaults d = probe_generation_defaults(sd15.string());
    EXPECT_EQ(d.width, 512);
    EXPECT_EQ(d.steps, 20);
    EXPECT_FLOAT_EQ(d.cfg_scale, 7.0f);
    EXPECT_FALSE(d.prompt.empty());
    o.family = "sdxl";
    const fs::path xl = t.path() / "xl.safetensors";
    write_random_checkpoint(xl.string(), o);
    EXPECT_EQ(probe_generation_defaults(xl.string()).width, 1024);
    EXPECT_EQ(error_of([&] { probe_generation_defaults((t.path() / "none.safetensors").string()); }),
              "model '" + (t.path() / "none.safetensors").string() + "' does not exist");
}

TEST(ModelDefaults, HostileDefaultsBlocksNameTheFileAndField) {
    struct Case {
        std::string defaults, message;
    };
    const std::vector<Case> cases = {
        {R"("big")", "_nuance.defaults must be an object, got string"},
        {R"({"width": "abc"})", "_nuance.defaults.width must be an integer, got \"abc\""},
        {R"({"width": 12.5})", "_nuance.defaults.width must be an integer, got 12.5"},
        {R"({"width": 18446744073709551615})", "_nuance.defaults.width must be in 8..16384, got 18446744073709551615"},
        {R"({"height": -8})", "_nuance.defaults.height must be in 8..16384, got -8"},
        {R"({"width": 12})", "_nuance.defaults size 12x512 must be multiples of 8"},
        {R"({"steps": 0})", "_nuance.defaults.steps must be in 1..1000, got 0"},
        {R"({"cfg_scale": 1e300})", "_nuance.defaults.cfg_scale must be in 0..100, got 1e+300"},
        {R"({"cfg_scale": "7"})", "_nuance.defaults.cfg_scale must be a number, got \"7\""},
        {R"({"sampler": "warp_drive"})", "_nuance.defaults.sampler: "},
        {R"({"sampler": 3})", "_nuance.defaults.sampler must be a string, got number"},
        {R"({"scheduler": "custom"})", "_nuance.defaults.scheduler: the custom schedule needs sigmas"},
        {R"({"prompt": ")" + std::string(5000, 'a') + R"("})", "_nuance.defaults.prompt is 5000 bytes long (limit 4096)"},
    };
    for (const Case& c : cases) {
        TempDir t;
        folder_with_index(t, R"({"_nuance": {"defaults": )" + c.defaults + "}}");
        const std::string file = (t.path() / "model_index.json").string();
        const std::string msg = error_of([&] { probe_generation_defaults(t.path().string()); });
        EXPECT_EQ(msg.rfind("'" + file + "': " + c.message, 0), 0u) << c.defaults.substr(0, 60) << " -> " << msg;
    }
}

TEST(ModelDefaults, HostileJsonFilesAreRefusedWithTheirName) {
    TempDir t;
    folder_with_index(t, "[1, 2, 3]");
    const std::string mi = (t.path() / "model_index.json").string();
    EXPECT_EQ(error_of([&] { probe_generation_defaults(t.path().string()); }),
              "'" + mi + "' must hold a JSON object, got array");
    write(t.path() / "model_index.json", "{\"_class_name\": ");
    EXPECT_THAT(error_of([&] { probe_generation_defaults(t.path().string()); }),
                HasSubstr("'" + mi + "' is not valid JSON ("));
    write(t.path() / "model_index.json", "{\"a\": \"" + std::string(2 << 20, 'x') + "\"}");
    EXPECT_EQ(error_of([&] { probe_generation_defaults(t.path().string()); }),
              "model JSON file '" + mi + "' is " + std::to_string((2 << 20) + 9) + " bytes (at most 1048576 are accepted)");
    // A million-deep nest within the size limit: refused by depth, not by a stack overflow.
    write(t.path() / "model_index.json", std::string(500000, '[') + std::string(500000, ']'));
    EXPECT_EQ(error_of([&] { probe_generation_defaults(t.path().string()); }),
              "'" + mi + "' nests JSON deeper than 128 levels");
    // A FIFO where the scheduler config should be: refused at once, never waiting for a writer.
    folder_with_index(t, "{}");
    std::filesystem::create_directories(t.path() / "scheduler");
    const std::string fifo = (t.path() / "scheduler" / "scheduler_config.json").string();
    ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
    EXPECT_EQ(error_of([&] { probe_generation_defaults(t.path().string()); }),
              "model JSON file '" + fifo + "' is not a regular file (it is a FIFO)");
    // Wrong field types name the file and the field, never nlohmann's type_error.
    write(t.path() / "model_index.json", R"({"_class_name": 3})");
    EXPECT_EQ(error_of([&] { probe_generation_defaults(t.path().string()); }),
              "'" + mi + "': field '_class_name' must be a string, got 3");
    fs::remove(t.path() / "scheduler" / "scheduler_config.json");
    write(t.path() / "model_index.json", "{}");
    write(t.path() / "scheduler" / "scheduler_config.json", R"({"prediction_type": ["v_prediction"]})");
    EXPECT_EQ(error_of([&] { probe_generation_defaults(t.path().string()); }),
              "'" + (t.path() / "scheduler" / "scheduler_config.json").string() +
                  "': field 'prediction_type' must be a string, got [\"v_prediction\"]");
    TempDir empty;
    EXPECT_EQ(error_of([&] { probe_generation_defaults(empty.path().string()); }),
              "'" + empty.path().string() + "' is a folder without model_index.json (not a diffusers model)");
}

}  // namespace
}  // namespace nuance
