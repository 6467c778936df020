// eval-quant (src/eval/quant_eval.h) on the golden UNet, a tiny random SD1.5, a synthetic emoji folder and a random
// classifier; and its errors.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "../test_util.h"
#include "../train/emoji_test_data.h"
#include "eval/quant_eval.h"
#include "models/random_model.h"
#include "train/emoji_classifier.h"
#include "train/emoji_dataset.h"

namespace nuance {
namespace {

using ::testing::HasSubstr;
using test::error_of;
using test::TempDir;

const std::string kGolden = std::string(NUANCE_TEST_DATA) + "/golden/unet_sd15";

TEST(QuantEval, GoldenAndImagesPerType) {
    TempDir dir("quant_eval");
    test::write_synthetic_emoji(dir, 12);
    EmojiClassifier net(9);
    init_random(net, 2);
    save_emoji_classifier(dir / "cls.safetensors", net, emoji_categories());
    RandomModelOptions ro;
    ro.tiny = true;
    ro.dtype = DType::F32;
    write_random_checkpoint(dir / "tiny.safetensors", ro);
    QuantEvalOptions o;
    o.model = dir / "tiny.safetensors";
    o.golden = kGolden;
    o.classifier = dir / "cls.safetensors";
    o.data = dir.path().string();
    o.work_dir = dir / "work";
    o.recipes = {"q8_0", "q2_k"};
    o.samples = 2;
    o.resolution = 64;
    o.steps = 2;
    o.sampler = "euler";
    int progress = 0;
    o.on_progress = [&](const QuantEvalProgress&) { ++progress; };
    const nlohmann::json r = evaluate_quantization(o);
    EXPECT_EQ(progress, 6);  // f32, q8_0, q2_k: 2 images each
    ASSERT_EQ(r["rows"].size(), 2u);
    const nlohmann::json &q8 = r["rows"][0], &q2 = r["rows"][1];
    EXPECT_EQ(q8["recipe"], "q8_0");
    // The golden numbers of GgufQuantize.UNetOutputErrorPerType (dequantized weights there, blocks here: the
    // products differ only in summation order).
    EXPECT_NEAR(q8["golden"]["max_abs"].get<double>(), 0.045384, 1e-4);
    EXPECT_NEAR(q2["golden"]["max_abs"].get<double>(), 1.690771, 1e-3);
    EXPECT_LT(q8["golden"]["mean_abs"].get<double>(), q2["golden"]["mean_abs"].get<double>());
    // Images: Q8_0 is closer to the f32 images than Q2_K; sizes as the block formats say (8.5 and 2.625 bits per
    // quantized weight, plus the F32 / F16 tensors every recipe keeps).
    EXPECT_GT(q8["psnr"].get<double>(), q2["psnr"].get<double>());
    EXPECT_GT(q8["ssim"].get<double>(), 0.9);
    EXPECT_LE(q8["ssim"].get<double>(), 1.0);
    EXPECT_GT(q8["bits_per_param"].get<double>(), 8.5);
    EXPECT_LT(q2["bits_per_param"].get<double>(), q8["bits_per_param"].get<double>());
    for (const auto& row : r["rows"]) {
        EXPECT_GE(row["agreement"].get<double>(), 0.0);
        EXPECT_LE(row["agreement"].get<double>(), 1.0);
        EXPECT_TRUE(row.contains("accuracy"));
    }
    EXPECT_TRUE(r.contains("reference_accuracy"));
    EXPECT_EQ(r["settings"]["samples"], 2);
    const std::string md = quant_eval_markdown(r);
    EXPECT_THAT(md, HasSubstr("| q8_0 | "));
    EXPECT_THAT(md, HasSubstr("| q2_k | "));
    // A type that changes no image (e.g. f16 of an f16 model) has no PSNR: the table says so.
    const nlohmann::json same = {{"rows", {{{"recipe", "f16"}, {"identical", true}, {"ssim", 1.0}}}}};
    EXPECT_THAT(quant_eval_markdown(same), HasSubstr("| f16 |  |  | ∞ (identical) | 1.0000 |"));
}

// --precision bf16: the quantized UNet's products as generate runs them (W8A8 for Q8_0 where the CPU has VNNI),
// against the same f32 reference: the activation rounding adds to the weights' error, within a few times it.
TEST(QuantEval, GoldenAtBf16Products) {
    TempDir dir("quant_eval_bf16");
    QuantEvalOptions o;
    o.golden = kGolden;
    o.work_dir = dir / "work";
    o.recipes = {"q8_0"};
    o.precision = Precision::BF16;
    const nlohmann::json r = evaluate_quantization(o);
    const double mx = r["rows"][0]["golden"]["max_abs"].get<double>(), mean = r["rows"][0]["golden"]["mean_abs"].get<double>();
    EXPECT_GT(mx, 0.045384 * 0.9);  // fp32 products: 0.045384 (QuantEval.GoldenAndImagesPerType)
    EXPECT_LT(mx, 0.15);
    EXPECT_LT(mean, 0.03);
    EXPECT_THAT(r["golden"]["what"].get<std::string>(), HasSubstr("quantized: bf16 products"));
    const test::CliRun bad = test::run_cli("eval-quant --no-images -q --types q8_0 --golden " + kGolden + " --precision fp16");
    EXPECT_NE(bad.code, 0);
    EXPECT_THAT(bad.out, HasSubstr("unknown precision 'fp16'"));
}

TEST(QuantEval, Errors) {
    TempDir dir("quant_eval_err");
    QuantEvalOptions o;
    o.work_dir = dir / "work";
    o.golden = kGolden;
    EXPECT_EQ(error_of([&] { evaluate_quantization(o); }), "eval-quant: no types given (--types)");
    o.recipes = {"q8_0", "q7"};
    EXPECT_THAT(error_of([&] { evaluate_quantization(o); }), HasSubstr("eval-quant: unknown type 'q7' (known: q8_0, "));
    o.recipes = {"q8_0"};
    o.data = dir.path().string();
    EXPECT_EQ(error_of([&] { evaluate_quantization(o); }), "eval-quant: --data needs --classifier");
    o.data.clear();
    o.samples = 0;
    EXPECT_EQ(error_of([&] { evaluate_quantization(o); }), "eval-quant: samples must be in 1..100000, got 0");
    o.samples = 1;
    o.work_dir.clear();
    EXPECT_EQ(error_of([&] { evaluate_quantization(o); }), "eval-quant: no work folder for the quantized files");
    const test::CliRun bad = test::run_cli("eval-quant --types q8_0,zz --no-images --golden " + kGolden);
    EXPECT_EQ(bad.code, 2);
    EXPECT_THAT(bad.out, HasSubstr("usage: --types: unknown type 'zz'"));
    const test::CliRun none = test::run_cli("eval-quant --no-images");
    EXPECT_THAT(none.out, HasSubstr("nothing to measure"));
    const test::CliRun no_dir = test::run_cli("eval-quant --no-images --golden " + kGolden + " --json " +
                                              (dir / "missing/r.json"));
    EXPECT_THAT(no_dir.out, HasSubstr("folder '" + (dir / "missing") + "' does not exist"));
    const test::CliRun ok = test::run_cli("eval-quant --no-images -q --types q8_0 --golden " + kGolden);
    EXPECT_EQ(ok.code, 0) << ok.out;
    EXPECT_THAT(ok.out, HasSubstr("| q8_0 |  | 0.0454 / 0.0079 |"));
}

}  // namespace
}  // namespace nuance
