// Sharded evaluation (issue 17 item 4): `mpirun -np 2 nuance eval fid|sweep|clip-score -m MODEL ...` splits the
// samples across the ranks, writes the same sample files as one process (same seeds), and rank 0 alone reports a
// result equal to the single-process run's; an error on one rank stops every rank with its message (no hang).
// The built-in nuance-emoji model (32 px, 2 sampling steps) keeps the runs short; the Inception is the golden
// random-weight one, the CLIP model the golden tiny CLIPModel.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "../test_util.h"
#include "io/image.h"
#include "io/json_file.h"
#include "models/default_model.h"
#include "mpi_test_util.h"
#include "nn/module.h"
#include "train/emoji_classifier.h"
#include "train/emoji_dataset.h"

namespace nuance {
namespace {

using ::testing::HasSubstr;
namespace fs = std::filesystem;

const std::string kData = std::string(NUANCE_TEST_DATA);
const std::string kInception = kData + "/golden/fid_inception/inception.safetensors";

std::string tmp_dir(const std::string& name) {
    const std::string d = std::string(NUANCE_SCRATCH_DIR) + "/nuance_evalshard_" + name + "_" + std::to_string(getpid());
    fs::remove_all(d);
    fs::create_directories(d);
    return d;
}

std::string slurp(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
}

nlohmann::json json_of(const std::string& path) { return nlohmann::json::parse(slurp(path)); }

size_t count(const std::string& hay, const std::string& needle) {
    size_t n = 0;
    for (size_t at = hay.find(needle); at != std::string::npos; at = hay.find(needle, at + 1)) ++n;
    return n;
}

// Three of the IS reference's images as the reference set, and a prompt file.
void write_inputs(const std::string& d) {
    fs::create_directories(d + "/ref");
    int i = 0;
    for (const char* name : {"000.png", "001.png", "002.png"})
        fs::copy_file(kData + "/eval/is_reference/images/" + name, d + "/ref/" + std::to_string(i++) + ".png");
    std::ofstream(d + "/prompts.txt") << "red apple\nsmiling face with sunglasses\nblue heart\n";
}

std::string cli() { return std::string(NUANCE_CLI_PATH); }

// Every sample file of `a` exists in `b` with the same bytes, and `b` has no others.
void expect_same_files(const std::string& a, const std::string& b, size_t n) {
    size_t seen = 0;
    for (const auto& e : fs::directory_iterator(a)) {
        ++seen;
        const std::string other = b + "/" + e.path().filename().string();
        ASSERT_TRUE(fs::exists(other)) << other;
        EXPECT_EQ(slurp(e.path().string()), slurp(other)) << e.path();
    }
    EXPECT_EQ(seen, n);
    EXPECT_EQ((size_t)std::distance(fs::directory_iterator(b), fs::directory_iterator{}), n);
}

// Tolerance between one process and two ranks: each rank runs its images in its own batches (rank 1's start at
// image 3 of 5), and oneDNN's convolution may round a batch of 2 differently from a batch of 1 in the last bit, so
// pool3 features agree to ~1e-6 relative and the float64 FID computed from them to about the same.
constexpr double kRel = 1e-5;

TEST(DataParallelEval, FidOfAModelsSamplesEqualsOneProcess) {
    REQUIRE_MPI(mpirun);
    const std::string d = tmp_dir("fid");
    write_inputs(d);
    const std::string model = default_model_path();
    ASSERT_FALSE(model.empty());
    auto args = [&](const std::string& tag) {
        return " eval fid -q -t 1 -m " + model + " --prompts " + d + "/prompts.txt --samples 5 --steps 2 -s 7 " +
               "--batch 2 --inception " + kInception + " " + d + "/ref --json " + d + "/" + tag + ".json " +
               "--save-samples " + d + "/" + tag + " --plot " + d + "/" + tag + ".png";
    };
    fs::create_directories(d + "/one");
    fs::create_directories(d + "/two");
    const Shell one = run_shell(cli() + args("one"));
    ASSERT_EQ(one.code, 0) << one.out;
    const Shell two = run_shell(mpirun + "-np 2 " + cli() + args("two"));
    ASSERT_EQ(two.code, 0) << two.out;
    expect_same_files(d + "/one", d + "/two", 5);  // seeds 7..11, split 3 + 2, the same files
    EXPECT_EQ(count(two.out, "| FID |"), 1u) << two.out;  // rank 0 alone reports
    const nlohmann::json j1 = json_of(d + "/one.json"), j2 = json_of(d + "/two.json");
    EXPECT_EQ(j1["ranks"], 1);
    EXPECT_EQ(j2["ranks"], 2);
    EXPECT_EQ(j2["a"]["images"], 5);
    const double f1 = j1["value"].get<double>(), f2 = j2["value"].get<double>();
    EXPECT_GT(f1, 0.0);
    EXPECT_NEAR(f2, f1, kRel * f1);
    // The plot: the same contact sheet (the first 16 images, gathered from both ranks) beside the numbers.
    const Image p1 = read_image(d + "/one.png"), p2 = read_image(d + "/two.png");
    EXPECT_EQ(p1.width, p2.width);
    EXPECT_EQ(p1.height, p2.height);
    fs::remove_all(d);
}

TEST(DataParallelEval, SweepAndClipScoreEqualOneProcess) {
    REQUIRE_MPI(mpirun);
    const std::string d = tmp_dir("sweep");
    write_inputs(d);
    const std::string model = default_model_path();
    // The golden tiny CLIPModel as a transformers folder.
    const std::string g = kData + "/golden/clip_vision/";
    fs::create_directories(d + "/clip");
    fs::copy_file(g + "clip_model.safetensors", d + "/clip/model.safetensors");
    std::ofstream(d + "/clip/config.json") << read_json_object(g + "case.json")["models"]["clip_score_model"]["config"].dump();
    fs::copy_file(g + "preprocessor_config.json", d + "/clip/preprocessor_config.json");
    // A random emoji classifier as the feature network: the sweep's FID in its 128-d space.
    EmojiClassifier net(9);
    init_random(net, 3);
    save_emoji_classifier(d + "/cls.safetensors", net, emoji_categories());
    const std::string sweep = " eval sweep -q -t 1 -m " + model + " --prompts " + d + "/prompts.txt --samples 2 " +
                              "--steps 1,2 --cfg 1,4 --features emoji-classifier:" + d + "/cls.safetensors --ref " +
                              d + "/ref --clip " + d + "/clip --batch 2 --json ";
    const Shell one = run_shell(cli() + sweep + d + "/one.json --plot " + d + "/one.png");
    ASSERT_EQ(one.code, 0) << one.out;
    const Shell two = run_shell(mpirun + "-np 2 " + cli() + sweep + d + "/two.json --plot " + d + "/two.png");
    ASSERT_EQ(two.code, 0) << two.out;
    EXPECT_EQ(count(two.out, "| steps | cfg | FID | CLIP score | samples |"), 1u) << two.out;
    const nlohmann::json r1 = json_of(d + "/one.json")["runs"], r2 = json_of(d + "/two.json")["runs"];
    ASSERT_EQ(r1.size(), 4u);
    ASSERT_EQ(r2.size(), 4u);
    for (size_t i = 0; i < 4; ++i) {
        EXPECT_EQ(r1[i]["steps"], r2[i]["steps"]);
        EXPECT_EQ(r1[i]["cfg"], r2[i]["cfg"]);
        const double a = r1[i]["fid"].get<double>(), b = r2[i]["fid"].get<double>();
        EXPECT_NEAR(b, a, kRel * std::max(1.0, a)) << i;
        EXPECT_NEAR(r2[i]["clip_score"].get<double>(), r1[i]["clip_score"].get<double>(), 1e-5) << i;
    }
    EXPECT_TRUE(fs::exists(d + "/two.png"));

    // clip-score of the model's samples: per-image scores gathered in seed order.
    const std::string cs = " eval clip-score -q -t 1 -m " + model + " --prompts " + d + "/prompts.txt --samples 3 " +
                           "--steps 2 --clip " + d + "/clip --batch 2 --json ";
    const Shell c1 = run_shell(cli() + cs + d + "/c1.json");
    ASSERT_EQ(c1.code, 0) << c1.out;
    const Shell c2 = run_shell(mpirun + "-np 2 " + cli() + cs + d + "/c2.json");
    ASSERT_EQ(c2.code, 0) << c2.out;
    const nlohmann::json a = json_of(d + "/c1.json"), b = json_of(d + "/c2.json");
    ASSERT_EQ(b["per_image"].size(), 3u);
    for (size_t i = 0; i < 3; ++i) {
        EXPECT_EQ(b["per_image"][i]["seed"], i);
        EXPECT_EQ(b["per_image"][i]["caption"], a["per_image"][i]["caption"]);
        EXPECT_NEAR(b["per_image"][i]["clip_score"].get<double>(), a["per_image"][i]["clip_score"].get<double>(), 1e-5);
    }
    EXPECT_NEAR(b["clip_score"].get<double>(), a["clip_score"].get<double>(), 1e-5);
    fs::remove_all(d);
}

TEST(DataParallelEval, AnErrorOnOneRankStopsEveryRank) {
    REQUIRE_MPI(mpirun);
    const std::string d = tmp_dir("err");
    write_inputs(d);
    // Image 3 of 4 (rank 1's shard) is not a PNG.
    std::ofstream(d + "/ref/3.png") << "not a png";
    const Shell r = run_shell("timeout 120 " + mpirun + "-np 2 " + cli() + " eval fid -q -t 1 --batch 1 --inception " +
                              kInception + " " + d + "/ref --save-stats " + d + "/s.npz");
    EXPECT_NE(r.code, 0) << r.out;
    EXPECT_NE(r.code, 124) << "mpirun hung after a rank failed:\n" << r.out;
    EXPECT_THAT(r.out, HasSubstr(d + "/ref/3.png"));
    EXPECT_THAT(r.out, HasSubstr("feature extraction: rank 1 failed"));
    EXPECT_FALSE(fs::exists(d + "/s.npz"));
    fs::remove_all(d);
}

}  // namespace
}  // namespace nuance
