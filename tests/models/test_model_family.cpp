// The model-family seam (models/model_family.h, models/diffusion_model.h): a fake flow family registered only here
// generates end to end through generate() (Euler on a flow schedule, hand-checked), and load_model's errors.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <set>

#include "../test_util.h"
#include "io/safetensors.h"
#include "io/weights.h"
#include "models/model_family.h"
#include "models/sd/stable_diffusion.h"
#include "ops/ops.h"
#include "pipelines/generate.h"

namespace nuance {
namespace {

namespace fs = std::filesystem;
using test::error_of;
using ::testing::HasSubstr;

const std::string kGolden = std::string(NUANCE_TEST_DATA) + "/golden/";

std::string temp_path(const std::string& name) { return (fs::path(NUANCE_SCRATCH_DIR) / name).string(); }

// A one-layer flow model: the velocity is a learned per-channel constant k times a scalar that comes from the
// conditioning ("context" = the prompt's length in bytes) or, when distilled, from the guidance input. Latents
// decode as z = latents / 2 + 0.25 (scaling 2, shift 0.25), no VAE: the image is z itself.
struct FakeFlowModel : DiffusionModel {
    Tensor k;  // [C]
    GuidanceKind kind = GuidanceKind::ClassifierFree;
    bool dynamic_shift = false;
    double timestep_scale = 1000.0;  // Objective::flow_timestep_scale
    mutable std::vector<int64_t> batch_sizes;
    mutable std::vector<double> timesteps;
    mutable std::vector<float> guidance_inputs;

