// Hostile weight files and model folders (issue 12): every one is built here, byte by byte, and must fail with an
// Error that names the file and the problem: never a crash, a hang or a silent fallback.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sys/stat.h>
#include <unistd.h>

#include "../test_util.h"
#include "core/checked.h"
#include "io/json_file.h"
#include "io/safetensors.h"
#include "io/weights.h"
#include "models/sd/stable_diffusion.h"

using namespace nuance;
using ::testing::AllOf;
using ::testing::HasSubstr;
using nuance::test::error_of;
using nuance::test::run_cli;
namespace fs = std::filesystem;

namespace {

const std::string kGolden = std::string(NUANCE_TEST_DATA) + "/golden/";

class Hostile : public ::testing::Test {
protected:
    void SetUp() override {
        dir_ = fs::path(NUANCE_SCRATCH_DIR) /
               ("nuance_hostile_" + std::to_string(::getpid()) + "_" +
                ::testing::UnitTest::GetInstance()->current_test_info()->name());
        fs::remove_all(dir_);
        fs::create_directories(dir_);
    }
    void TearDown() override { fs::remove_all(dir_); }
    std::string path(const std::string& name) const { return (dir_ / name).string(); }

    // A safetensors file from a raw header string and raw data bytes.
    std::string st(const std::string& name, const std::string& header, const std::string& data = "") const {
        std::string b(8, '\0');
        for (int k = 0; k < 8; ++k) b[k] = (char)((uint64_t)header.size() >> (8 * k));
        b += header + data;
        write(name, b);
        return path(name);
    }
    void write(const std::string& name, const std::string& bytes) const {
        fs::create_directories(fs::path(path(name)).parent_path());
        std::ofstream(path(name), std::ios::binary).write(bytes.data(), (std::streamsize)bytes.size());
    }
    fs::path dir_;
};

std::string load_error(const std::string& p) { return error_of([&] { load_weights(p); }); }

}  // namespace

// ---------------------------------------------------------------- 1. size arithmetic

TEST_F(Hostile, SafetensorsShapeWhoseByteSizeWrapsIsRefused) {
    // F32[2^31, 2^31] = 2^62 elements = 2^64 bytes, which wraps to 0: it used to load with 0 bytes of data
    // (`info` reported 4.6e18 parameters).
    const std::string p = st("wrap.safetensors",
                             R"({"w":{"dtype":"F32","shape":[2147483648,2147483648],"data_offsets":[0,0]}})");
    EXPECT_EQ(load_error(p), "safetensors file '" + p +
                                 "': tensor 'w': shape [2147483648, 2147483648] of F32 overflows (more than 2^63 bytes)");
    const test::CliRun r = run_cli("info " + p);
    EXPECT_EQ(r.code, 1) << r.out;
    EXPECT_THAT(r.out, AllOf(HasSubstr(p), HasSubstr("overflows")));
    EXPECT_THAT(r.out, ::testing::Not(HasSubstr("parameters:")));

    // Other products that wrap: element count past 2^64; a zero dim hiding an overflowing stride; a dim past int64.
    EXPECT_THAT(load_error(st("a.safetensors", R"({"w":{"dtype":"U8","shape":[4294967296,4294967297],"data_offsets":[0,0]}})")),
                HasSubstr("overflows"));
    EXPECT_THAT(load_error(st("b.safetensors",
                              R"({"w":{"dtype":"F16","shape":[0,4294967296,4294967296],"data_offsets":[0,0]}})")),
                HasSubstr("overflows"));
    EXPECT_THAT(load_error(st("c.safetensors", R"({"w":{"dtype":"F64","shape":[18446744073709551615],"data_offsets":[0,0]}})")),
                HasSubstr("dimension 18446744073709551615 is implausible"));
    // data_offsets near 2^64: compared without overflow
    EXPECT_THAT(load_error(st("d.safetensors",
                              R"({"w":{"dtype":"U8","shape":[4],"data_offsets":[18446744073709551612,18446744073709551615]}})",
                              "abcd")),
                AllOf(HasSubstr("'w'"), HasSubstr("outside the data section of 4 bytes")));
    // more than 8 dimensions
    EXPECT_THAT(load_error(st("e.safetensors", R"({"w":{"dtype":"U8","shape":[1,1,1,1,1,1,1,1,1],"data_offsets":[0,1]}})", "x")),
                HasSubstr("at most 8 dimensions"));
    // header length near 2^64, and one past the file
    std::string huge(8, '\xff');
    write("f.safetensors", huge + "{}");
    EXPECT_THAT(load_error(path("f.safetensors")), AllOf(HasSubstr("f.safetensors"), HasSubstr("is implausible")));
    std::string past("\x40\0\0\0\0\0\0\0{}", 10);
    write("g.safetensors", past);
    EXPECT_THAT(load_error(path("g.safetensors")), AllOf(HasSubstr("g.safetensors"), HasSubstr("is truncated")));
}

