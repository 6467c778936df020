// Inception Score against torchmetrics (tests/data/eval/is_reference, tools/make_is_reference.py), pytorch-fid .npz
// statistics, and `nuance eval fid|kid|is|sweep` errors and outputs.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "../test_util.h"
#include "eval/inception_eval.h"
#include "eval/stats_npz.h"
#include "io/weights.h"

namespace nuance {
namespace {

using ::testing::HasSubstr;
using test::error_of;

const std::string kIsRef = std::string(NUANCE_TEST_DATA) + "/eval/is_reference";
const std::string kInception = std::string(NUANCE_TEST_DATA) + "/golden/fid_inception/inception.safetensors";

std::string tmp_dir(const std::string& name) {
    const std::string d = (std::filesystem::temp_directory_path() / ("nuance_eval_" + name)).string();
    std::filesystem::remove_all(d);
    std::filesystem::create_directories(d);
    return d;
}

TEST(InceptionScore, HandMadeLogits) {
    // Two confident, different predictions: p = one-hot, mean (1/2, 1/2), KL = log 2 each -> IS = 2 (one split).
    const Tensor l = Tensor::from_vector({60, 0, 0, 60}, {2, 2});
    const InceptionScore s = inception_score(l, 1);
    EXPECT_NEAR(s.mean, 2.0, 1e-12);
    EXPECT_TRUE(std::isnan(s.std));
    EXPECT_EQ(s.splits, 1);
    // Identical predictions: IS = 1; torch.chunk of 5 rows in 3 splits -> pieces of 2, 2, 1.
    const InceptionScore u = inception_score(Tensor::from_vector(std::vector<float>(10, 1.0f), {5, 2}), 3);
    EXPECT_NEAR(u.mean, 1.0, 1e-12);
    EXPECT_EQ(u.splits, 3);
    EXPECT_EQ(error_of([] { inception_score(Tensor::from_vector({1, 2}, {1, 2}), 0); }),
              "usage: --splits must be 1..100000, got 0");
    EXPECT_EQ(error_of([] { inception_score(Tensor::from_vector({NAN, 2}, {1, 2}), 1); }),
              "Inception Score: logit [0, 0] is not finite");
}

TEST(InceptionScore, MatchesTorchmetricsOnTheNetwork) {
    std::map<std::string, Tensor> w = load_weights(kInception).tensors;
    for (auto& [k, v] : load_weights(kIsRef + "/fc.safetensors").tensors) w[k] = v;
    const InceptionV3 net = InceptionV3::from_tensors(w, "golden + fc");
    ASSERT_EQ(net.num_classes(), 1008);
    const ImageSource src = ImageSource::folder(kIsRef + "/images");
    ASSERT_EQ(src.size(), 20);
    const FeatureRun r = inception_features(net, src, InceptionResize::LegacyPytorch, 8, true);
    const Tensor ref = load_weights(kIsRef + "/logits.safetensors").tensors.at("logits_unbiased");
    const std::vector<float> a = r.logits.to_vector(), b = ref.to_vector();
    ASSERT_EQ(a.size(), b.size());
    double worst = 0;
    for (size_t i = 0; i < a.size(); ++i) worst = std::max(worst, (double)std::abs(a[i] - b[i]));
    EXPECT_LT(worst, 2e-3);  // logits ~ 30: pool3's 1e-5 through a 2048-term head with weights ~0.5
    std::ifstream f(kIsRef + "/reference.json");
    const nlohmann::json j = nlohmann::json::parse(f);
    for (int splits : {10, 3, 1}) {
        const auto& e = j["splits_" + std::to_string(splits)];
        // On the reference's own logits: the float64 value to 1e-12, torchmetrics' float32 to 1e-6.
        const InceptionScore s = inception_score(ref, splits);
        EXPECT_NEAR(s.mean, e["float64"][0].get<double>(), 1e-12) << splits;
        EXPECT_NEAR(s.mean, e["torchmetrics_f32"][0].get<double>(), 1e-6) << splits;
        if (splits > 1) EXPECT_NEAR(s.std, e["float64"][1].get<double>(), 1e-12) << splits;
        // On nuance's own logits.
        EXPECT_NEAR(inception_score(r.logits, splits).mean, e["float64"][0].get<double>(), 1e-6) << splits;
    }
}

TEST(StatsNpz, RoundTripAndHostileFiles) {
    const std::string d = tmp_dir("npz");
    FidStats s;
    s.dim = 3;
    s.mu = {1, 2, 3};
    s.sigma = {1, 0.5, 0, 0.5, 2, 0.25, 0, 0.25, 3};
    write_fid_stats(d + "/s.npz", s);
    const FidStats r = read_fid_stats(d + "/s.npz");
    EXPECT_EQ(r.dim, 3);
    EXPECT_EQ(r.mu, s.mu);
    EXPECT_EQ(r.sigma, s.sigma);
    std::vector<int64_t> shape;
    EXPECT_EQ(error_of([&] { parse_npy("hello world", "x", shape); }), "x is not an NPY array (bad magic)");
    std::string npy = make_npy_f8({1, 2}, {2});
    std::string bad = npy;
    bad.resize(bad.size() - 3);
    EXPECT_EQ(error_of([&] { parse_npy(bad, "x", shape); }),
              "x: NPY data is 13 bytes, shape (2,) of <f8 needs 16");
    std::string i8 = npy;
    i8.replace(i8.find("<f8"), 3, "<i8");
    EXPECT_EQ(error_of([&] { parse_npy(i8, "x", shape); }), "x: dtype '<i8' is not supported (<f8 or <f4)");
    std::string huge = npy;
    huge.replace(huge.find("(2,)"), 4, "(9999999999,)");
    EXPECT_THAT(error_of([&] { parse_npy(huge, "x", shape); }), HasSubstr("x: NPY dimension in (9999999999,) exceeds 16384"));
    const std::string big = make_npy_f8({1}, {1});
    std::string big2 = big;
    big2.replace(big2.find("(1,)"), 4, "(99999)");
    EXPECT_EQ(error_of([&] { parse_npy(big2, "x", shape); }), "x: NPY dimension in (99999) exceeds 16384");
    // mu / sigma mismatch.
    FidStats m;
    m.dim = 2;
    m.mu = {1, 2};
    m.sigma = {1, 0, 0, 1};
    write_fid_stats(d + "/m.npz", m);
    EXPECT_EQ(error_of([&] { read_fid_stats(d + "/nope.npz"); }).find("nope.npz") != std::string::npos, true);
    EXPECT_EQ(error_of([&] { write_fid_stats(d + "/x.npz", FidStats{2, {1}, {1, 0, 0, 1}}); }),
              "stats: mu of 1 and sigma of 4 values for dimension 2");
}

#ifdef NUANCE_CLI_PATH
TEST(EvalFidCli, UsageErrorsNameTheFlag) {
    auto r = test::run_cli("eval fid /nonexistent_dir_xyz x.npz");
    EXPECT_EQ(r.code, 2) << r.out;
    EXPECT_THAT(r.out, HasSubstr("--inception FILE is required"));
    r = test::run_cli("eval fid /nonexistent_dir_xyz --inception " + kInception + " --resize bicubic");
    EXPECT_EQ(r.code, 2) << r.out;
    EXPECT_THAT(r.out, HasSubstr("--resize 'bicubic' is not a resize mode (clean, legacy_pytorch, legacy_tensorflow)"));
    r = test::run_cli("eval fid /nonexistent_dir_xyz other --inception " + kInception);
    EXPECT_EQ(r.code, 1) << r.out;
    EXPECT_THAT(r.out, HasSubstr("image folder '/nonexistent_dir_xyz' does not exist"));
    r = test::run_cli("eval is " + kIsRef + "/images --inception " + kInception);
    EXPECT_EQ(r.code, 1) << r.out;
    EXPECT_THAT(r.out, HasSubstr("has no fc head (fc.weight, fc.bias)"));
    r = test::run_cli("eval kid " + kIsRef + "/images x.npz --inception " + kInception);
    EXPECT_EQ(r.code, 2) << r.out;
    EXPECT_THAT(r.out, HasSubstr("KID needs images for both sets ('x.npz' is a stats file"));
    r = test::run_cli("eval sweep --ref x.npz --inception " + kInception);
    EXPECT_EQ(r.code, 2) << r.out;
    EXPECT_THAT(r.out, HasSubstr("nuance eval sweep needs -m MODEL --prompts FILE --samples N"));
    r = test::run_cli("eval fid --prompts p.txt --inception " + kInception);
    EXPECT_EQ(r.code, 2) << r.out;
    EXPECT_THAT(r.out, HasSubstr("--prompts/--samples need -m MODEL"));
}

TEST(EvalFidCli, FidKidOnFoldersWithStatsJsonAndPlot) {
    const std::string d = tmp_dir("cli");
    std::filesystem::create_directories(d + "/a");
    std::filesystem::create_directories(d + "/b");
    int i = 0;
    for (const auto& e : std::filesystem::directory_iterator(kIsRef + "/images")) {
        const std::string name = e.path().filename().string();
        std::filesystem::copy_file(e.path(), d + (i++ % 2 ? "/a/" : "/b/") + name);
        if (i >= 4) break;  // 2 + 2 images: FID / KID need 2 per set
    }
    auto r = test::run_cli("eval fid " + d + "/a " + d + "/b --inception " + kInception + " -q -t 2 --json " + d +
                           "/fid.json --save-stats " + d + "/a.npz --plot " + d + "/fid.png");
    ASSERT_EQ(r.code, 0) << r.out;
    EXPECT_THAT(r.out, HasSubstr("| FID | "));
    std::ifstream jf(d + "/fid.json");
    const nlohmann::json j = nlohmann::json::parse(jf);
    EXPECT_EQ(j["metric"], "fid");
    EXPECT_EQ(j["resize"], "clean");
    EXPECT_GT(j["value"].get<double>(), 0.0);
    EXPECT_TRUE(std::filesystem::exists(d + "/fid.png"));
    const FidStats s = read_fid_stats(d + "/a.npz");
    EXPECT_EQ(s.dim, 2048);
    // The same set against its own statistics: 0 up to the eps offset (singular: 2 images).
    r = test::run_cli("eval fid " + d + "/a " + d + "/a.npz --inception " + kInception + " -q -t 2 --json " + d +
                      "/self.json");
    ASSERT_EQ(r.code, 0) << r.out;
    std::ifstream sf(d + "/self.json");
    EXPECT_NEAR(nlohmann::json::parse(sf)["value"].get<double>(), 0.0, 1e-3);
    r = test::run_cli("eval kid " + d + "/a " + d + "/b --inception " + kInception + " -q -t 2 --resize legacy_pytorch");
    ASSERT_EQ(r.code, 0) << r.out;
    EXPECT_THAT(r.out, HasSubstr("| KID | "));
}
#endif

}  // namespace
}  // namespace nuance
