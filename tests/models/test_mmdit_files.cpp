// SD3 transformer files: every layout people have (original single file with or without its prefix, F16, bare
// diffusers file, diffusers folders) and the errors of hostile or incomplete ones. Each hostile file is built here
// from the golden weights.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <unistd.h>

#include "io/safetensors.h"
#include "io/weights.h"
#include "models/mmdit/mmdit_load.h"
#include "models/mmdit/mmdit_original.h"
#include "ops/elementwise.h"
#include "../test_util.h"

using namespace nuance;
using ::testing::HasSubstr;
using nuance::test::error_of;
namespace fs = std::filesystem;

namespace {

const std::string kGolden = std::string(NUANCE_TEST_DATA) + "/golden/";
using TensorMap = std::map<std::string, Tensor>;

class MMDiTFiles : public ::testing::Test {
protected:
    void SetUp() override {
        dir_ = fs::path(NUANCE_SCRATCH_DIR) / ("nuance_mmdit_" + std::to_string(::getpid()) + "_" +
                                            ::testing::UnitTest::GetInstance()->current_test_info()->name());
        fs::create_directories(dir_);
        io_ = load_safetensors(kGolden + "sd3_transformer/io.safetensors").tensors;
    }
    void TearDown() override { fs::remove_all(dir_); }
    std::string path(const std::string& name) const { return (dir_ / name).string(); }
    std::string save(const std::string& name, const TensorMap& t) {
        save_safetensors(path(name), std::vector<std::pair<std::string, Tensor>>(t.begin(), t.end()));
        return path(name);
    }
    static TensorMap original(const std::string& m) {
        return load_safetensors(kGolden + "original_sd3/" + m + "_original.safetensors").tensors;
    }
    // max |forward - golden| of model m ("sd3" / "sd35").
    float golden_diff(const SD3Transformer2DModel& model, const std::string& m) const {
        auto in = [&](const char* k) { return io_.at(m + "." + k); };
        const Tensor y = model.forward(in("hidden_states"), in("timestep"), in("encoder_hidden_states"),
                                       in("pooled_projections"));
        return max_abs_diff(y, in("out"));
    }
    fs::path dir_;
    TensorMap io_;
};

const char* kSd3Config = R"({"_class_name": "SD3Transformer2DModel", "num_layers": 2, "attention_head_dim": 8,
  "num_attention_heads": 4, "joint_attention_dim": 32, "caption_projection_dim": 32, "pooled_projection_dim": 24,
  "patch_size": 2, "in_channels": 16, "out_channels": 16, "pos_embed_max_size": 24, "qk_norm": null})";

}  // namespace

TEST_F(MMDiTFiles, AllInOneFileWithOtherComponentsAndBarePrefixlessFile) {
    // An all-in-one file also holds text encoders and the VAE: only model.diffusion_model.* is the transformer.
    TensorMap t = original("sd35");
    t.emplace("text_encoders.clip_l.transformer.text_model.final_layer_norm.weight", Tensor::zeros({8}));
    t.emplace("first_stage_model.decoder.conv_in.weight", Tensor::zeros({4, 16, 3, 3}));
    EXPECT_LT(golden_diff(*load_sd3_transformer(save("aio.safetensors", t)), "sd35"), 1e-4f);
    // ComfyUI's saved diffusion model: the same keys without model.diffusion_model.
    TensorMap bare;
    for (const auto& [k, v] : original("sd35")) bare.emplace(k.substr(std::string(kMMDiTOriginalPrefix).size()), v);
    EXPECT_LT(golden_diff(*load_sd3_transformer(save("bare.safetensors", bare)), "sd35"), 1e-4f);
}

TEST_F(MMDiTFiles, MixedDtypeOriginalFileIsUpcast) {
    // F16 matrices and norms next to F32 ones (the golden weights are f16-representable, so this is lossless) and
    // BF16 adaLN biases (not: those lose bits, a little).
    TensorMap t = original("sd3");
    for (auto& [k, v] : t)
        if (k.find("mlp") != std::string::npos || k.find("attn") != std::string::npos) v = v.to(DType::F16);
        else if (k.find("adaLN_modulation.1.bias") != std::string::npos) v = v.to(DType::BF16);
    SD3TransformerWeights w = read_sd3_transformer(save("mixed.safetensors", t));
    w.config = nlohmann::json::parse(kSd3Config);
    EXPECT_LT(golden_diff(*load_sd3_transformer(w), "sd3"), 0.1f);
    for (auto& [k, v] : t)
        if (v.dtype() == DType::BF16) v = original("sd3").at(k);
    w = read_sd3_transformer(save("mixed2.safetensors", t));
    w.config = nlohmann::json::parse(kSd3Config);
    EXPECT_LT(golden_diff(*load_sd3_transformer(w), "sd3"), 1e-4f);
}