TEST(TensorSizes, CheckedHelpersRefuseWrappingProducts) {
    int64_t n = 0;
    EXPECT_FALSE(shape_nbytes_checked({int64_t(1) << 31, int64_t(1) << 31}, DType::F32, &n));
    EXPECT_FALSE(shape_numel_checked({0, int64_t(1) << 32, int64_t(1) << 32}, &n));  // strides would overflow
    EXPECT_FALSE(shape_numel_checked({-1, 2}, &n));
    ASSERT_TRUE(shape_nbytes_checked({0, int64_t(1) << 31, int64_t(1) << 31}, DType::F32, &n));
    EXPECT_EQ(n, 0);
    ASSERT_TRUE(shape_nbytes_checked({3, 5}, DType::F16, &n));
    EXPECT_EQ(n, 30);
    EXPECT_THAT(error_of([] { Tensor::empty({(int64_t(1) << 62) + 1}, DType::F32); }),
                HasSubstr("shape [4611686018427387905] of F32 needs more than 2^63 bytes"));
    EXPECT_THAT(error_of([] { Tensor::from_storage(Storage::allocate(4), 0, {int64_t(1) << 31, int64_t(1) << 31}, DType::F32); }),
                HasSubstr("needs more than 2^63 bytes"));
    EXPECT_THAT(error_of([] { Tensor::from_storage(Storage::allocate(16), 8, {3}, DType::F32); }),
                HasSubstr("exceed a storage of 16 bytes"));
}

// ---------------------------------------------------------------- 2. index recursion

TEST_F(Hostile, ShardIndexNamingItselfIsRefusedNotFollowed) {
    const nlohmann::json self = {{"weight_map", {{"w", "model.safetensors.index.json"}}}};
    write("model.safetensors.index.json", self.dump());
    const std::string p = path("model.safetensors.index.json");
    EXPECT_EQ(load_error(p), "'" + p + "': weight_map names the index itself ('model.safetensors.index.json') as a shard");
    const test::CliRun r = run_cli("info " + p);
    EXPECT_EQ(r.code, 1) << r.out;
    EXPECT_THAT(r.out, AllOf(HasSubstr(p), HasSubstr("names the index itself")));
}

TEST_F(Hostile, ShardIndexCyclesAndChainsAreRefused) {
    // A -> B -> A
    write("a.index.json", nlohmann::json{{"weight_map", {{"w", "b.index.json"}}}}.dump());
    write("b.index.json", nlohmann::json{{"weight_map", {{"w", "a.index.json"}}}}.dump());
    EXPECT_EQ(load_error(path("a.index.json")),
              "'" + path("a.index.json") + "': shard 'b.index.json' is itself a shard index (nested or cyclic indexes "
                                           "are not supported)");
    // an index naming another (acyclic) index, through a symlink to itself, or an index under a shard's name
    write("c.index.json", nlohmann::json{{"weight_map", {{"w", "d.safetensors"}}}}.dump());
    write("d.safetensors", nlohmann::json{{"weight_map", {{"w", "x.safetensors"}}}}.dump());
    EXPECT_THAT(load_error(path("c.index.json")), HasSubstr("shard 'd.safetensors' is itself a shard index"));
    fs::create_symlink(path("e.index.json"), path("link.safetensors"));
    write("e.index.json", nlohmann::json{{"weight_map", {{"w", "link.safetensors"}}}}.dump());
    EXPECT_THAT(load_error(path("e.index.json")), HasSubstr("names the index itself ('link.safetensors')"));
    // weight_map that is not an object, shard names that escape the folder, missing shards
    write("f.index.json", R"({"weight_map": ["x"]})");
    EXPECT_THAT(load_error(path("f.index.json")), HasSubstr("no weight_map"));
    write("g.index.json", R"({"weight_map": {"w": "../g.safetensors"}})");
    EXPECT_THAT(load_error(path("g.index.json")), HasSubstr("shard name '../g.safetensors' must be a plain file name"));
    write("h.index.json", R"({"weight_map": {"w": "nope.safetensors"}})");
    EXPECT_THAT(load_error(path("h.index.json")), AllOf(HasSubstr("h.index.json"), HasSubstr("nope.safetensors' does not exist")));
    // deeply nested JSON in an index is refused before anything copies it recursively
    write("i.index.json", "{\"weight_map\": " + std::string(100000, '[') + std::string(100000, ']') + "}");
    EXPECT_THAT(load_error(path("i.index.json")), AllOf(HasSubstr("i.index.json"), HasSubstr("nests JSON deeper than")));
}

