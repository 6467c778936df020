// `nuance eval lpips | clip-score | pr` end to end: results equal the library's, JSON reports, and the errors for
// unpaired folders, size mismatches, prompt counts and bad flags. Inputs are built here from the golden cases.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "eval/clip_score.h"
#include "eval/feature_extractor.h"
#include "eval/image_folder.h"
#include "eval/lpips.h"
#include "eval/precision_recall.h"
#include "io/image.h"
#include "io/json_file.h"
#include "io/npy.h"
#include "io/safetensors.h"
#include "models/default_model.h"

#include "../test_paths.h"
#include "../test_util.h"

using namespace nuance;
using ::testing::HasSubstr;
using nuance::test::error_of;
using nuance::test::run_cli;
namespace fs = std::filesystem;

namespace {
const std::string kData = std::string(NUANCE_TEST_DATA);

class EvalCli : public ::testing::Test {
protected:
    void SetUp() override {
        dir_ = fs::path(NUANCE_SCRATCH_DIR) / ("nuance_evalcli_" + std::to_string(::getpid()));
        fs::remove_all(dir_);
        fs::create_directories(dir_ / "a");
        fs::create_directories(dir_ / "b");
    }
    void TearDown() override { fs::remove_all(dir_); }
    std::string p(const std::string& rel) const { return (dir_ / rel).string(); }
    static Image noise(int w, int h, uint32_t seed) {
        Image im;
        im.width = w;
        im.height = h;
        im.pixels.resize((size_t)w * h * 3);
        uint32_t s = seed;
        for (auto& v : im.pixels) v = (uint8_t)((s = s * 1664525u + 1013904223u) >> 24);
        return im;
    }
    fs::path dir_;
};

Tensor lpips_in(const Image& im) {  // the lpips package's im2tensor
    Tensor t = Tensor::empty({1, 3, im.height, im.width});
    const size_t hw = (size_t)im.width * im.height;
    for (size_t i = 0; i < hw; ++i)
        for (int c = 0; c < 3; ++c) t.data<float>()[c * hw + i] = (float)im.pixels[i * 3 + c] / 127.5f - 1.0f;
    return t;
}
}  // namespace

TEST_F(EvalCli, LpipsMatchesTheLibraryAndWritesJson) {
    const std::string w = kData + "/golden/lpips/lpips_alex.safetensors";
    double sum = 0;
    const Lpips m = load_lpips(LpipsNet::Alex, {w});
    for (int i = 0; i < 3; ++i) {
        const Image x = noise(64, 48, 1 + i), y = noise(64, 48, 100 + i);
        write_png(p("a/" + std::to_string(i) + ".png"), x);
        write_png(p("b/" + std::to_string(i) + ".png"), y);
        sum += m.forward(lpips_in(x), lpips_in(y)).dist.item();
    }
    const auto r = run_cli("eval lpips -q " + p("a") + " " + p("b") + " --weights " + w + " --json " + p("r.json"));
    ASSERT_EQ(r.code, 0) << r.out;
    EXPECT_THAT(r.out, HasSubstr("LPIPS (alex, v0.1): "));
    EXPECT_THAT(r.out, HasSubstr("| LPIPS (alex) ↓ | "));
    const nlohmann::json j = read_json_object(p("r.json"));
    EXPECT_EQ(j["pairs"], 3);
    EXPECT_NEAR(j["mean"].get<double>(), sum / 3, 1e-7);
    EXPECT_EQ(j["per_image"][1]["file"], "1.png");
}

