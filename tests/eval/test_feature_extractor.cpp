// eval/feature_extractor.h: the emoji classifier as a feature network gives exactly the classifier's own features and
// logits (what eval-emoji measured before it moved onto this code), the --features spec and its errors, and the
// batch walk / gather helpers in one process (the mpirun side is tests/dist/test_eval_sharded.cpp).
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "../test_util.h"
#include "core/error.h"
#include "eval/feature_extractor.h"
#include "io/image.h"
#include "nn/module.h"
#include "train/emoji_classifier.h"
#include "train/emoji_dataset.h"

namespace nuance {
namespace {

using ::testing::HasSubstr;
using test::error_of;
namespace fs = std::filesystem;

const std::string kIsRef = std::string(NUANCE_TEST_DATA) + "/eval/is_reference";
const std::string kInception = std::string(NUANCE_TEST_DATA) + "/golden/fid_inception/inception.safetensors";

class FeatureExtractorTest : public ::testing::Test {
protected:
    void SetUp() override {
        dir_ = fs::path(NUANCE_SCRATCH_DIR) / ("nuance_fx_" + std::to_string(getpid()));
        fs::remove_all(dir_);
        fs::create_directories(dir_);
        EmojiClassifier net(9);
        init_random(net, 5);
        save_emoji_classifier(cls(), net, emoji_categories());
    }
    void TearDown() override { fs::remove_all(dir_); }
    std::string cls() const { return (dir_ / "cls.safetensors").string(); }
    fs::path dir_;
};

std::vector<Image> some_images(int n) {
    std::vector<Image> out;
    const ImageSource src = ImageSource::folder(kIsRef + "/images");
    for (int i = 0; i < n; ++i) out.push_back(src.get(i));
    return out;
}

TEST_F(FeatureExtractorTest, EmojiClassifierIsTheClassifiersOwnFeaturesAndLogits) {
    const auto fx = make_feature_extractor("emoji-classifier:" + cls(), "", "clean", Precision::FP32);
    EXPECT_EQ(fx->dim(), 128);
    EXPECT_EQ(fx->num_logits(), 9);
    EXPECT_EQ(fx->name(), "emoji-classifier");
    const std::vector<Image> ims = some_images(5);
    const FeatureExtractor::Output o = fx->extract(ims, true);
    const LoadedClassifier c = load_emoji_classifier(cls(), emoji_categories());
    const EmojiClassifier::Output want = classify(*c.net, emoji_images_to_batch(ims));
    EXPECT_EQ(o.features.shape(), (Shape{5, 128}));
    EXPECT_EQ(o.features.to_vector(), want.features.to_vector());  // bit-exact: eval-emoji's numbers are unchanged
    EXPECT_EQ(o.logits.to_vector(), want.logits.to_vector());
    EXPECT_FALSE(fx->extract(ims, false).logits.defined());
}

TEST_F(FeatureExtractorTest, SpecsAndTheirErrors) {
    EXPECT_EQ(make_feature_extractor("", kInception, "legacy_pytorch", Precision::FP32)->dim(), 2048);
    EXPECT_EQ(make_feature_extractor("inception", kInception, "clean", Precision::FP32)->name(),
              "inception (clean resize)");
    EXPECT_THAT(error_of([] { make_feature_extractor("", "", "clean", Precision::FP32); }),
                HasSubstr("usage: --inception FILE is required"));
    EXPECT_EQ(error_of([] { make_feature_extractor("vgg", "", "clean", Precision::FP32); }),
              "usage: --features 'vgg' is not a feature network (inception | emoji-classifier:FILE)");
    EXPECT_EQ(error_of([] { make_feature_extractor("emoji-classifier:", "", "clean", Precision::FP32); }),
              "usage: --features emoji-classifier:FILE needs the classifier's file after the ':'");
    EXPECT_THAT(error_of([&] { make_feature_extractor("emoji-classifier:" + cls(), kInception, "clean", Precision::FP32); }),
                HasSubstr("name two feature networks; give one"));
    EXPECT_THAT(error_of([&] { make_feature_extractor("emoji-classifier:" + (dir_ / "no.safetensors").string(), "",
                                                      "clean", Precision::FP32); }),
                HasSubstr("no.safetensors"));
    // An Inception without its fc head has no logits to give.
    const auto inc = make_feature_extractor("", kInception, "clean", Precision::FP32);
    EXPECT_EQ(inc->num_logits(), 0);
    const ImageSource src = ImageSource::folder(kIsRef + "/images");
    EXPECT_THAT(error_of([&] { extract_features(*inc, src, 4, true); }), HasSubstr("has no classifier head"));
    EXPECT_EQ(error_of([&] { extract_features(*inc, src, 0, false); }), "usage: --batch must be 1..256, got 0");
}

TEST_F(FeatureExtractorTest, ExtractsInSourceOrderInBatchesAndKeepsTheFirstImages) {
    fs::create_directories(dir_ / "imgs");
    const std::vector<Image> ims = some_images(5);
    for (int i = 0; i < 5; ++i) write_png((dir_ / "imgs" / (std::to_string(i) + ".png")).string(), ims[(size_t)i]);
    const ImageSource src = ImageSource::folder((dir_ / "imgs").string());
    const auto fx = make_feature_extractor("emoji-classifier:" + cls(), "", "clean", Precision::FP32);
    std::vector<int64_t> firsts, done;
    const FeatureRun r = extract_features(*fx, src, 2, true, 3, [&](const FeatureProgress& p) {
        done.push_back(p.done);
        EXPECT_EQ(p.total, 5);
    }, [&](const std::vector<Image>& b, int64_t first) { firsts.push_back(first); EXPECT_LE(b.size(), 2u); });
    EXPECT_TRUE(r.complete);
    EXPECT_EQ(r.ranks, 1);
    EXPECT_EQ(firsts, (std::vector<int64_t>{0, 2, 4}));
    EXPECT_EQ(done, (std::vector<int64_t>{2, 4, 5}));
    ASSERT_EQ(r.kept.size(), 3u);
    EXPECT_EQ(r.kept[2].pixels, ims[2].pixels);
    // Row i is image i's features, whatever batch it was in.
    const FeatureExtractor::Output one = fx->extract({ims[3]}, true);
    const std::vector<float> all = r.features.to_vector(), row = one.features.to_vector();
    for (size_t j = 0; j < 128; ++j) EXPECT_NEAR(all[3 * 128 + j], row[j], 1e-5f) << j;
    EXPECT_EQ(r.logits.shape(), (Shape{5, 9}));
    // A bad image is an error naming it (after the batches before it ran).
    std::ofstream((dir_ / "imgs" / "5.png").string()) << "not a png";
    const ImageSource bad = ImageSource::folder((dir_ / "imgs").string());
    EXPECT_THAT(error_of([&] { extract_features(*fx, bad, 2, false); }), HasSubstr("5.png"));
}

TEST(FeatureGather, OneProcessIsTheIdentity) {
    EXPECT_EQ(gather_doubles({1.5, -2}), (std::vector<double>{1.5, -2}));
    Image im;
    im.width = 1;
    im.height = 1;
    im.pixels = {1, 2, 3};
    const std::vector<Image> g = gather_images({im});
    ASSERT_EQ(g.size(), 1u);
    EXPECT_EQ(g[0].pixels, im.pixels);
    const ShardRange s = my_shard(7);
    EXPECT_EQ(s.begin, 0);
    EXPECT_EQ(s.end, 7);
    agree_on_errors(nullptr, "x");  // nothing failed: no throw
    EXPECT_EQ(error_of([] {
                  std::exception_ptr e;
                  try {
                      fail(ErrorCode::Io, "disk gone");
                  } catch (...) {
                      e = std::current_exception();
                  }
                  agree_on_errors(e, "x");
              }),
              "disk gone");
}

}  // namespace
}  // namespace nuance