    std::string family_name() const override { return "test_flow"; }
    std::string variant() const override { return "test-flow-1"; }
    std::string describe() const override { return "family: test_flow\n"; }
    std::vector<std::pair<std::string, Module*>> modules() override { return {}; }
    LatentFormat latent_format() const override {
        LatentFormat f;
        f.channels = k.size(0);
        f.downscale = 1;
        f.scaling_factor = 2.0f;
        f.shift_factor = 0.25f;
        return f;
    }
    Objective objective() const override {
        Objective o;
        o.prediction = Prediction::Flow;
        o.flow.shift = 3.0;
        o.flow.dynamic = dynamic_shift;
        o.flow_timestep_scale = timestep_scale;
        return o;
    }
    GuidanceKind guidance() const override { return kind; }
    GenerationDefaults generation_defaults() const override {
        GenerationDefaults d;
        d.width = d.height = 4;
        d.steps = 4;
        d.sampler = "euler";
        return d;
    }
    Conditioning encode(const ConditioningRequest& r) const override {
        Conditioning c;
        c["context"] = Tensor::from_vector({(float)r.text.size()}, {1, 1});
        return c;
    }
    Tensor predict(const Tensor& x_in, double t, const Conditioning& cond, const StepContext& step) const override {
        const int64_t B = x_in.size(0), C = x_in.size(1), H = x_in.size(2), W = x_in.size(3);
        batch_sizes.push_back(B);
        timesteps.push_back(t);
        guidance_inputs.push_back(step.guidance);
        const Tensor ctx = cond.at("context");  // [B, 1]
        EXPECT_EQ(ctx.size(0), B);
        std::vector<float> out((size_t)(B * C * H * W));
        const std::vector<float> kv = k.to_vector(), cv = ctx.contiguous().to_vector();
        for (int64_t b = 0; b < B; ++b)
            for (int64_t c = 0; c < C; ++c)
                for (int64_t i = 0; i < H * W; ++i)
                    out[(size_t)((b * C + c) * H * W + i)] =
                        kv[(size_t)c] * (kind == GuidanceKind::Distilled ? step.guidance : cv[(size_t)b]);
        return Tensor::from_vector(out, {B, C, H, W});
    }
    Tensor decode(const Tensor& latents, const VaeTiling&) const override {
        const LatentFormat f = latent_format();
        return latents * (1.0f / f.scaling_factor) + f.shift_factor;
    }
    Tensor encode_image(const Image& img, int, int, const VaeTiling&, Rng&) const override {
        return (image_to_tensor(img) - latent_format().shift_factor) * latent_format().scaling_factor;
    }
};

// Registers the fake family for the scope of a test (the registry is process-wide).
struct FakeFamily {
    explicit FakeFamily(GuidanceKind kind = GuidanceKind::ClassifierFree) {
        ModelSpec s;
        s.name = "test_flow";
        s.description = "test-only one-layer flow model";
        s.detect = [](const TensorIndex& ix) { return ix.has("test_flow.velocity") ? 100 : 0; };
        s.load = [kind](const ModelSource& src, const ModelLoadOptions&) -> std::unique_ptr<DiffusionModel> {
            auto m = std::make_unique<FakeFlowModel>();
            m->k = src.file->tensors.at("test_flow.velocity").f32().contiguous();
            m->kind = kind;
            return m;
        };
        register_model_family(std::move(s));
    }
    ~FakeFamily() { unregister_model_family("test_flow"); }
};

std::string known_families() {
    std::string s;
    for (const ModelSpec& f : model_families()) s += (s.empty() ? "" : ", ") + f.name;
    return s;
}

std::string write_fake_model(const std::string& name) {
    const std::string p = temp_path(name);
    save_safetensors(p, {{"test_flow.velocity", Tensor::from_vector({0.5f, -1.0f, 2.0f}, {3})}});
    return p;
}

GenerateParams fake_params() {
    GenerateParams p;
    p.prompt = "abcd";           // context 4
    p.negative_prompt = "a";     // context 1
    p.width = p.height = 2;
    p.steps = 4;
    p.sampler = "euler";
    p.scheduler = "";
    p.cfg_scale = 3.0f;
    p.seed = 1;
    std::vector<float> noise(12);
    for (size_t i = 0; i < noise.size(); ++i) noise[i] = 0.1f * (float)i - 0.5f;
    p.initial_noise = Tensor::from_vector(noise, {1, 3, 2, 2});
    return p;
}

// Euler on a flow schedule with a constant velocity v: x_{i+1} = x_i + (s_{i+1} - s_i) v, so the sample is
// x_N = noise - s_0 v = noise - v (the shifted schedule starts at sigma 1 and ends at 0).
void expect_sample(const GeneratedImage& gi, const GenerateParams& p, const std::vector<float>& v) {
    const std::vector<float> noise = p.initial_noise.to_vector(), got = gi.latents.f32().contiguous().to_vector(),
                             dec = gi.decoded.f32().contiguous().to_vector();
    ASSERT_EQ(got.size(), 12u);
    for (size_t i = 0; i < got.size(); ++i) {
        const float want = noise[i] - v[i / 4];
        EXPECT_NEAR(got[i], want, 1e-5f) << i;
        EXPECT_NEAR(dec[i], want / 2.0f + 0.25f, 1e-5f) << i;  // decode: z = latents / scale + shift
    }
}

TEST(ModelFamily, FakeFlowFamilyGeneratesThroughTheSeamWithCfg) {
    FakeFamily fam;
    const std::string path = write_fake_model("fake_flow_cfg.safetensors");
    const std::unique_ptr<DiffusionModel> m = load_model(path);
    ASSERT_EQ(m->family_name(), "test_flow");
    EXPECT_EQ(m->name, "fake_flow_cfg");
    const auto& fake = dynamic_cast<const FakeFlowModel&>(*m);
    const GenerateParams p = fake_params();
    const std::vector<GeneratedImage> out = generate(*m, p);
    ASSERT_EQ(out.size(), 1u);
    // CFG: v = k (u + s (c - u)) with u = 1 (negative prompt "a"), c = 4 ("abcd"), s = 3 -> k * 10.
    expect_sample(out[0], p, {0.5f * 10, -1.0f * 10, 2.0f * 10});
    EXPECT_EQ(fake.batch_sizes, std::vector<int64_t>(4, 2));  // uncond + cond in one batch, one call per step
    ASSERT_EQ(fake.timesteps.size(), 4u);
    EXPECT_DOUBLE_EQ(fake.timesteps[0], 1000.0);  // sigma 1 * flow_timestep_scale
    EXPECT_THAT(out[0].infotext, HasSubstr("Steps: 4, Sampler: Euler, Schedule type: Normal, CFG scale: 3, Seed: 1"));
}

// A family whose network takes sigma itself (scale 1) gets sigma at every step, from the schedule's table as well as
// for the custom sigmas (the table pairs sigma with sigma * num_train_timesteps; the pipeline rescales it).
TEST(ModelFamily, FlowTimestepScaleReachesPredict) {
    FakeFamily fam;
    const std::string path = write_fake_model("fake_flow_scale.safetensors");
    std::unique_ptr<DiffusionModel> m = load_model(path);
    auto& fake = dynamic_cast<FakeFlowModel&>(*m);
    fake.timestep_scale = 1.0;
    GenerateParams p = fake_params();
    generate(*m, p);
    ASSERT_EQ(fake.timesteps.size(), 4u);
    EXPECT_DOUBLE_EQ(fake.timesteps[0], 1.0);
    for (double t : fake.timesteps) EXPECT_LE(t, 1.0);
    fake.timesteps.clear();
    p.sigmas = {1.0, 0.5, 0.0};
    p.steps = 2;
    generate(*m, p);
    EXPECT_EQ(fake.timesteps, (std::vector<double>{1.0, 0.5}));
}

TEST(ModelFamily, DistilledGuidanceIsOnePassWithTheScaleAsInput) {
    FakeFamily fam(GuidanceKind::Distilled);
    const std::unique_ptr<DiffusionModel> m = load_model(write_fake_model("fake_flow_distilled.safetensors"));
    const auto& fake = dynamic_cast<const FakeFlowModel&>(*m);
    GenerateParams p = fake_params();
    p.cfg_scale = 3.5f;
    const std::vector<GeneratedImage> out = generate(*m, p);
    expect_sample(out.at(0), p, {0.5f * 3.5f, -1.0f * 3.5f, 2.0f * 3.5f});
    EXPECT_EQ(fake.batch_sizes, std::vector<int64_t>(4, 1));
    EXPECT_EQ(fake.guidance_inputs, std::vector<float>(4, 3.5f));
    EXPECT_THAT(out[0].infotext, HasSubstr("CFG scale: 1, Distilled CFG Scale: 3.5, Seed: 1"));
}

TEST(ModelFamily, FlowModelsRefuseDiscreteSchedulesByName) {
    FakeFamily fam;
    const std::unique_ptr<DiffusionModel> m = load_model(write_fake_model("fake_flow_sched.safetensors"));
    GenerateParams p = fake_params();
    p.scheduler = "karras";
    EXPECT_EQ(error_of([&] { generate(*m, p); }),
              "schedule 'karras' is for discrete-time models; a flow-matching model uses its own shifted schedule "
              "('normal') or custom sigmas");
    p.scheduler = "";
    p.sigmas = {1.0, 0.5, 0.0};
    p.steps = 2;
    const std::vector<GeneratedImage> out = generate(*m, p);  // custom sigmas verbatim: still ends at noise - v
    expect_sample(out.at(0), p, {0.5f * 10, -1.0f * 10, 2.0f * 10});
    p.sigmas = {14.6, 1.0, 0.0};
    EXPECT_EQ(error_of([&] { generate(*m, p); }), "a flow-matching model takes sigmas in [0, 1], got 14.6 at position 0");
}

TEST(ModelFamily, RegistryRefusesDuplicatesAndIncompleteSpecs) {
    FakeFamily fam;
    ModelSpec s;
    s.name = "test_flow";
    s.detect = [](const TensorIndex&) { return 0; };
    s.load = [](const ModelSource&, const ModelLoadOptions&) { return std::unique_ptr<DiffusionModel>(); };
    EXPECT_EQ(error_of([&] { register_model_family(s); }),
              "register_model_family: family 'test_flow' is already registered");
    s.name = "test_nodetect";
    s.detect = nullptr;
    EXPECT_EQ(error_of([&] { register_model_family(s); }),
              "register_model_family: family 'test_nodetect' needs detect and load");
    ASSERT_TRUE(find_model_family("sd1").has_value());
    EXPECT_FALSE(find_model_family("test_nodetect").has_value());
}

TEST(ModelFamily, UnknownLayoutListsTheFamiliesAndSomeKeys) {
    const std::string p = temp_path("unknown_layout.safetensors");
    save_safetensors(p, {{"encoder.block.0.weight", Tensor::zeros({2, 2})},
                         {"encoder.block.1.weight", Tensor::zeros({2, 2})},
                         {"lm_head.weight", Tensor::zeros({2, 2})}});
    EXPECT_EQ(error_of([&] { load_model(p); }),
              "unknown model layout in '" + p + "': no model family recognises it (known: " + known_families() +
                  "); it holds 3 tensors, e.g. 'encoder.block.0.weight', 'lm_head.weight', 'encoder.block.1.weight'");
    // A diffusers-layout UNet alone is recognised as a UNet-only file; without its components it names them.
    EXPECT_EQ(error_of([&] { load_model(kGolden + "unet_sd15/unet.safetensors"); }),
              "'" + kGolden + "unet_sd15/unet.safetensors' holds only a UNet (sd1): it has no text encoder "
              "(cond_stage_model.*) and VAE (first_stage_model.*); pass them with --clip-l FILE and --vae FILE "
              "(ComfyUI keeps them as clip_l.safetensors and a VAE file)");
    EXPECT_EQ(error_of([&] { load_model(p, ModelLoadOptions{.family = "flux9"}); }),
              "unknown model family 'flux9' (known: " + known_families() + ")");
}

TEST(ModelFamily, RecognisedButIncompleteFileNamesWhatIsMissing) {
    // The SD1 original-layout golden file without its VAE: detected as sd1, then the loader names the gap.
    const WeightFile wf = load_weights(kGolden + "original_format/sd15_original.safetensors");
    std::vector<std::pair<std::string, Tensor>> kept;
    for (const auto& [k, v] : wf.tensors)
        if (!k.starts_with("first_stage_model.")) kept.push_back({k, v});
    ASSERT_LT(kept.size(), wf.tensors.size());
    const std::string p = temp_path("sd15_no_vae.safetensors");
    save_safetensors(p, kept);
    EXPECT_EQ(detect_model_family(open_model_source(p)).spec.name, "sd1");
    EXPECT_EQ(error_of([&] { load_model(p); }), "'" + p + "' has no VAE (first_stage_model.*); pass one with --vae");
    // Split-file text encoders are refused by a family that cannot use them, naming the flag.
    ModelLoadOptions o;
    o.t5xxl = "/models/t5xxl_fp16.safetensors";
    EXPECT_EQ(error_of([&] { load_model(kGolden + "original_format/sd15_original.safetensors", o); }),
              "--t5xxl '/models/t5xxl_fp16.safetensors': the Stable Diffusion families (sd1, sd2, sdxl) have no T5 "
              "text encoder ('" + kGolden + "original_format/sd15_original.safetensors')");
}

TEST(ModelFamily, SdFilesLoadThroughTheRegistry) {
    const std::string p = kGolden + "original_format/sd15_original.safetensors";
    const ModelSource src = open_model_source(p);
    const FamilyMatch match = detect_model_family(src);
    EXPECT_EQ(match.spec.name, "sd1");
    EXPECT_EQ(match.score, 100);
    ASSERT_NE(src.file, nullptr);
    EXPECT_TRUE(src.index.has_prefix("model.diffusion_model.input_blocks."));
    const std::unique_ptr<DiffusionModel> m = load_model(p);
    EXPECT_EQ(m->family_name(), "sd1");
    EXPECT_EQ(m->variant(), "sd15");
    EXPECT_EQ(m->name, "sd15_original");
    EXPECT_EQ(m->guidance(), GuidanceKind::ClassifierFree);
    EXPECT_EQ(m->objective().prediction, Prediction::Epsilon);
    const LatentFormat lf = m->latent_format();
    EXPECT_EQ(lf.channels, 4);
    EXPECT_EQ(lf.downscale, 8);
    EXPECT_FLOAT_EQ(lf.scaling_factor, 0.18215f);
    EXPECT_EQ(lf.rgb_factors.size(), 4u);
    std::vector<std::string> names;
    for (const ComponentInfo& c : m->components()) {
        names.push_back(c.name);
        EXPECT_GT(c.parameters, 0) << c.name;
    }
    EXPECT_EQ(names, (std::vector<std::string>{"text_encoder", "unet", "vae"}));
    // SD is text-conditioned: a class label is refused by name, not turned into an unconditional image.
    ConditioningRequest r;
    r.class_label = 3;
    EXPECT_THAT(error_of([&] { m->validate_request(r); }),
                HasSubstr("class label 3: sd1 is conditioned on text, not on a class"));
}

TEST(ModelFamily, DiffusersFolderIndexHoldsComponentKeysAndConfigs) {
    const fs::path d = fs::path(NUANCE_SCRATCH_DIR) / "seam_sd_folder";
    fs::remove_all(d);
    for (const char* sub : {"unet", "vae", "text_encoder"}) fs::create_directories(d / sub);
    std::ofstream(d / "model_index.json") << R"({"_class_name": "StableDiffusionPipeline"})";
    std::ofstream(d / "text_encoder/config.json") << R"({"hidden_act": "quick_gelu"})";
    fs::copy_file(kGolden + "clip_text/clip_l.safetensors", d / "text_encoder/model.safetensors");
    fs::copy_file(kGolden + "vae/vae_sd.safetensors", d / "vae/diffusion_pytorch_model.safetensors");
    fs::copy_file(kGolden + "unet_sd15/unet.safetensors", d / "unet/diffusion_pytorch_model.safetensors");
    const ModelSource src = open_model_source(d.string());
    EXPECT_TRUE(src.folder());
    EXPECT_EQ(src.file, nullptr);
    EXPECT_TRUE(src.index.has("unet/conv_in.weight"));
    EXPECT_TRUE(src.index.has_prefix("text_encoder/text_model."));
    EXPECT_EQ(src.index.components, (std::set<std::string>{"text_encoder", "unet", "vae"}));
    EXPECT_EQ(src.index.config_string("model_index", "_class_name"), "StableDiffusionPipeline");
    EXPECT_EQ(src.index.config_string("text_encoder", "hidden_act"), "quick_gelu");
    const FamilyMatch match = detect_model_family(src);
    EXPECT_EQ(match.spec.name, "sd1");
    EXPECT_EQ(match.score, 100);
    // SD2's text encoder says gelu; an XL pipeline class (or text_encoder_2/) is SDXL.
    std::ofstream(d / "text_encoder/config.json") << R"({"hidden_act": "gelu"})";
    EXPECT_EQ(detect_model_family(open_model_source(d.string())).spec.name, "sd2");
    // A folder of another family's pipeline (a transformer/ and no unet/) is not claimed by SD: the error lists
    // the families and keys "<component>/<name>".
    const fs::path t = fs::path(NUANCE_SCRATCH_DIR) / "seam_transformer_folder";
    fs::remove_all(t);
    fs::create_directories(t / "transformer");
    std::ofstream(t / "model_index.json") << R"({"_class_name": "SomeFuturePipeline"})";
    save_safetensors((t / "transformer/diffusion_pytorch_model.safetensors").string(),
                     {{"x_embedder.weight", Tensor::zeros({2, 2})}});
    EXPECT_EQ(error_of([&] { load_model(t.string()); }),
              "unknown model layout in '" + t.string() + "': no model family recognises it (known: " +
                  known_families() + "); its component folders hold 1 tensors, e.g. 'transformer/x_embedder.weight'");
}

TEST(ModelFamily, ProbeDefaultsGoThroughTheRegistry) {
    FakeFamily fam;
    const std::string p = write_fake_model("fake_flow_probe.safetensors");
    // The fake family has no probe: its ModelSpec::defaults are used as they are.
    const GenerationDefaults d = probe_generation_defaults(p);
    EXPECT_EQ(d.width, 512);
    const GenerationDefaults sd = probe_generation_defaults(kGolden + "original_format/sd15_original.safetensors");
    EXPECT_EQ(sd.width, 512);
    EXPECT_EQ(sd.prompt, "a lighthouse on a cliff at dusk, oil painting");
}

}  // namespace
}  // namespace nuance