TEST_F(EvalCli, LpipsRejectsUnpairedAndMismatchedImages) {
    const std::string w = " --weights " + kData + "/golden/lpips/lpips_alex.safetensors";
    write_png(p("a/x.png"), noise(64, 64, 1));
    write_png(p("b/x.png"), noise(64, 32, 2));
    auto r = run_cli("eval lpips -q " + p("a") + " " + p("b") + w);
    EXPECT_EQ(r.code, 1);
    EXPECT_THAT(r.out, HasSubstr("/a/x.png' is 64x64 but '" + p("b/x.png") + "' is 64x32 (LPIPS compares images of "
                                 "the same size)"));
    write_png(p("a/y.png"), noise(64, 64, 3));
    r = run_cli("eval lpips -q " + p("a") + " " + p("b") + w);
    EXPECT_THAT(r.out, HasSubstr("'y.png' is in '" + p("a") + "' but not in '" + p("b") +
                                 "' (1 of 2 images have no pair; pairs are matched by file name)"));
    r = run_cli("eval lpips -q " + p("a") + " " + p("b") + w + " --net squeeze");
    EXPECT_THAT(r.out, HasSubstr("LPIPS net 'squeeze' is not supported (alex | vgg)"));
    r = run_cli("eval lpips -q " + p("a") + " " + p("nope") + w);
    EXPECT_THAT(r.out, HasSubstr("image folder '" + p("nope") + "' does not exist or is not a folder"));
    r = run_cli("eval lpips -q " + p("a") + " " + p("b") + w + " --json " + p("no/such/r.json"));
    EXPECT_THAT(r.out, HasSubstr("report file '" + p("no/such/r.json") + "': folder '" + p("no/such") +
                                 "' does not exist"));
}

TEST_F(EvalCli, ClipScoreFromPromptsAndFromPngParameters) {
    // The golden CLIPModel with its config (2 heads, quick_gelu) as a transformers folder.
    const std::string g = kData + "/golden/clip_vision/";
    fs::create_directories(p("clip"));
    fs::copy_file(g + "clip_model.safetensors", p("clip/model.safetensors"));
    const nlohmann::json cj = read_json_object(g + "case.json")["models"]["clip_score_model"]["config"];
    std::ofstream(p("clip/config.json")) << cj.dump();
    fs::copy_file(g + "preprocessor_config.json", p("clip/preprocessor_config.json"));
    const Image x = noise(150, 100, 5), y = noise(90, 160, 6);
    write_png(p("a/0.png"), x, {{"parameters", "a photo of a cat\nNegative prompt: blurry\nSteps: 20, Seed: 1"}});
    write_png(p("a/1.png"), y, {{"parameters", "a red house\nSteps: 20, Seed: 2"}});
    std::ofstream(p("prompts.txt")) << "a photo of a cat\r\n\na red house\n";
    const auto scorer = ClipScorer::load(p("clip/model.safetensors"), cj, read_json_object(g + "preprocessor_config.json"));
    const double want =
        clip_score_of(clip_pair_scores(scorer->image_embeds({x, y}), scorer->text_embeds({"a photo of a cat", "a red house"})));
    for (const std::string how : {" --prompts " + p("prompts.txt"), std::string(" --captions-from-png")}) {
        const auto r = run_cli("eval clip-score -q " + p("a") + how + " --clip " + p("clip") + " --json -");
        ASSERT_EQ(r.code, 0) << r.out;
        const nlohmann::json j = nlohmann::json::parse(r.out);
        EXPECT_NEAR(j["clip_score"].get<double>(), want, 1e-4) << how;
        EXPECT_EQ(j["per_image"][0]["caption"], "a photo of a cat");
        EXPECT_EQ(j["per_image"][1]["caption"], "a red house");
    }
    std::ofstream(p("three.txt")) << "a\nb\nc\n";
    auto r = run_cli("eval clip-score -q " + p("a") + " --prompts " + p("three.txt") + " --clip " + p("clip"));
    EXPECT_THAT(r.out, HasSubstr("prompt file '" + p("three.txt") + "' has 3 prompts for the 2 images of '" + p("a")));
    r = run_cli("eval clip-score -q " + p("a") + " --clip " + p("clip"));
    EXPECT_THAT(r.out, HasSubstr("needs exactly one of --prompts FILE and --captions-from-png"));
    write_png(p("b/0.png"), x);
    r = run_cli("eval clip-score -q " + p("b") + " --captions-from-png --clip " + p("clip"));
    EXPECT_THAT(r.out, HasSubstr("'" + p("b/0.png") + "' has no \"parameters\" text chunk to take the caption from"));
}

