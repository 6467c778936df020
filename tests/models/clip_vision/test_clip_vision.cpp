// CLIP image tower + CLIPImageProcessor + CLIP score: the golden case (transformers / PIL / torchmetrics), config
// detection, the processor's crop/pad rule, and hostile inputs.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "eval/clip_score.h"
#include "eval/golden/clip_vision_golden.h"
#include "io/safetensors.h"
#include "models/clip_vision/clip_vision.h"
#include "ops/ops.h"

#include "../../test_util.h"

using namespace nuance;
using ::testing::HasSubstr;
using nuance::test::error_of;

namespace {
const std::string kDir = std::string(NUANCE_TEST_DATA) + "/golden/clip_vision";
std::map<std::string, Tensor> vision_tensors() { return load_safetensors(kDir + "/clip_vision.safetensors").tensors; }
}  // namespace

TEST(ClipVisionGolden, MatchesTransformersPilAndTorchmetrics) {
    const auto lines = check_golden_clip_vision(kDir);
    EXPECT_GE(lines.size(), 20u);
    for (const auto& l : lines)
        EXPECT_TRUE(l.pass && !l.skip) << l.name << " max_abs " << l.max_abs << " atol " << l.atol << " " << l.reason;
}

TEST(ClipVisionConfig, DetectsTheGoldenShapes) {
    const ClipVisionConfig c = ClipVisionConfig::detect(vision_tensors());
    EXPECT_EQ(c.hidden, 32);
    EXPECT_EQ(c.intermediate, 64);
    EXPECT_EQ(c.layers, 3);
    EXPECT_EQ(c.patch, 14);
    EXPECT_EQ(c.image_size, 112);
    EXPECT_EQ(c.projection_dim, 24);
    EXPECT_EQ(c.heads, 4);  // hidden 32: the tiny-model rule
    // OpenAI ViT-L/14: hidden 1024 -> 16 heads, quick_gelu; OpenCLIP ViT-H: 1280 -> 16 heads, gelu
    auto fake = [](int64_t d) {
        std::map<std::string, Tensor> t;
        t["vision_model.embeddings.class_embedding"] = Tensor::zeros({d});
        t["vision_model.embeddings.patch_embedding.weight"] = Tensor::zeros({d, 3, 14, 1}).expand({d, 3, 14, 14});
        t["vision_model.embeddings.position_embedding.weight"] = Tensor::zeros({257, 1}).expand({257, d});
        t["vision_model.encoder.layers.0.self_attn.q_proj.weight"] = Tensor::zeros({1, 1});
        t["vision_model.encoder.layers.0.mlp.fc1.weight"] = Tensor::zeros({4 * d, 1});
        return ClipVisionConfig::detect(t);
    };
    const ClipVisionConfig l = fake(1024), h = fake(1280);
    EXPECT_EQ(l.heads, 16);
    EXPECT_EQ(l.act, ClipAct::QuickGelu);
    EXPECT_EQ(l.image_size, 224);
    EXPECT_EQ(h.heads, 16);
    EXPECT_EQ(h.act, ClipAct::Gelu);
}

TEST(ClipVisionConfig, HostileShapesAndConfigs) {
    auto t = vision_tensors();
    t["vision_model.embeddings.position_embedding.weight"] = Tensor::zeros({60, 32});
    EXPECT_THAT(error_of([&] { ClipVisionConfig::detect(t); }),
                HasSubstr("position_embedding has 60 rows, not 1 + a square number of patches"));
    t = vision_tensors();
    t.erase("vision_model.embeddings.class_embedding");
    EXPECT_THAT(error_of([&] { ClipVisionConfig::detect(t); }),
                HasSubstr("tensor 'vision_model.embeddings.class_embedding' not found"));
    ClipVisionConfig c = ClipVisionConfig::detect(vision_tensors());
    EXPECT_THAT(error_of([&] { c.apply_hf_config({{"num_attention_heads", 5}}); }),
                HasSubstr("CLIP vision config: num_attention_heads = 5 does not divide hidden size 32"));
    EXPECT_THAT(error_of([&] { c.apply_hf_config({{"vision_config", {{"image_size", 224}}}}); }),
                HasSubstr("CLIP vision config: image_size = 224 but the weights have 112"));
    const ClipVisionModel m = load_clip_vision(vision_tensors(), "v.safetensors", nlohmann::json());
    EXPECT_THAT(error_of([&] { m.forward(Tensor::zeros({1, 3, 224, 224})); }),
                HasSubstr("CLIP vision encoder: pixel_values must be [B, 3, 112, 112], got F32[1, 3, 224, 224]"));
    EXPECT_THAT(error_of([&] { m.forward(Tensor::zeros({1, 3, 112, 112}), 4); }),
                HasSubstr("stop_at_layer 4 is not in 1..3 (or -1)"));
}

