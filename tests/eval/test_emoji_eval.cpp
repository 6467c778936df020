// eval-emoji end to end on a synthetic emoji folder, a random classifier and a tiny random SD1.5 (src/eval/emoji_eval.h),
// and the CLI's train-classifier / eval-emoji errors.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <map>

#include "../test_util.h"
#include "../train/emoji_test_data.h"
#include "eval/emoji_eval.h"
#include "io/image.h"
#include "models/random_model.h"
#include "train/emoji_classifier.h"
#include "train/emoji_dataset.h"

namespace nuance {
namespace {

using ::testing::HasSubstr;
using test::error_of;
using test::TempDir;

class EmojiEval : public ::testing::Test {
protected:
    static void SetUpTestSuite() {
        dir_ = new TempDir("emoji_eval");
        test::write_synthetic_emoji(*dir_, 24);
        EmojiClassifier net(9);
        init_random(net, 2);
        save_emoji_classifier(*dir_ / "cls.safetensors", net, emoji_categories());
        RandomModelOptions ro;
        ro.tiny = true;
        ro.dtype = DType::F32;
        write_random_checkpoint(*dir_ / "tiny.safetensors", ro);
    }
    static void TearDownTestSuite() {
        delete dir_;
        dir_ = nullptr;
    }
    static EmojiEvalOptions options() {
        EmojiEvalOptions o;
        o.classifier = *dir_ / "cls.safetensors";
        o.data = dir_->path().string();
        o.samples = 4;
        o.resolution = 64;  // the tiny SD1.5's UNet needs latents of at least 8x8
        o.steps = 2;
        o.sampler = "euler";
        o.precision = Precision::FP32;
        return o;
    }
    static inline TempDir* dir_ = nullptr;
};

TEST_F(EmojiEval, RealOnly) {
    const nlohmann::json r = evaluate_emoji(options());
    EXPECT_EQ(r["data"]["images"], 24);
    EXPECT_EQ(r["real"]["heldout"]["images"], 3);  // concepts 0, 10, 20
    EXPECT_EQ(r["real"]["train_split"]["images"], 21);
    EXPECT_EQ(r["real"]["floor"]["images"], (nlohmann::json{4, 20}));
    EXPECT_TRUE(std::isfinite(r["real"]["floor"]["fid"].get<double>()));
    EXPECT_GE(r["real"]["floor"]["fid"].get<double>(), -1e-9);
    EXPECT_TRUE(r["real"].contains("heldout_vs_rest"));
    EXPECT_FALSE(r.contains("model"));
    EXPECT_EQ(r["classifier"]["classes"].size(), 9u);
}

TEST_F(EmojiEval, ModelUntrainedAndSheet) {
    EmojiEvalOptions o = options();
    o.model = *dir_ / "tiny.safetensors";
    o.random_model = true;
    o.sheet = *dir_ / "sheet.png";
    o.sheet_prompts = {"red disc, noto style", "blue bar"};
    o.sheet_scale = 1;
    std::map<std::string, int64_t> calls;
    o.on_progress = [&](const EmojiEvalProgress& p) { calls[p.phase] = p.done; };
    const nlohmann::json r = evaluate_emoji(o);
    for (const char* k : {"model", "untrained"}) {
        SCOPED_TRACE(k);
        ASSERT_TRUE(r.contains(k));
        EXPECT_EQ(r[k]["images"], 4);
        const double acc = r[k]["accuracy"].get<double>();
        EXPECT_TRUE(acc >= 0 && acc <= 1);
        EXPECT_TRUE(std::isfinite(r[k]["fid"].get<double>()));
        EXPECT_TRUE(std::isfinite(r[k]["kid"].get<double>()));
        EXPECT_TRUE(r[k]["accuracy_by_style"].contains("noto"));
        EXPECT_TRUE(r[k]["accuracy_by_style"].contains("twemoji"));
    }
    // Different weights, same prompts and seeds: different images, so different features.
    EXPECT_NE(r["model"]["fid"].get<double>(), r["untrained"]["fid"].get<double>());
    EXPECT_EQ(r["settings"]["precision"], "fp32");
    EXPECT_EQ(calls["model"], 4);
    EXPECT_EQ(calls["untrained"], 4);
    EXPECT_EQ(calls["sheet"], 2);
    // Two 64 px cells, scale 1: (64 + 4) * 2 + 4 wide, 64 + 2 + 3 * 9 + 4 + 4 tall.
    const Image sheet = read_image(o.sheet);
    EXPECT_EQ(sheet.width, 140);
    EXPECT_EQ(sheet.height, 101);
}

TEST_F(EmojiEval, Errors) {
    EmojiEvalOptions o = options();
    o.classifier = *dir_ / "missing.safetensors";
    EXPECT_THAT(error_of([&] { evaluate_emoji(o); }), HasSubstr("not found"));
    o = options();
    o.data = *dir_ / "no_data";
    EXPECT_THAT(error_of([&] { evaluate_emoji(o); }), HasSubstr("does not exist"));
    o = options();
    EmojiClassifier three(3);
    init_random(three, 1);
    save_emoji_classifier(*dir_ / "three.safetensors", three, {"a", "b", "c"});
    o.classifier = *dir_ / "three.safetensors";
    EXPECT_THAT(error_of([&] { evaluate_emoji(o); }), HasSubstr("has 3 classes, expected 9"));
    o = options();
    o.sheet = *dir_ / "s.png";
    o.model = *dir_ / "tiny.safetensors";
    EXPECT_THAT(error_of([&] { evaluate_emoji(o); }), HasSubstr("--sheet needs --sheet-prompts"));
    o = options();
    o.random_model = true;
    EXPECT_THAT(error_of([&] { evaluate_emoji(o); }), HasSubstr("--random-model needs -m"));
    o = options();
    o.model = *dir_ / "tiny.safetensors";
    o.sampler = "no_such_sampler";
    EXPECT_THAT(error_of([&] { evaluate_emoji(o); }), HasSubstr("no_such_sampler"));
}

TEST_F(EmojiEval, Cli) {
    const std::string data = dir_->path().string();
    test::CliRun r = test::run_cli("eval-emoji --classifier " + (*dir_ / "missing.safetensors") + " --data " + data);
    EXPECT_EQ(r.code, 1) << r.out;
    EXPECT_THAT(r.out, HasSubstr("not found"));
    r = test::run_cli("train-classifier --data " + data);
    EXPECT_EQ(r.code, 2) << r.out;
    EXPECT_THAT(r.out, HasSubstr("--output is required"));
    r = test::run_cli("eval-emoji --classifier x --sheet-prompts 'a|b'");
    EXPECT_EQ(r.code, 2) << r.out;
    EXPECT_THAT(r.out, HasSubstr("--sheet-prompts needs --sheet"));
    // A real (one-epoch) run, then the real-only measurement with it, written as JSON.
    const std::string cls = *dir_ / "cli_cls.safetensors", json = *dir_ / "r.json";
    r = test::run_cli("train-classifier -q --epochs 1 --batch 8 --data " + data + " -o " + cls);
    ASSERT_EQ(r.code, 0) << r.out;
    EXPECT_THAT(r.out, HasSubstr("held-out accuracy"));
    r = test::run_cli("eval-emoji -q --classifier " + cls + " --data " + data + " --json " + json);
    ASSERT_EQ(r.code, 0) << r.out;
    EXPECT_THAT(r.out, HasSubstr("real floor: FID"));
    std::ifstream f(json);
    const nlohmann::json j = nlohmann::json::parse(f);
    EXPECT_EQ(j["real"]["heldout"]["images"], 3);
}

}  // namespace
}  // namespace nuance