// ---------------------------------------------------------------- 3. data layout, configs, odd paths

TEST_F(Hostile, SafetensorsOverlapsHolesAndDuplicatesAreRefused) {
    const std::string data = "abcdefgh";
    // in header order b, a (out of order is fine when they tile the data)
    const std::string ok = st("ok.safetensors", R"({"b":{"dtype":"U8","shape":[4],"data_offsets":[4,8]},)"
                                                R"("a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},)"
                                                R"("e":{"dtype":"U8","shape":[0],"data_offsets":[8,8]}})", data);
    const WeightFile wf = load_weights(ok);
    EXPECT_EQ(wf.tensors.size(), 3u);
    EXPECT_EQ(*(const char*)wf.tensors.at("b").raw(), 'e');

    const std::string overlap = st("overlap.safetensors", R"({"a":{"dtype":"U8","shape":[6],"data_offsets":[0,6]},)"
                                                          R"("b":{"dtype":"U8","shape":[4],"data_offsets":[4,8]}})", data);
    EXPECT_EQ(load_error(overlap), "safetensors file '" + overlap +
                                       "': tensors 'a' (data_offsets [0, 6]) and 'b' ([4, 8]) overlap");
    const std::string alias = st("alias.safetensors", R"({"a":{"dtype":"U8","shape":[8],"data_offsets":[0,8]},)"
                                                      R"("b":{"dtype":"U8","shape":[8],"data_offsets":[0,8]}})", data);
    EXPECT_THAT(load_error(alias), HasSubstr("tensors 'a' (data_offsets [0, 8]) and 'b' ([0, 8]) overlap"));
    const std::string hole = st("hole.safetensors", R"({"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},)"
                                                    R"("b":{"dtype":"U8","shape":[4],"data_offsets":[4,8]}})", data);
    EXPECT_EQ(load_error(hole), "safetensors file '" + hole +
                                    "': bytes [2, 4) of the data section belong to no tensor (a hole before 'b')");
    const std::string tail = st("tail.safetensors", R"({"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]}})", data);
    EXPECT_THAT(load_error(tail), AllOf(HasSubstr("tail.safetensors"), HasSubstr("end at byte 4"),
                                        HasSubstr("holds 8 bytes (trailing data)")));
    const std::string dup = st("dup.safetensors", R"({"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},)"
                                                  R"("a":{"dtype":"U8","shape":[4],"data_offsets":[4,8]}})", data);
    EXPECT_EQ(load_error(dup), "safetensors file '" + dup + "': tensor name 'a' appears twice in the header");
    // a header that is JSON but not an object, nested deeply: refused without recursion
    const std::string arr = st("arr.safetensors", std::string(200000, '[') + std::string(200000, ']'));
    EXPECT_THAT(load_error(arr), AllOf(HasSubstr("arr.safetensors"), HasSubstr("header is not a JSON object")));
}

