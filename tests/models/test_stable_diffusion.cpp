// Loading whole Stable Diffusion models the ways users have them: original single files (.safetensors, .ckpt),
// diffusers folders (incl. a sharded UNet), a --vae override; each checked against the reference outputs.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "eval/golden_case.h"
#include "io/safetensors.h"
#include "models/sd/stable_diffusion.h"
#include "eval/golden/unet_golden.h"
#include "ops/ops.h"
#include "pipelines/generate.h"
#include "models/sd/sd_conditioning.h"

using namespace nuance;
namespace fs = std::filesystem;

namespace {

const std::string kGolden = std::string(NUANCE_TEST_DATA) + "/golden/";

nlohmann::json model_config(const std::string& case_name, const std::string& model) {
    return GoldenCase::load(kGolden + case_name).model_config(model);
}

ModelLoadOptions sd15_configs() {
    ModelLoadOptions o;
    o.configs["unet"] = model_config("unet_sd15", "unet_sd15");
    o.configs["vae"] = model_config("vae", "vae_sd");
    o.configs["text_encoder"] = model_config("clip_text", "clip_l");
    return o;
}

void expect_unet_golden(const StableDiffusionModel& m) {
    for (const auto& l : check_golden_unet_model(GoldenCase::load(kGolden + "unet_sd15"), *m.unet))
        EXPECT_TRUE(l.pass) << l.name << " max_abs=" << l.max_abs << " " << l.reason;
}

void write_json(const fs::path& p, const nlohmann::json& j) { std::ofstream(p) << j.dump(2); }

// The pipeline_sd15 DDIM run on a model, compared with the reference's final latents.
void expect_pipeline_golden(StableDiffusionModel& m) {
    const GoldenCase gc = GoldenCase::load(kGolden + "pipeline_sd15");
    GenerateParams p;
    p.prompt = gc.meta()["prompt"].get<std::string>();
    p.negative_prompt = gc.meta()["negative_prompt"].get<std::string>();
    p.syntax = PromptSyntax::Literal;
    p.cfg_scale = 7.5f;
    p.steps = 6;
    p.width = 96;
    p.height = 64;
    p.sampler = "ddim";
    p.initial_noise = gc.tensor("latents_init");
    const auto r = generate(m, p);
    const Tensor ref = gc.tensor("ddim.latents_final");
    EXPECT_LE(max_abs_diff(r[0].latents, ref), 1e-4 * std::max(1.0f, max_abs(ref)));
}

}  // namespace

TEST(StableDiffusion, OriginalSafetensorsSingleFile) {
    StableDiffusionModel m = load_stable_diffusion(kGolden + "original_format/sd15_original.safetensors", sd15_configs());
    EXPECT_EQ(m.family, SDFamily::SD1);
    EXPECT_EQ(m.prediction, "epsilon");
    EXPECT_EQ(m.name, "sd15_original");
    expect_unet_golden(m);
}

TEST(StableDiffusion, TorchCkptSingleFileMatchesReference) {
    // tools/make_sd_ckpt_fixture.py: the same weights saved by torch.save as {"state_dict": ..., "global_step": ...}.
    StableDiffusionModel m = load_stable_diffusion(std::string(NUANCE_TEST_DATA) + "/ckpt/sd15_original.ckpt", sd15_configs());
    expect_unet_golden(m);
    m.scheduler_config = GoldenCase::load(kGolden + "pipeline_sd15").meta()["ddim_scheduler"]["config"];
    m.te1.own_tokenizer = std::make_unique<ClipTokenizer>(
        ClipTokenizer::from_files(kGolden + "clip_tokenizer/vocab.json", kGolden + "clip_tokenizer/merges.txt"));
    expect_pipeline_golden(m);
}

TEST(StableDiffusion, DiffusersFolderWithShardedUnet) {
    const fs::path dir = fs::path(NUANCE_SCRATCH_DIR) / ("nuance_diffusers_" + std::to_string(::getpid()));
    fs::create_directories(dir);
    for (const char* sub : {"unet", "vae", "text_encoder", "tokenizer", "scheduler"}) fs::create_directories(dir / sub);
    write_json(dir / "model_index.json", {{"_class_name", "StableDiffusionPipeline"}, {"_diffusers_version", "0.31.0"}});
    fs::copy_file(kGolden + "clip_text/clip_l.safetensors", dir / "text_encoder/model.safetensors");
    write_json(dir / "text_encoder/config.json", model_config("clip_text", "clip_l"));
    fs::copy_file(kGolden + "clip_tokenizer/vocab.json", dir / "tokenizer/vocab.json");
    fs::copy_file(kGolden + "clip_tokenizer/merges.txt", dir / "tokenizer/merges.txt");
    write_json(dir / "tokenizer/special_tokens_map.json", {{"pad_token", "<|endoftext|>"}});
    fs::copy_file(kGolden + "vae/vae_sd.safetensors", dir / "vae/diffusion_pytorch_model.safetensors");
    write_json(dir / "vae/config.json", model_config("vae", "vae_sd"));
    write_json(dir / "unet/config.json", model_config("unet_sd15", "unet_sd15"));
    write_json(dir / "scheduler/scheduler_config.json",
               GoldenCase::load(kGolden + "pipeline_sd15").meta()["ddim_scheduler"]["config"]);
    // Shard the UNet in two, with an index, as save_pretrained(max_shard_size=...) does.
    const WeightFile unet = load_safetensors(kGolden + "unet_sd15/unet.safetensors");
    std::vector<std::pair<std::string, Tensor>> a, b;
    nlohmann::json index = {{"metadata", {{"total_size", 0}}}, {"weight_map", nlohmann::json::object()}};
    for (const auto& [k, v] : unet.tensors) {
        const bool first = k < "mid_block";
        (first ? a : b).emplace_back(k, v);
        index["weight_map"][k] = first ? "diffusion_pytorch_model-00001-of-00002.safetensors"
                                       : "diffusion_pytorch_model-00002-of-00002.safetensors";
    }
    save_safetensors((dir / "unet/diffusion_pytorch_model-00001-of-00002.safetensors").string(), a);
    save_safetensors((dir / "unet/diffusion_pytorch_model-00002-of-00002.safetensors").string(), b);
    write_json(dir / "unet/diffusion_pytorch_model.safetensors.index.json", index);

    StableDiffusionModel m = load_stable_diffusion(dir.string());
    EXPECT_EQ(m.family, SDFamily::SD1);
    EXPECT_EQ(m.te1.pad_id, ClipTokenizer::kEosId);
    expect_unet_golden(m);
    expect_pipeline_golden(m);

    // A broken index names the missing tensor and the shard.
    index["weight_map"]["conv_in.extra"] = "diffusion_pytorch_model-00001-of-00002.safetensors";
    write_json(dir / "unet/diffusion_pytorch_model.safetensors.index.json", index);
    try {
        load_stable_diffusion(dir.string());
        ADD_FAILURE() << "expected an error";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("tensor 'conv_in.extra' is not in shard"), std::string::npos) << e.what();
    }
    fs::remove(dir / "model_index.json");
    EXPECT_THROW(load_stable_diffusion(dir.string()), Error);
    fs::remove_all(dir);
}