TEST_F(MMDiTFiles, DiffusersFolderTransformerAndPipelineRoot) {
    fs::create_directories(path("pipe/transformer"));
    fs::copy_file(kGolden + "sd3_transformer/sd3.safetensors", path("pipe/transformer/diffusion_pytorch_model.safetensors"));
    std::ofstream(path("pipe/transformer/config.json")) << kSd3Config;
    EXPECT_LT(golden_diff(*load_sd3_transformer(path("pipe")), "sd3"), 1e-4f);
    EXPECT_LT(golden_diff(*load_sd3_transformer(path("pipe/transformer")), "sd3"), 1e-4f);

    std::ofstream(path("pipe/transformer/config.json")) << R"({"num_attention_heads": 5})";
    EXPECT_THAT(error_of([&] { load_sd3_transformer(path("pipe")); }),
                HasSubstr("num_attention_heads 5 x attention_head_dim 6 = 30, but the weights are 32 wide"));
    std::ofstream(path("pipe/transformer/config.json")) << R"({"_class_name": "FluxTransformer2DModel"})";
    EXPECT_THAT(error_of([&] { load_sd3_transformer(path("pipe")); }),
                HasSubstr("config.json': _class_name is \"FluxTransformer2DModel\", expected \"SD3Transformer2DModel\""));
    std::ofstream(path("pipe/transformer/config.json")) << R"({"num_layers": 24, "attention_head_dim": 8})";
    EXPECT_THAT(error_of([&] { load_sd3_transformer(path("pipe")); }),
                HasSubstr("'num_layers' is 24 but the weights have 2"));
    fs::remove(path("pipe/transformer/diffusion_pytorch_model.safetensors"));
    EXPECT_THAT(error_of([&] { load_sd3_transformer(path("pipe")); }),
                HasSubstr("has no diffusion_pytorch_model.safetensors"));
}

TEST_F(MMDiTFiles, MissingTensorIsNamedInTheFilesOwnLayout) {
    TensorMap t = original("sd3");
    t.erase("model.diffusion_model.joint_blocks.1.x_block.attn.qkv.weight");
    const std::string f = save("missing.safetensors", t);
    EXPECT_THAT(error_of([&] { load_sd3_transformer(f); }),
                HasSubstr("is missing tensor 'model.diffusion_model.joint_blocks.1.x_block.attn.qkv.weight' and 2 more"));

    t = original("sd3");
    t.erase("model.diffusion_model.x_embedder.proj.weight");
    const std::string g = save("no_embedder.safetensors", t);
    EXPECT_THAT(error_of([&] { load_sd3_transformer(g); }),
                HasSubstr("SD3 transformer without tensor 'model.diffusion_model.x_embedder.proj.weight'"));

    // The diffusers layout names its own keys.
    TensorMap d = load_safetensors(kGolden + "sd3_transformer/sd35.safetensors").tensors;
    d.erase("transformer_blocks.1.attn2.norm_k.weight");
    const std::string h = save("d.safetensors", d);
    EXPECT_THAT(error_of([&] { load_sd3_transformer(h); }),
                HasSubstr("is missing tensor 'transformer_blocks.1.attn2.norm_k.weight'"));
}

TEST_F(MMDiTFiles, WrongShapesNameTheTensorAndBothShapes) {
    TensorMap t = original("sd3");
    t["model.diffusion_model.joint_blocks.0.context_block.attn.proj.weight"] = Tensor::zeros({32, 16});
    const std::string f = save("shape.safetensors", t);
    EXPECT_THAT(error_of([&] { load_sd3_transformer(f); }),
                HasSubstr("tensor 'transformer_blocks.0.attn.to_add_out.weight' (from "
                          "'model.diffusion_model.joint_blocks.0.context_block.attn.proj.weight'): expected [32, 32], "
                          "got [32, 16]"));
    t = original("sd3");
    t["model.diffusion_model.joint_blocks.0.x_block.attn.qkv.weight"] = Tensor::zeros({97, 32});
    const std::string g = save("qkv.safetensors", t);
    EXPECT_THAT(error_of([&] { load_sd3_transformer(g); }),
                HasSubstr("tensor 'model.diffusion_model.joint_blocks.0.x_block.attn.qkv.weight' [97, 32] does not "
                          "split into q, k, v"));
    t = original("sd3");
    t["model.diffusion_model.pos_embed"] = Tensor::zeros({1, 575, 32});
    const std::string h = save("pos.safetensors", t);
    EXPECT_THAT(error_of([&] { load_sd3_transformer(h); }),
                HasSubstr("tensor 'pos_embed.pos_embed' is [1, 575, 32], expected [1, S*S, 32] (a square grid)"));
}