TEST_F(Hostile, FifoAndSymlinkLoopAreNamedForWhatTheyAre) {
    ASSERT_EQ(::mkfifo(path("pipe.safetensors").c_str(), 0600), 0);
    EXPECT_EQ(load_error(path("pipe.safetensors")),
              "model file '" + path("pipe.safetensors") + "' is not a regular file (it is a FIFO)");
    EXPECT_EQ(error_of([&] { load_stable_diffusion(path("pipe.safetensors")); }),
              "model '" + path("pipe.safetensors") + "' is not a regular file (it is a FIFO)");
    EXPECT_EQ(error_of([&] { map_file(path("pipe.safetensors")); }),  // opening never blocks
              "file '" + path("pipe.safetensors") + "' is not a regular file (it is a FIFO)");
    EXPECT_FALSE(is_safetensors_file(path("pipe.safetensors")));
    EXPECT_EQ(detect_weight_format(path("pipe.safetensors")), WeightFormat::Unknown);
    const test::CliRun r = run_cli("info " + path("pipe.safetensors"));
    EXPECT_EQ(r.code, 1) << r.out;
    EXPECT_THAT(r.out, HasSubstr("is not a regular file (it is a FIFO)"));

    fs::create_symlink(path("loop2"), path("loop1"));
    fs::create_symlink(path("loop1"), path("loop2"));
    EXPECT_EQ(load_error(path("loop1")), "model file '" + path("loop1") + "': too many levels of symbolic links");
    EXPECT_EQ(error_of([&] { load_stable_diffusion(path("loop1")); }),
              "model '" + path("loop1") + "': too many levels of symbolic links");
    EXPECT_THAT(run_cli("info " + path("loop1")).out, HasSubstr("too many levels of symbolic links"));

    EXPECT_EQ(load_error(path("nope.safetensors")), "model file '" + path("nope.safetensors") + "' does not exist");
    fs::create_directories(path("folder.safetensors"));
    EXPECT_THAT(load_error(path("folder.safetensors")), HasSubstr("is a directory"));
}

namespace {

// A tiny SD1 diffusers folder from the golden component files (the configs are what the tests break).
void make_diffusers_folder(const fs::path& d) {
    for (const char* sub : {"unet", "vae", "text_encoder", "tokenizer"}) fs::create_directories(d / sub);
    std::ofstream(d / "model_index.json") << R"({"_class_name": "StableDiffusionPipeline"})";
    fs::copy_file(kGolden + "clip_text/clip_l.safetensors", d / "text_encoder/model.safetensors");
    fs::copy_file(kGolden + "vae/vae_sd.safetensors", d / "vae/diffusion_pytorch_model.safetensors");
    fs::copy_file(kGolden + "unet_sd15/unet.safetensors", d / "unet/diffusion_pytorch_model.safetensors");
}

}  // namespace

