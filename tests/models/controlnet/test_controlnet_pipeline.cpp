// generate() with ControlNets against diffusers' StableDiffusionControlNetPipeline on the tiny golden components
// (tools/make_controlnet_pipeline_reference.py): one unit, two units with start/end, guess mode with DDIM.
#include <gtest/gtest.h>

#include "eval/golden_case.h"
#include "io/safetensors.h"
#include "models/controlnet/controlnet_load.h"
#include "models/sd/stable_diffusion.h"
#include "ops/ops.h"
#include "pipelines/generate.h"
#include "../../test_util.h"

using namespace nuance;

namespace {

const std::string kGolden = std::string(NUANCE_TEST_DATA) + "/golden/";
const std::string kData = std::string(NUANCE_TEST_DATA) + "/controlnet_pipeline/";

template <class M, class C>
std::unique_ptr<M> load_part(const std::string& file, C cfg) {
    auto m = std::make_unique<M>(cfg);
    load_module(*m, load_safetensors(file).tensors, {.source = file});
    return m;
}

// The pipeline_sd15 case's model: clip_l + its tokenizer, unet_sd15, vae_sd.
const StableDiffusionModel& tiny_sd15() {
    static const StableDiffusionModel m = [] {
        StableDiffusionModel m;
        m.family = SDFamily::SD1;
        m.name = "tiny_sd15";
        m.prediction = "epsilon";
        const WeightFile clip = load_safetensors(kGolden + "clip_text/clip_l.safetensors");
        ClipTextConfig cc = ClipTextConfig::detect(clip.tensors);
        cc.apply_hf_config(GoldenCase::load(kGolden + "clip_text").model_config("clip_l"));
        m.te1.model = load_part<ClipTextModel>(clip.path, cc);
        m.te1.own_tokenizer = std::make_unique<ClipTokenizer>(ClipTokenizer::from_files(
            kGolden + "clip_tokenizer/vocab.json", kGolden + "clip_tokenizer/merges.txt"));
        m.te1.pad_id = ClipTokenizer::kEosId;
        const WeightFile unet = load_safetensors(kGolden + "unet_sd15/unet.safetensors");
        UNetConfig uc = UNetConfig::detect(unet.tensors);
        uc.apply_json(GoldenCase::load(kGolden + "unet_sd15").model_config("unet_sd15"));
        m.unet = load_part<UNet2DConditionModel>(unet.path, uc);
        const WeightFile vae = load_safetensors(kGolden + "vae/vae_sd.safetensors");
        AutoencoderKLConfig vc = AutoencoderKLConfig::detect(vae.tensors);
        vc.apply_diffusers_config(GoldenCase::load(kGolden + "vae").model_config("vae_sd"));
        m.vae = load_part<AutoencoderKL>(vae.path, vc);
        return m;
    }();
    return m;
}

std::shared_ptr<const ControlNetModel> golden_controlnet() {
    static const std::shared_ptr<const ControlNetModel> cn =
        tiny_sd15().load_control_net(kGolden + "controlnet/controlnet.safetensors", "--control-net");
    return cn;
}

GenerateParams base_params(const std::string& sampler) {
    const GoldenCase gc = GoldenCase::load(kGolden + "pipeline_sd15");
    const_cast<StableDiffusionModel&>(tiny_sd15()).scheduler_config = gc.meta()[sampler + "_scheduler"]["config"];
    GenerateParams p;
    p.prompt = gc.meta()["prompt"].get<std::string>();
    p.negative_prompt = gc.meta()["negative_prompt"].get<std::string>();
    p.syntax = PromptSyntax::Literal;
    p.cfg_scale = gc.meta()["guidance_scale"].get<float>();
    p.steps = gc.meta()["num_inference_steps"].get<int>();
    p.height = gc.meta()["height"].get<int>();
    p.width = gc.meta()["width"].get<int>();
    p.sampler = sampler;
    p.scheduler = "normal";
    p.initial_noise = gc.tensor("latents_init");
    return p;
}

ControlUnit unit(const std::string& png, float weight, float start = 0, float end = 1,
                 ControlMode mode = ControlMode::Balanced) {
    ControlUnit u;
    u.net = golden_controlnet();
    u.name = "controlnet";
    u.image = read_image(kData + png);
    u.weight = weight;
    u.start = start;
    u.end = end;
    u.mode = mode;
    return u;
}

// Same rule as the pipeline_sd15 golden: atol = 1e-4 x max(1, max|ref|).
void expect_matches(const std::string& name, const GenerateParams& p) {
    const WeightFile ref = load_safetensors(kData + "ref.safetensors");
    const Tensor want = ref.tensors.at(name + ".latents_final");
    const Tensor got = generate(tiny_sd15(), p).at(0).latents;
    ASSERT_EQ(got.shape(), want.shape());
    const double scale = std::max(1.0, (double)max_abs(want));
    const double err = max_abs(got - want);
    EXPECT_LE(err, 1e-4 * scale) << name << ": max_abs " << err << " vs atol " << 1e-4 * scale;
}

}  // namespace

TEST(ControlNetPipeline, NoControlMatchesPlainPipeline) { expect_matches("plain_euler", base_params("euler")); }

TEST(ControlNetPipeline, OneControlNetMatchesDiffusers) {
    GenerateParams p = base_params("euler");
    p.control = {unit("control.png", 0.8f)};
    expect_matches("single_euler", p);
}

TEST(ControlNetPipeline, TwoControlNetsWithStartEndMatchDiffusers) {
    GenerateParams p = base_params("euler");
    p.control = {unit("control.png", 0.6f, 0.0f, 0.7f), unit("control_inv.png", 0.9f, 0.3f, 1.0f)};
    expect_matches("multi_euler", p);
}

TEST(ControlNetPipeline, GuessModeMatchesDiffusers) {
    GenerateParams p = base_params("ddim");
    p.control = {unit("control.png", 1.0f, 0, 1, ControlMode::Guess)};
    expect_matches("guess_ddim", p);
}

TEST(ControlNetPipeline, ControlImageIsResizedToTheOutputSize) {
    GenerateParams p = base_params("euler");
    ControlUnit u = unit("control.png", 0.8f);
    u.image = resize_image(u.image, 48, 32);  // half size: the pipeline resizes it back (Lanczos)
    p.control = {u};
    const Tensor got = generate(tiny_sd15(), p).at(0).latents;
    EXPECT_EQ(got.shape(), (Shape{1, 4, 8, 12}));
    EXPECT_NE(generate(tiny_sd15(), p).at(0).infotext.find("ControlNet 0: \"Module: none, Model: controlnet, Weight: 0.8"),
              std::string::npos);
}

TEST(ControlNetPipeline, BadUnitsAreNamedErrors) {
    GenerateParams p = base_params("euler");
    ControlUnit u = unit("control.png", 0.8f);
    u.image = Image{};
    p.control = {u};
    EXPECT_EQ(test::error_of([&] { generate(tiny_sd15(), p); }), "ControlNet 0 'controlnet': no control image");
    u = unit("control.png", 0.8f, 0.6f, 0.4f);
    p.control = {u};
    EXPECT_EQ(test::error_of([&] { generate(tiny_sd15(), p); }),
              "ControlNet 0 'controlnet': start/end must satisfy 0 <= start < end <= 1, got start 0.6, end 0.4");
    u = unit("control.png", NAN);
    p.control = {u};
    EXPECT_EQ(test::error_of([&] { generate(tiny_sd15(), p); }),
              "ControlNet 0 'controlnet': weight must be in 0..10, got nan");
}