TEST_F(MMDiTFiles, UnknownKeysGapsAndOtherModelsAreRefused) {
    TensorMap t = original("sd3");
    t.emplace("model.diffusion_model.joint_blocks.0.x_block.lora_up.weight", Tensor::zeros({4}));
    const std::string f = save("unknown.safetensors", t);
    EXPECT_THAT(error_of([&] { load_sd3_transformer(f); }),
                HasSubstr("unknown tensor 'model.diffusion_model.joint_blocks.0.x_block.lora_up.weight'"));

    t = original("sd3");
    for (auto it = t.begin(); it != t.end();)
        it = it->first.starts_with("model.diffusion_model.joint_blocks.0.") ? t.erase(it) : std::next(it);
    t.emplace("model.diffusion_model.joint_blocks.0x.a.weight", Tensor::zeros({1}));  // not an index
    const std::string g = save("gap.safetensors", t);
    EXPECT_THAT(error_of([&] { load_sd3_transformer(g); }),
                HasSubstr("tensor 'joint_blocks.0x.a.weight' has no block index"));
    t.erase("model.diffusion_model.joint_blocks.0x.a.weight");
    const std::string g2 = save("gap2.safetensors", t);
    EXPECT_THAT(error_of([&] { load_sd3_transformer(g2); }), HasSubstr("joint block 0 is missing (found up to 1)"));

    const std::string unet = kGolden + "unet_sd15/unet.safetensors";
    const std::string msg = error_of([&] { load_sd3_transformer(unet); });
    EXPECT_THAT(msg, HasSubstr("is not an SD3 / SD3.5 transformer"));
    EXPECT_THAT(msg, HasSubstr("found conv_in.* (2)"));
}

TEST_F(MMDiTFiles, BadInputsToForwardAreErrors) {
    const auto m = load_sd3_transformer(kGolden + "sd3_transformer/sd35.safetensors");
    const Tensor t = io_.at("sd35.timestep"), ctx = io_.at("sd35.encoder_hidden_states");
    const Tensor pooled = io_.at("sd35.pooled_projections");
    EXPECT_THAT(error_of([&] { m->forward(Tensor::zeros({2, 16, 50, 24}), t, ctx, pooled); }),
                HasSubstr("latent 50x24 is 25x12 patches, more than pos_embed_max_size 24 each way"));
    EXPECT_THAT(error_of([&] { m->forward(Tensor::zeros({2, 16, 15, 24}), t, ctx, pooled); }),
                HasSubstr("latent size 15x24 is not a multiple of the patch size 2"));
    EXPECT_THAT(error_of([&] { m->forward(Tensor::zeros({2, 4, 16, 24}), t, ctx, pooled); }),
                HasSubstr("latent [2, 4, 16, 24], expected [N, 16, H, W]"));
    EXPECT_THAT(error_of([&] { m->forward(io_.at("sd35.hidden_states"), t, Tensor::zeros({2, 12, 31}), pooled); }),
                HasSubstr("context [2, 12, 31], expected [2, L, 32]"));
    EXPECT_THAT(error_of([&] { m->forward(io_.at("sd35.hidden_states"), t, ctx, Tensor::zeros({1, 24})); }),
                HasSubstr("pooled embedding [1, 24], expected [2, 24]"));
    EXPECT_THAT(error_of([&] { m->forward(io_.at("sd35.hidden_states"), Tensor::zeros({3}), ctx, pooled); }),
                HasSubstr("timestep [3] for a batch of 2"));
    EXPECT_THAT(error_of([&] {
                    m->forward(io_.at("sd35.hidden_states"), Tensor::from_vector({500.0f, NAN}, {2}), ctx, pooled);
                }),
                HasSubstr("timestep 1 is nan (expected a finite value in 0..1000)"));
}
