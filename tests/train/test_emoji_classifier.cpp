// The emoji classifier (src/train/emoji_classifier.h): forwards, loss, a short training run on a synthetic folder,
// save/load, and the error paths.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "../test_util.h"
#include "autograd/functions.h"
#include "data_test_util.h"
#include "emoji_test_data.h"
#include "io/safetensors.h"
#include "ops/elementwise.h"
#include "train/emoji_classifier.h"
#include "train/emoji_dataset.h"

namespace nuance {
namespace {

using ::testing::HasSubstr;
using test::error_of;
using test::TempDir;
using test::write_synthetic_emoji;

Tensor random_images(int64_t n, uint64_t seed) {
    std::mt19937_64 gen(seed);
    std::uniform_real_distribution<float> u(-1.0f, 1.0f);
    std::vector<float> v((size_t)(n * 3 * 32 * 32));
    for (float& x : v) x = u(gen);
    return Tensor::from_vector(v, {n, 3, 32, 32});
}

TEST(EmojiClassifier, VarAndTensorForwardsAgree) {
    EmojiClassifier net(9);
    init_random(net, 3);
    const Tensor x = random_images(3, 1);
    const EmojiClassifier::Output t = net.forward(x);
    EXPECT_EQ(t.features.shape(), (Shape{3, 128}));
    EXPECT_EQ(t.logits.shape(), (Shape{3, 9}));
    NoGradGuard no_grad;
    Var features;
    const Var logits = net.forward(Var(x), &features);
    EXPECT_LT(max_abs_diff(logits.value().contiguous(), t.logits.contiguous()), 1e-4f);
    EXPECT_LT(max_abs_diff(features.value().contiguous(), t.features.contiguous()), 1e-4f);
    EXPECT_GT(max_abs(t.features), 1e-3f);  // not a degenerate all-zero network
    // Parameter names and count: 5 convs, 5 norms, the head.
    const auto sd = state_dict(net);
    EXPECT_EQ(sd.size(), 22u);
    EXPECT_EQ(sd.front().first, "convs.0.weight");
    EXPECT_EQ(sd.back().first, "head.bias");
}

TEST(EmojiClassifier, CrossEntropyByHandAndGradient) {
    // logits (0, ln 3): softmax (1/4, 3/4). Target 1: -ln(3/4); target 0: -ln(1/4). Mean of the two rows.
    const float l3 = std::log(3.0f);
    Var logits(Tensor::from_vector({0, l3, 0, l3}, {2, 2}), true);
    const Var loss = cross_entropy(logits, {1, 0});
    EXPECT_NEAR(loss.item(), 0.5 * (-std::log(0.75) - std::log(0.25)), 1e-6);
    backward(loss);
    // d/dlogits = (softmax - onehot) / B.
    const std::vector<float> g = logits.grad().to_vector();
    EXPECT_NEAR(g[0], 0.25 / 2, 1e-6);
    EXPECT_NEAR(g[1], (0.75 - 1) / 2, 1e-6);
    EXPECT_NEAR(g[2], (0.25 - 1) / 2, 1e-6);
    EXPECT_NEAR(g[3], 0.75 / 2, 1e-6);
    // Huge logits neither overflow nor give NaN.
    const Var big = cross_entropy(Var(Tensor::from_vector({1000, 0, -1000}, {1, 3})), {1});
    EXPECT_NEAR(big.item(), 1000.0, 1e-3);
    EXPECT_NEAR(cross_entropy(Var(Tensor::from_vector({1000, 0, -1000}, {1, 3})), {0}).item(), 0.0, 1e-6);
    EXPECT_THAT(error_of([&] { cross_entropy(Var(Tensor::zeros({2, 3})), {0, 3}); }),
                HasSubstr("target 3 of row 1 is not a class in [0, 3)"));
    EXPECT_THAT(error_of([&] { cross_entropy(Var(Tensor::zeros({2, 3})), {0}); }), HasSubstr("1 targets for 2 rows"));
}

TEST(EmojiClassifier, ClassAccuracyBalancedByHand) {
    // Rows predict 0, 0, 0, 1; targets 0, 0, 1, 1: accuracy 3/4; recall class 0 = 1, class 1 = 1/2 -> balanced 3/4.
    // Targets 0, 0, 0, 1 with predictions 0, 0, 0, 0: accuracy 3/4, balanced (1 + 0) / 2 = 1/2.
    const Tensor logits = Tensor::from_vector({1, 0, 1, 0, 1, 0, 0, 1}, {4, 2});
    const ClassAccuracy a = class_accuracy(logits, {0, 0, 1, 1});
    EXPECT_DOUBLE_EQ(a.accuracy, 0.75);
    EXPECT_DOUBLE_EQ(a.balanced_accuracy, 0.75);
    EXPECT_EQ(a.predicted, (std::vector<int64_t>{0, 0, 0, 1}));
    const ClassAccuracy b = class_accuracy(Tensor::from_vector({1, 0, 1, 0, 1, 0, 1, 0}, {4, 2}), {0, 0, 0, 1});
    EXPECT_DOUBLE_EQ(b.accuracy, 0.75);
    EXPECT_DOUBLE_EQ(b.balanced_accuracy, 0.5);
}

TEST(EmojiClassifier, ImagesToBatchResizes) {
    const Tensor b = emoji_images_to_batch({test::gradient_image(32, 32), test::gradient_image(64, 48)});
    EXPECT_EQ(b.shape(), (Shape{2, 3, 32, 32}));
    // Pixel (x=3, y=0) of the first: r = 3 -> 3 / 127.5 - 1.
    EXPECT_NEAR(b.select(0, 0).select(0, 0).select(0, 0).select(0, 3).item(), 3 / 127.5 - 1, 1e-6);
}

TEST(EmojiClassifier, TrainingLowersTheLossAndSavesALoadableFile) {
    TempDir dir("emoji_cls");
    write_synthetic_emoji(dir, 40);
    ClassifierTrainOptions o;
    o.data = dir.path().string();
    o.output = dir / "cls.safetensors";
    o.epochs = 6;
    o.batch = 12;  // 36 training images (concepts 0, 10, 20, 30 held out): 3 steps an epoch, 18 in all
    o.lr = 3e-3f;
    o.warmup = 2;
    int64_t calls = 0;
    const ClassifierTrainReport r = train_emoji_classifier(o, [&](const ClassifierTrainProgress& p) {
        ++calls;
        EXPECT_EQ(p.total, 18);
    });
    EXPECT_EQ(r.steps, 18);
    EXPECT_EQ(calls, 18);
    EXPECT_EQ(r.train_images, 36);
    EXPECT_EQ(r.heldout_images, 4);
    EXPECT_LT(r.last_loss, r.first_loss * 0.8) << r.first_loss << " -> " << r.last_loss;
    EXPECT_GE(r.train_accuracy, 0.5);

    const LoadedClassifier l = load_emoji_classifier(o.output, emoji_categories());
    EXPECT_EQ(l.net->num_classes(), 9);
    EXPECT_EQ(l.metadata.at("heldout_rule"), "concept_id % 10 == 0");
    EXPECT_EQ(l.metadata.at("train_images"), "36");
    EXPECT_NEAR(std::stod(l.metadata.at("train_accuracy")), r.train_accuracy, 1e-5);
}

TEST(EmojiClassifier, SaveLoadRoundTripsTheWeights) {
    TempDir dir("emoji_cls_rt");
    EmojiClassifier net(9);
    init_random(net, 4);
    save_emoji_classifier(dir / "c.safetensors", net, emoji_categories(), {{"note", "x"}});
    const LoadedClassifier l = load_emoji_classifier(dir / "c.safetensors");
    EXPECT_EQ(l.classes, emoji_categories());
    EXPECT_EQ(l.metadata.at("note"), "x");
    const Tensor x = random_images(2, 9);
    EXPECT_LT(max_abs_diff(l.net->forward(x).logits, net.forward(x).logits), 1e-6f);
}

TEST(EmojiClassifier, Errors) {
    TempDir dir("emoji_cls_err");
    // Missing file.
    EXPECT_THAT(error_of([&] { load_emoji_classifier(dir / "none.safetensors"); }),
                HasSubstr("classifier file '" + (dir / "none.safetensors") + "' not found"));
    // Wrong class count.
    EmojiClassifier five(5);
    init_random(five, 1);
    save_emoji_classifier(dir / "five.safetensors", five, {"a", "b", "c", "d", "e"});
    EXPECT_THAT(error_of([&] { load_emoji_classifier(dir / "five.safetensors", emoji_categories()); }),
                HasSubstr("has 5 classes, expected 9"));
    // Right count, other names.
    EmojiClassifier nine(9);
    init_random(nine, 1);
    std::vector<std::string> names = emoji_categories();
    names[0] = "Faces";
    save_emoji_classifier(dir / "names.safetensors", nine, names);
    EXPECT_THAT(error_of([&] { load_emoji_classifier(dir / "names.safetensors", emoji_categories()); }),
                HasSubstr("has the classes [\"Faces\""));
    // Some other safetensors file.
    save_safetensors(dir / "other.safetensors", {{"w", Tensor::zeros({2})}});
    EXPECT_THAT(error_of([&] { load_emoji_classifier(dir / "other.safetensors"); }),
                HasSubstr("is not an emoji classifier"));
    // A tensor too many.
    auto sd = state_dict(nine);
    sd.emplace_back("extra.weight", Tensor::zeros({1}));
    save_safetensors(dir / "extra.safetensors", sd,
                     {{"format", "nuance-emoji-classifier"}, {"classes", nlohmann::json(emoji_categories()).dump()}});
    EXPECT_THAT(error_of([&] { load_emoji_classifier(dir / "extra.safetensors"); }), HasSubstr("extra.weight"));
    EXPECT_THAT(error_of([&] { save_emoji_classifier(dir / "x.safetensors", nine, {"a"}); }),
                HasSubstr("1 class names for a classifier of 9 classes"));

    // Data problems.
    ClassifierTrainOptions o;
    o.data = dir / "no_such_folder";
    EXPECT_THAT(error_of([&] { train_emoji_classifier(o); }), HasSubstr("does not exist"));
    TempDir bad("emoji_cls_nocat");
    write_synthetic_emoji(bad, 3, /*with_category=*/false);
    o.data = bad.path().string();
    EXPECT_THAT(error_of([&] { train_emoji_classifier(o); }), HasSubstr("has no integer 'category_id'"));
    o.epochs = 0;
    EXPECT_THAT(error_of([&] { train_emoji_classifier(o); }), HasSubstr("epochs must be in 1..10000"));
    EXPECT_THAT(error_of([&] { EmojiClassifier(1); }), HasSubstr("class count must be in 2..100000"));
    EXPECT_THAT(error_of([&] { nine.forward(Tensor::zeros({1, 4, 32, 32})); }), HasSubstr("must be [B, 3, H, W]"));
}

}  // namespace
}  // namespace nuance