// -m: the model generates, then each image is scored against the prompt it was made from; the same as scoring the
// saved samples in-process.
TEST_F(EvalCli, ClipScoreOfAModelsSamples) {
    const std::string g = kData + "/golden/clip_vision/";
    fs::create_directories(p("clip"));
    fs::copy_file(g + "clip_model.safetensors", p("clip/model.safetensors"));
    const nlohmann::json cj = read_json_object(g + "case.json")["models"]["clip_score_model"]["config"];
    std::ofstream(p("clip/config.json")) << cj.dump();
    fs::copy_file(g + "preprocessor_config.json", p("clip/preprocessor_config.json"));
    std::ofstream(p("prompts.txt")) << "red apple\nblue heart\n";
    const std::string model = default_model_path();
    ASSERT_FALSE(model.empty());
    auto r = run_cli("eval clip-score -q -t 1 -m " + model + " --prompts " + p("prompts.txt") + " --samples 3 --steps 2 -s 5 "
                     "--clip " + p("clip") + " --save-samples " + p("s") + " --json " + p("c.json"));
    ASSERT_EQ(r.code, 0) << r.out;
    EXPECT_THAT(r.out, HasSubstr("| CLIP score"));
    const nlohmann::json j = read_json_object(p("c.json"));
    ASSERT_EQ(j["per_image"].size(), 3u);
    const auto scorer = load_clip_scorer(p("clip"));
    const std::vector<std::string> caps = {"red apple", "blue heart", "red apple"};
    std::vector<Image> ims;
    for (int i = 0; i < 3; ++i) {
        char name[32];
        std::snprintf(name, sizeof name, "s/%06d.png", i);
        ims.push_back(read_image(p(name)));
        EXPECT_EQ(j["per_image"][(size_t)i]["caption"], caps[(size_t)i]);
        EXPECT_EQ(j["per_image"][(size_t)i]["seed"], 5 + i);
    }
    const std::vector<double> want = scorer->pair_scores(ims, caps);
    for (size_t i = 0; i < 3; ++i) EXPECT_NEAR(j["per_image"][i]["clip_score"].get<double>(), want[i], 1e-4);
    EXPECT_NEAR(j["clip_score"].get<double>(), clip_score_of(want), 1e-4);
    // Errors: a folder and -m, -m without --samples, --captions-from-png with -m.
    r = run_cli("eval clip-score -q " + p("a") + " -m " + model + " --prompts " + p("prompts.txt") + " --samples 1 --clip " +
                p("clip"));
    EXPECT_EQ(r.code, 2) << r.out;
    EXPECT_THAT(r.out, HasSubstr("clip-score takes a folder or -m MODEL, not both"));
    r = run_cli("eval clip-score -q -m " + model + " --prompts " + p("prompts.txt") + " --clip " + p("clip"));
    EXPECT_EQ(r.code, 2) << r.out;
    EXPECT_THAT(r.out, HasSubstr("-m MODEL needs --samples N"));
    r = run_cli("eval clip-score -q -m " + model + " --captions-from-png --samples 1 --clip " + p("clip"));
    EXPECT_EQ(r.code, 2) << r.out;
    EXPECT_THAT(r.out, HasSubstr("--captions-from-png reads folders"));
    r = run_cli("eval clip-score -q --clip " + p("clip"));
    EXPECT_EQ(r.code, 2) << r.out;
    EXPECT_THAT(r.out, HasSubstr("clip-score needs an image folder, or -m MODEL"));
}

