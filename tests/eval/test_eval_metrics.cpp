// Inception Score against torchmetrics (tests/data/eval/is_reference, tools/make_is_reference.py), pytorch-fid .npz
// statistics, and `nuance eval fid|kid|is|sweep` errors and outputs.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <set>

#include <nlohmann/json.hpp>

#include "../test_util.h"
#include "eval/feature_extractor.h"
#include "eval/inception_eval.h"
#include "eval/stats_npz.h"
#include "eval/fid.h"
#include "io/image.h"
#include "io/npy.h"
#include "io/weights.h"
#include "models/default_model.h"
#include "nn/module.h"
#include "train/emoji_classifier.h"
#include "train/emoji_dataset.h"

namespace nuance {
namespace {

using ::testing::HasSubstr;
using test::error_of;

const std::string kIsRef = std::string(NUANCE_TEST_DATA) + "/eval/is_reference";
const std::string kInception = std::string(NUANCE_TEST_DATA) + "/golden/fid_inception/inception.safetensors";

std::string tmp_dir(const std::string& name) {
    const std::string d = (std::filesystem::path(NUANCE_SCRATCH_DIR) / ("nuance_eval_" + name)).string();
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
    InceptionV3 net = InceptionV3::from_tensors(w, "golden + fc");
    ASSERT_EQ(net.num_classes(), 1008);
    const ImageSource src = ImageSource::folder(kIsRef + "/images");
    ASSERT_EQ(src.size(), 20);
    const auto fx = make_inception_extractor(std::move(net), InceptionResize::LegacyPytorch);
    EXPECT_EQ(fx->num_logits(), 1008);
    const FeatureRun r = extract_features(*fx, src, 8, true);
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
    // The members go through io/npy.h's reader with the statistics' limits.
    EXPECT_EQ(error_of([&] { parse_stats_member("hello world", "x"); }), "'x' is not a .npy file (bad magic)");
    const std::string npy = npy_bytes(Tensor::from_vector({1, 2}, {2}).to(DType::F64));
    EXPECT_EQ(parse_stats_member(npy, "x").to(DType::F32).to_vector(), (std::vector<float>{1, 2}));
    std::string bad = npy;
    bad.resize(bad.size() - 3);
    EXPECT_EQ(error_of([&] { parse_stats_member(bad, "x"); }),
              "'x': .npy shape (2,) of <f8 needs 16 data bytes, the file has 13");
    std::string i8 = npy;
    i8.replace(i8.find("<f8"), 3, "<i8");
    EXPECT_EQ(error_of([&] { parse_stats_member(i8, "x"); }), "'x': .npy dtype '<i8' is not supported (<f2, <f4, <f8)");
    std::string f2 = npy;
    f2.replace(f2.find("<f8"), 3, "<f2");
    f2.resize(f2.size() - 12);  // 2 halves
    EXPECT_EQ(error_of([&] { parse_stats_member(f2, "x"); }),
              "'x': dtype F16 is not supported for statistics (<f8 or <f4)");
    std::string huge = npy;
    huge.replace(huge.find("(2,)"), 4, "(9999999999,)");
    EXPECT_THAT(error_of([&] { parse_stats_member(huge, "x"); }),
                HasSubstr("'x': .npy dimension 9999999999 in shape (9999999999,) exceeds 16384"));
    const std::string big = npy_bytes(Tensor::from_vector({1}, {1}).to(DType::F64));
    std::string big2 = big;
    big2.replace(big2.find("(1,)"), 4, "(99999)");
    EXPECT_EQ(error_of([&] { parse_stats_member(big2, "x"); }),
              "'x': .npy dimension 99999 in shape (99999) exceeds 16384");
    std::string three = big;
    three.replace(three.find("(1,)"), 4, "(1,1,1)");
    EXPECT_THAT(error_of([&] { parse_stats_member(three, "x"); }),
                HasSubstr("'x': .npy arrays of more than 2 dimensions are not supported here"));
    // Fortran order (np.asfortranarray): read back in C order.
    std::string fo = npy_bytes(Tensor::from_vector({1, 3, 2, 4}, {2, 2}).to(DType::F64));
    fo.replace(fo.find("False"), 5, "True ");
    EXPECT_EQ(parse_stats_member(fo, "x").to(DType::F32).to_vector(), (std::vector<float>{1, 2, 3, 4}));
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

TEST(EvalFidCli, EmojiClassifierFeaturesGiveTheClassifiersFid) {
    const std::string d = tmp_dir("emojifx");
    std::filesystem::create_directories(d + "/a");
    std::filesystem::create_directories(d + "/b");
    EmojiClassifier net(9);
    init_random(net, 4);
    save_emoji_classifier(d + "/cls.safetensors", net, emoji_categories());
    std::vector<Image> a, b;
    const ImageSource src = ImageSource::folder(kIsRef + "/images");
    for (int i = 0; i < 8; ++i) {
        const Image im = src.get(i);
        write_png(d + (i < 4 ? "/a/" : "/b/") + std::to_string(i) + ".png", im);
        (i < 4 ? a : b).push_back(im);
    }
    // The reference: the classifier's own features (what eval-emoji computes FID on), FID in float64.
    const double want = frechet_distance_features(classify(net, emoji_images_to_batch(a)).features,
                                                  classify(net, emoji_images_to_batch(b)).features);
    const std::string fx = " -t 1 --features emoji-classifier:" + d + "/cls.safetensors";
    auto r = test::run_cli("eval fid " + d + "/a " + d + "/b" + fx + " -q --json " + d + "/f.json --save-stats " + d +
                           "/a.npz");
    ASSERT_EQ(r.code, 0) << r.out;
    std::ifstream jf(d + "/f.json");
    const nlohmann::json j = nlohmann::json::parse(jf);
    EXPECT_EQ(j["dim"], 128);
    EXPECT_EQ(j["network"], "emoji-classifier");
    EXPECT_NEAR(j["value"].get<double>(), want, 1e-6 * want);  // the CLI runs 1 thread, this process all cores
    EXPECT_EQ(read_fid_stats(d + "/a.npz").dim, 128);
    // IS on the classifier's 9 logits: between 1 and the class count.
    r = test::run_cli("eval is " + d + "/a" + fx + " -q --splits 1 --json " + d + "/is.json");
    ASSERT_EQ(r.code, 0) << r.out;
    std::ifstream isf(d + "/is.json");
    const double is = nlohmann::json::parse(isf)["value"].get<double>();
    EXPECT_GE(is, 1.0);
    EXPECT_LE(is, 9.0);
    // Errors: statistics of another width, an unknown network, two networks.
    write_fid_stats(d + "/three.npz", FidStats{3, {0, 0, 0}, {1, 0, 0, 0, 1, 0, 0, 0, 1}});
    r = test::run_cli("eval fid " + d + "/a " + d + "/three.npz" + fx + " -q");
    EXPECT_EQ(r.code, 1) << r.out;
    EXPECT_THAT(r.out, HasSubstr("holds 3-d statistics; the feature network's features are 128-d"));
    r = test::run_cli("eval fid " + d + "/a " + d + "/b --features dino -q");
    EXPECT_EQ(r.code, 2) << r.out;
    EXPECT_THAT(r.out, HasSubstr("--features 'dino' is not a feature network (inception | emoji-classifier:FILE)"));
    r = test::run_cli("eval fid " + d + "/a " + d + "/b" + fx + " --inception " + kInception + " -q");
    EXPECT_EQ(r.code, 2) << r.out;
    EXPECT_THAT(r.out, HasSubstr("name two feature networks; give one"));
}

// nuance eval sweep end to end: the built-in model over a 2 x 2 grid of steps and CFG, FID against a folder in the
// emoji classifier's 128-d feature space (Inception's 2048-d FID costs seconds per cell on a shared machine); every
// cell is in the JSON with the FID its saved samples give when measured again here, and the plot decodes.
TEST(EvalFidCli, SweepCoversEveryCellAndPlots) {
    const std::string d = tmp_dir("sweep");
    std::filesystem::create_directories(d + "/ref");
    const ImageSource is_images = ImageSource::folder(kIsRef + "/images");
    for (int i = 0; i < 3; ++i) write_png(d + "/ref/" + std::to_string(i) + ".png", is_images.get(i));
    std::ofstream(d + "/prompts.txt") << "red apple\nblue heart\n";
    EmojiClassifier net(9);
    init_random(net, 6);
    save_emoji_classifier(d + "/cls.safetensors", net, emoji_categories());
    const std::string model = default_model_path();
    ASSERT_FALSE(model.empty());
    const std::string fx_spec = "emoji-classifier:" + d + "/cls.safetensors";
    auto r = test::run_cli("eval sweep -q -t 1 -m " + model + " --prompts " + d + "/prompts.txt --samples 2 --steps 1,2 "
                           "--cfg 1,3 --features " + fx_spec + " --ref " + d + "/ref --batch 2 --json " + d +
                           "/s.json --plot " + d + "/s.png --save-samples " + d + "/samples");
    ASSERT_EQ(r.code, 0) << r.out;
    EXPECT_THAT(r.out, HasSubstr("| steps | cfg | FID | samples |"));
    std::ifstream jf(d + "/s.json");
    const nlohmann::json j = nlohmann::json::parse(jf);
    EXPECT_EQ(j["metric"], "sweep");
    EXPECT_EQ(j["dim"], 128);
    ASSERT_EQ(j["runs"].size(), 4u);
    const auto fx = make_feature_extractor(fx_spec, "", "clean", Precision::FP32);
    const FeatureStats ref(extract_features(*fx, ImageSource::folder(d + "/ref"), 2, false).features);
    std::set<std::pair<int, double>> cells;
    for (const auto& run : j["runs"]) {
        const int steps = run["steps"].get<int>();
        const double cfg = run["cfg"].get<double>();
        cells.insert({steps, cfg});
        EXPECT_EQ(run["samples"], 2);
        EXPECT_TRUE(run["clip_score"].is_null());
        // The cell's samples, measured again: the same FID.
        char sub[64];
        std::snprintf(sub, sizeof sub, "/samples/steps%d_cfg%g", steps, cfg);
        const FeatureStats st(extract_features(*fx, ImageSource::folder(d + sub), 2, false).features);
        const double fid = frechet_distance_cholesky(st.mean(), st.covariance(), ref.mean(), ref.covariance(), 128);
        EXPECT_NEAR(run["fid"].get<double>(), fid, 1e-5 * fid) << sub;
    }
    EXPECT_EQ(cells, (std::set<std::pair<int, double>>{{1, 1.0}, {1, 3.0}, {2, 1.0}, {2, 3.0}}));
    const Image plot = read_image(d + "/s.png");
    EXPECT_GE(plot.width, 640);  // the chart (640 wide) beside the sheet of one sample per cell
    EXPECT_GE(plot.height, 420);
    // Errors: a bad list, too few samples for FID.
    r = test::run_cli("eval sweep -q -m " + model + " --prompts " + d + "/prompts.txt --samples 2 --steps 1,x "
                      "--features " + fx_spec + " --ref " + d + "/ref");
    EXPECT_EQ(r.code, 2) << r.out;
    EXPECT_THAT(r.out, HasSubstr("--steps '1,x': 'x' is not a number"));
    r = test::run_cli("eval sweep -q -m " + model + " --prompts " + d + "/prompts.txt --samples 1 --features " +
                      fx_spec + " --ref " + d + "/ref");
    EXPECT_EQ(r.code, 2) << r.out;
    EXPECT_THAT(r.out, HasSubstr("FID needs --samples >= 2 per setting, got 1"));
}
#endif

}  // namespace
}  // namespace nuance