TEST_F(Hostile, DiffusersConfigsThatAreBrokenAreErrorsNamingTheFile) {
    make_diffusers_folder(dir_);
    const std::string root = dir_.string();
    auto load = [&] { return error_of([&] { load_stable_diffusion(root); }); };
    const std::string ucfg = root + "/unet/config.json";

    std::ofstream(ucfg) << "{not json";
    EXPECT_THAT(load(), AllOf(HasSubstr("'" + ucfg + "' is not valid JSON")));
    std::ofstream(ucfg) << "[1, 2, 3]";
    EXPECT_EQ(load(), "'" + ucfg + "' is not a JSON object (it is array)");
    std::ofstream(ucfg) << R"({"attention_head_dim": []})";
    EXPECT_THAT(load(), AllOf(HasSubstr("'" + ucfg + "': UNet config: 0 head counts for")));
    std::ofstream(ucfg) << R"({"num_attention_heads": [8, "x", 8, 8, 8, 8, 8, 8, 8, 8]})";
    EXPECT_THAT(load(), AllOf(HasSubstr("'" + ucfg + "': ")));
    std::ofstream(ucfg) << R"({"norm_num_groups": 0})";
    EXPECT_THAT(load(), AllOf(HasSubstr("'" + ucfg + "': norm_num_groups = 0")));
    std::ofstream(ucfg) << R"({"attention_head_dim": 0})";
    EXPECT_THAT(load(), AllOf(HasSubstr("'" + ucfg + "': attention heads [0, 0"), HasSubstr("do not divide")));
    std::ofstream(ucfg) << R"({"sample_size": 1000000000})";
    EXPECT_THAT(load(), AllOf(HasSubstr("'" + ucfg + "': sample_size must be an integer")));
    fs::remove(ucfg);
    fs::create_directories(ucfg);
    EXPECT_EQ(load(), "JSON file '" + ucfg + "' is a directory, expected a file");
    fs::remove(ucfg);
    ASSERT_EQ(::mkfifo(ucfg.c_str(), 0600), 0);
    EXPECT_EQ(load(), "JSON file '" + ucfg + "' is not a regular file (it is a FIFO)");
    fs::remove(ucfg);
    fs::create_symlink(root + "/unet/nowhere.json", ucfg);
    EXPECT_THAT(load(), AllOf(HasSubstr(ucfg), HasSubstr("does not exist")));
    fs::remove(ucfg);

    const std::string vcfg = root + "/vae/config.json";
    std::ofstream(vcfg) << "\"a string\"";
    EXPECT_EQ(load(), "'" + vcfg + "' is not a JSON object (it is string)");
    std::ofstream(vcfg) << R"({"latent_channels": 7})";
    EXPECT_THAT(load(), AllOf(HasSubstr("'" + vcfg + "': AutoencoderKL config: latent_channels = 7")));
    std::ofstream(vcfg) << R"({"norm_num_groups": 9223372036854775807})";  // only fails when the VAE is built
    EXPECT_THAT(load(), AllOf(HasSubstr("'" + vcfg + "': AutoencoderKL: block width"),
                              HasSubstr("9223372036854775807 norm groups")));
    fs::remove(vcfg);
    const std::string tcfg = root + "/text_encoder/config.json";
    std::ofstream(tcfg) << "null";
    EXPECT_EQ(load(), "'" + tcfg + "' is not a JSON object (it is null)");
    fs::remove(tcfg);
    fs::create_directories(root + "/scheduler");
    const std::string scfg = root + "/scheduler/scheduler_config.json";
    std::ofstream(scfg) << R"({"steps_offset": "one"})";
    EXPECT_THAT(load(), AllOf(HasSubstr("'" + scfg + "': 'steps_offset' must be an integer")));
    std::ofstream(scfg) << R"({"prediction_type": 3})";
    EXPECT_THAT(load(), AllOf(HasSubstr("'" + scfg + "': 'prediction_type' must be a string")));
    fs::remove(scfg);
    const std::string tok = root + "/tokenizer/special_tokens_map.json";
    std::ofstream(tok) << R"({"pad_token": {"content": 5}})";
    EXPECT_EQ(load(), "(no error)");  // an unusable pad token is ignored, as before
    std::ofstream(tok) << "[]";
    EXPECT_EQ(load(), "'" + tok + "' is not a JSON object (it is array)");
    fs::remove(tok);

    // Missing configs still fall back to what the shapes say (documented behaviour).
    EXPECT_EQ(load(), "(no error)");

    const std::string mi = root + "/model_index.json";
    std::ofstream(mi) << "[\"StableDiffusionPipeline\"]";
    EXPECT_EQ(load(), "'" + mi + "' is not a JSON object (it is array)");
    const test::CliRun r = run_cli("info " + root);
    EXPECT_EQ(r.code, 1) << r.out;
    EXPECT_THAT(r.out, HasSubstr("'" + mi + "' is not a JSON object (it is array)"));
    std::ofstream(mi) << R"({"_class_name": 5})";
    EXPECT_EQ(load(), "'" + mi + "': _class_name is not a string");
    fs::remove(mi);
    fs::create_directories(mi);
    EXPECT_EQ(load(), "JSON file '" + mi + "' is a directory, expected a file");
    fs::remove(mi);
    EXPECT_THAT(load(), HasSubstr("is a folder without model_index.json"));
}

TEST_F(Hostile, WeightFileUnderADiffusersNameIsNotSkipped) {
    // A FIFO (or folder) where unet/diffusion_pytorch_model.safetensors belongs is reported, not skipped in
    // favour of the next candidate name or "no weights".
    make_diffusers_folder(dir_);
    const std::string w = dir_.string() + "/unet/diffusion_pytorch_model.safetensors";
    fs::remove(w);
    ASSERT_EQ(::mkfifo(w.c_str(), 0600), 0);
    EXPECT_EQ(error_of([&] { load_stable_diffusion(dir_.string()); }),
              "model file '" + w + "' is not a regular file (it is a FIFO)");
}

TEST_F(Hostile, JsonReaderBoundsDepthAndSize) {
    write("deep.json", std::string(1000, '[') + std::string(1000, ']'));
    EXPECT_EQ(error_of([&] { read_json_file(path("deep.json")); }),
              "'" + path("deep.json") + "' nests JSON deeper than 128 levels");
    write("ok.json", std::string(100, '[') + std::string(100, ']'));
    EXPECT_EQ(error_of([&] { read_json_file(path("ok.json")); }), "(no error)");
    EXPECT_EQ(read_optional_json_object(path("absent.json")), std::nullopt);
}