TEST(ClipImageProcessor, CropPadsSmallImagesLikeTransformers) {
    // No resize, crop 4x4 of a 2x3 image: transformers pads to 4x4 with ceil((4-2)/2) = 1 row above and
    // ceil((4-3)/2) = 1 column left, so pixel (0,0) lands at (1,1); the rest is 0 (then normalised).
    ClipImageProcessor p;
    p.do_resize = false;
    p.crop_height = p.crop_width = 4;
    p.do_normalize = false;
    Image im;
    im.width = 3;
    im.height = 2;
    im.pixels.assign(18, 255);
    const std::vector<float> v = p({im}).to_vector();
    ASSERT_EQ(v.size(), 48u);
    EXPECT_EQ(v[0], 0.0f);
    EXPECT_EQ(v[1 * 4 + 1], 1.0f);
    EXPECT_EQ(v[2 * 4 + 3], 1.0f);
    EXPECT_EQ(v[3 * 4 + 1], 0.0f);
    EXPECT_EQ(v[1 * 4 + 0], 0.0f);
}

TEST(ClipImageProcessor, HostileConfigs) {
    using nlohmann::json;
    EXPECT_THAT(error_of([] { ClipImageProcessor::from_json(json{{"size", {{"height", 224}}}}); }),
                HasSubstr("'size' {\"height\":224} has no 'shortest_edge'"));
    EXPECT_THAT(error_of([] { ClipImageProcessor::from_json(json{{"size", 0}}); }),
                HasSubstr("CLIP image processor: 'size' = 0 must be in 1..8192"));
    EXPECT_THAT(error_of([] { ClipImageProcessor::from_json(json{{"resample", 2}}); }),
                HasSubstr("resample 2 is not supported (3 = bicubic)"));
    EXPECT_THAT(error_of([] { ClipImageProcessor::from_json(json{{"image_std", {0.5, 0, 0.5}}}); }),
                HasSubstr("'image_std'[1] = 0 is not a usable number"));
    EXPECT_THAT(error_of([] { ClipImageProcessor::from_json(json{{"crop_size", {{"height", 99999}, {"width", 2}}}}); }),
                HasSubstr("'crop_size.height' = 99999 must be in 1..8192"));
    Image tall;
    tall.width = 1;
    tall.height = 60000;
    tall.pixels.assign(60000 * 3, 0);
    EXPECT_THAT(error_of([&] { ClipImageProcessor::for_image_size(224).resize(tall); }),
                HasSubstr("a 1x60000 image would be resized to a long side of 1.344e+07 pixels"));
}

TEST(ClipScore, TorchmetricsClampsTheMeanNotEachPair) {
    EXPECT_DOUBLE_EQ(clip_score_of({30.0, -10.0}), 10.0);
    EXPECT_DOUBLE_EQ(clip_score_of({-30.0, 10.0}), 0.0);
    EXPECT_THAT(error_of([] { clip_score_of({}); }), HasSubstr("CLIP score: no image/caption pairs"));
    const Tensor a = Tensor::from_vector({1, 0, 0, 1}, {2, 2}), b = Tensor::from_vector({2, 0, -1, 0}, {2, 2});
    const std::vector<double> s = clip_pair_scores(a, b);
    EXPECT_DOUBLE_EQ(s[0], 100.0);
    EXPECT_DOUBLE_EQ(s[1], 0.0);
    EXPECT_THAT(error_of([&] { clip_pair_scores(a, Tensor::zeros({3, 2})); }),
                HasSubstr("CLIP score: 2 images (F32[2, 2]) and 3 captions (F32[3, 2]) do not pair up"));
}

TEST(ClipScore, LongCaptionsAreSlicedLikeTorchmetrics) {
    std::string longc;
    for (int i = 0; i < 100; ++i) longc += "cat ";
    const Tensor ids = clip_score_ids({"a dog", longc});
    ASSERT_EQ(ids.shape(), (Shape{2, 77}));
    const auto v = ids.to_ids();
    EXPECT_EQ(v[0], 49406);
    EXPECT_EQ(v[3], 49407);    // "a dog" then EOS
    EXPECT_EQ(v[76], 49407);   // padded with EOS
    EXPECT_NE(v[77 + 76], 49407);  // the long caption lost its EOS, as torchmetrics' slicing does
}