TEST_F(EvalCli, PrecisionRecallOnNpyFeatures) {
    const auto t = load_safetensors(kData + "/eval/prdc_case.safetensors").tensors;
    write_npy(p("real.npy"), t.at("real").contiguous());
    write_npy(p("fake.npy"), t.at("fake").contiguous());
    const PrecisionRecall want = precision_recall(t.at("real"), t.at("fake"), 3);
    auto r = run_cli("eval pr " + p("real.npy") + " " + p("fake.npy") + " --json -");
    ASSERT_EQ(r.code, 0) << r.out;
    const nlohmann::json j = nlohmann::json::parse(r.out);
    EXPECT_DOUBLE_EQ(j["precision"].get<double>(), want.precision);
    EXPECT_DOUBLE_EQ(j["recall"].get<double>(), want.recall);
    EXPECT_EQ(j["k"], 3);
    r = run_cli("eval pr " + p("real.npy") + " " + p("fake.npy") + " -k 200");
    EXPECT_THAT(r.out, HasSubstr("k = 200 needs more than k real samples (got 120)"));
    r = run_cli("eval pr " + p("a") + " " + p("fake.npy"));
    EXPECT_THAT(r.out, HasSubstr("usage: --inception FILE is required"));
    r = run_cli("eval pr " + p("real.npy") + " " + p("fake.npy") + " --inception x.pth");
    EXPECT_EQ(r.code, 2) << r.out;
    EXPECT_THAT(r.out, HasSubstr("are both feature files"));
}

// Folders: Inception pool3 of each image (clean resize), then the same k-NN manifolds as on .npy features; a folder
// against a feature file works too.
TEST_F(EvalCli, PrecisionRecallOnImageFolders) {
    const std::string inception = kData + "/golden/fid_inception/inception.safetensors";
    const ImageSource src = ImageSource::folder(kData + "/eval/is_reference/images");
    for (int i = 0; i < 8; ++i) write_png(p(std::string(i < 4 ? "a/" : "b/") + std::to_string(i) + ".png"), src.get(i));
    const auto fx = make_inception_extractor(inception, "clean");
    const Tensor fa = extract_features(*fx, ImageSource::folder(p("a")), 4, false).features;
    const Tensor fb = extract_features(*fx, ImageSource::folder(p("b")), 4, false).features;
    const PrecisionRecall want = precision_recall(fa, fb, 2);
    auto r = run_cli("eval pr -q -t 1 " + p("a") + " " + p("b") + " -k 2 --batch 4 --inception " + inception + " --json -");
    ASSERT_EQ(r.code, 0) << r.out;
    nlohmann::json j = nlohmann::json::parse(r.out);
    EXPECT_NEAR(j["precision"].get<double>(), want.precision, 1e-12);
    EXPECT_NEAR(j["recall"].get<double>(), want.recall, 1e-12);
    EXPECT_NEAR(j["density"].get<double>(), want.density, 1e-12);
    EXPECT_NEAR(j["coverage"].get<double>(), want.coverage, 1e-12);
    EXPECT_EQ(j["dim"], 2048);
    write_npy(p("b.npy"), fb);
    r = run_cli("eval pr -q -t 1 " + p("a") + " " + p("b.npy") + " -k 2 --batch 4 --inception " + inception + " --json -");
    ASSERT_EQ(r.code, 0) << r.out;
    j = nlohmann::json::parse(r.out);
    EXPECT_NEAR(j["recall"].get<double>(), want.recall, 1e-12);
    fs::create_directories(p("empty"));
    r = run_cli("eval pr -q " + p("empty") + " " + p("b") + " --inception " + inception);
    EXPECT_EQ(r.code, 1) << r.out;
    EXPECT_THAT(r.out, HasSubstr("holds no PNG or JPEG files"));
}

TEST(ImageFolder, CaptionFromInfotext) {
    EXPECT_EQ(caption_from_infotext("a cat\nNegative prompt: dog\nSteps: 20"), "a cat");
    EXPECT_EQ(caption_from_infotext("a cat\nover two lines\nSteps: 20, Sampler: Euler"), "a cat\nover two lines");
    EXPECT_EQ(caption_from_infotext("just a prompt"), "just a prompt");
    EXPECT_EQ(caption_from_infotext("Steps: 20"), "");
}
