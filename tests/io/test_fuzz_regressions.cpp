// Regression tests for what fuzzing found (fuzz/README.md). Each case builds the reproducer saved under
// fuzz/crashes/<target>/ itself and runs it through the normal loader, expecting a nuance::Error with its message.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "../test_util.h"
#include "io/weights.h"
#include "models/unet/unet_config.h"

using namespace nuance;
using nuance::test::error_of;
using ::testing::HasSubstr;

namespace fs = std::filesystem;

namespace {

struct TempDir {
    fs::path path = fs::temp_directory_path() / ("nuance_fuzz_regress_" + std::to_string(::getpid()));
    TempDir() { fs::create_directories(path); }
    ~TempDir() {
        std::error_code ec;
        fs::remove_all(path, ec);
    }
    std::string write(const std::string& name, const std::string& text) const {
        const std::string p = (path / name).string();
        std::ofstream(p, std::ios::binary) << text;
        return p;
    }
};

UNetConfig sd15_levels() {
    UNetConfig c;
    c.block_out_channels = {320, 640, 1280, 1280};
    c.heads = {8, 8, 8, 8};
    return c;
}

}  // namespace

// fuzz/crashes/diffusers_json/index_names_itself.json: a shard index whose weight_map names the index file itself
// made load_weights recurse until the stack overflowed.
TEST(FuzzRegressions, ShardIndexNamingItselfIsAnError) {
    TempDir d;
    const std::string idx =
        d.write("model.safetensors.index.json", R"({"weight_map":{"a":"model.safetensors.index.json"}})");
    EXPECT_THAT(error_of([&] { load_weights(idx); }),
                HasSubstr("': weight_map names the index itself ('model.safetensors.index.json') as a shard"));
}

// The same through two indexes naming each other.
TEST(FuzzRegressions, ShardIndexCycleIsAnError) {
    TempDir d;
    const std::string a = d.write("a.index.json", R"({"weight_map":{"x":"b.index.json"}})");
    d.write("b.index.json", R"({"weight_map":{"x":"a.index.json"}})");
    EXPECT_THAT(error_of([&] { load_weights(a); }),
                HasSubstr("': shard 'b.index.json' is itself a shard index (nested or cyclic indexes are not "
                          "supported)"));
}

// fuzz/crashes/diffusers_json/unet_heads_string.json: a non-integer head count in unet/config.json escaped as
// nlohmann::json::type_error instead of a nuance::Error; 0 heads or groups would divide by zero later.
TEST(FuzzRegressions, UNetConfigHeadCountsMustBePositiveIntegers) {
    const auto apply = [](const char* text) {
        return error_of([&] { sd15_levels().apply_json(nlohmann::json::parse(text)); });
    };
    EXPECT_EQ(apply(R"({"attention_head_dim":[1,2,3,"x"]})"), "UNet config: head count \"x\" is not a positive integer");
    EXPECT_EQ(apply(R"({"num_attention_heads":0})"), "UNet config: head count 0 is not a positive integer");
    EXPECT_EQ(apply(R"({"attention_head_dim":[8,8,-1,8]})"), "UNet config: head count -1 is not a positive integer");
    EXPECT_EQ(apply(R"({"norm_num_groups":0})"), "UNet config: norm_num_groups = 0 is not positive");
    EXPECT_EQ(apply(R"({"attention_head_dim":[5,6,7,8],"norm_num_groups":16})"), "(no error)");
    UNetConfig c = sd15_levels();
    c.apply_json(nlohmann::json::parse(R"({"attention_head_dim":[5,6,7,8]})"));
    EXPECT_EQ(c.heads, (std::vector<int64_t>{5, 6, 7, 8}));
}