TEST(StableDiffusion, VaeOverrideFromOriginalLayoutFile) {
    // A standalone VAE as people download them (original names without the first_stage_model. prefix).
    const WeightFile wf = load_safetensors(kGolden + "original_format/sd15_original.safetensors");
    std::vector<std::pair<std::string, Tensor>> vae;
    for (const auto& [k, v] : wf.tensors)
        if (k.rfind("first_stage_model.", 0) == 0) vae.emplace_back(k.substr(18), v);
    const std::string vae_path = (fs::path(NUANCE_SCRATCH_DIR) / ("nuance_vae_" + std::to_string(::getpid()) + ".safetensors")).string();
    save_safetensors(vae_path, vae);
    ModelLoadOptions o = sd15_configs();
    o.vae_path = vae_path;
    const StableDiffusionModel m = load_stable_diffusion(kGolden + "original_format/sd15_original.safetensors", o);
    const GoldenCase gc = GoldenCase::load(kGolden + "vae");
    EXPECT_TRUE(gc.compare("vae_sd.decoded", m.vae->decode(gc.tensor("vae_sd.latent"))).pass);
    o.vae_path = kGolden + "unet_sd15/unet.safetensors";  // not a VAE
    EXPECT_THROW(load_stable_diffusion(kGolden + "original_format/sd15_original.safetensors", o), Error);
    fs::remove(vae_path);
}

TEST(StableDiffusion, PredictionOverrideAndErrors) {
    ModelLoadOptions o = sd15_configs();
    o.prediction = "v";
    EXPECT_EQ(load_stable_diffusion(kGolden + "original_format/sd15_original.safetensors", o).prediction, "v_prediction");
    o.prediction = "banana";
    EXPECT_THROW(load_stable_diffusion(kGolden + "original_format/sd15_original.safetensors", o), Error);
    try {
        load_stable_diffusion("/nonexistent/model.safetensors");
        ADD_FAILURE();
    } catch (const Error& e) {
        EXPECT_EQ(e.code(), ErrorCode::NotFound);
    }
    // A diffusers UNet file alone is not a whole model: the loader names the components it needs
    // (tests/models/test_sd_split_files.cpp loads such files with them).
    try {
        load_stable_diffusion(kGolden + "unet_sd15/unet.safetensors");
        ADD_FAILURE();
    } catch (const Error& e) {
        EXPECT_EQ(e.code(), ErrorCode::InvalidArgument);
        EXPECT_NE(std::string(e.what()).find("holds only a UNet (sd1)"), std::string::npos) << e.what();
    }
}

TEST(Conditioning, A1111EmphasisScalesTokensAndRestoresTheMean) {
    const StableDiffusionModel m =
        load_stable_diffusion(kGolden + "original_format/sd15_original.safetensors", sd15_configs());
    ConditioningOptions o;
    const Tensor plain = encode_prompt(m, "a cat", o).context;  // [1, 77, D]; no syntax: same as Literal
    o.syntax = PromptSyntax::Literal;
    EXPECT_EQ(max_abs_diff(plain, encode_prompt(m, "a cat", o).context), 0.0f);
    o.syntax = PromptSyntax::A1111;
    const Tensor weighted = encode_prompt(m, "(a cat:1.5)", o).context;
    // By hand: tokens 1 and 2 ("a", "cat") x1.5, then the whole chunk rescaled to its original mean.
    std::vector<float> w(77, 1.0f);
    w[1] = w[2] = 1.5f;
    Tensor expect = plain * Tensor::from_vector(w, {1, 77, 1});
    expect = expect * (float)(mean_all(plain) / mean_all(expect));
    EXPECT_LE(max_abs_diff(weighted, expect), 1e-5f);
    EXPECT_NEAR(mean_all(weighted), mean_all(plain), 1e-6);
    // A prompt over 75 tokens becomes two 77-token chunks.
    std::string long_prompt;
    for (int i = 0; i < 80; ++i) long_prompt += "cat ";
    EXPECT_EQ(encode_prompt(m, long_prompt, o).context.size(1), 154);
}
