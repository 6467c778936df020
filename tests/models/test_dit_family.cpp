// The DiT family on the model seam: detection over every layout (and 0 on the other families' golden files),
// load_model + generate() end to end against DiTPipeline's loop (tools/make_dit_pipeline_ref.py), the errors of
// incomplete files, unusable flags and prompts that are no class, and the CLI.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include "../test_util.h"
#include "io/json_file.h"
#include "io/safetensors.h"
#include "io/weights.h"
#include "models/convert/original_parts.h"
#include "models/dit/dit_family.h"
#include "models/dit/dit_model.h"
#include "models/dit/imagenet_classes.h"
#include "models/model_family.h"
#include "ops/ops.h"
#include "pipelines/generate.h"

namespace nuance {
namespace {

namespace fs = std::filesystem;
using test::error_of;
using ::testing::HasSubstr;

const std::string kData = std::string(NUANCE_TEST_DATA);
const std::string kGolden = kData + "/golden/";

std::string temp_path(const std::string& name) { return (fs::path(NUANCE_SCRATCH_DIR) / name).string(); }

nlohmann::json case_config(const std::string& c, const std::string& model) {
    return read_json_object(kGolden + c + "/case.json")["models"][model]["config"];
}

// The tiny golden DiT's width (32) is no DiT preset: a bare file states its heads through the options, as a
// diffusers config.json would. The --vae file gets the golden VAE's config (norm groups 8).
ModelLoadOptions tiny_options(const std::string& vae = kGolden + "vae/vae_sd.safetensors") {
    ModelLoadOptions o;
    o.vae_path = vae;
    o.configs["transformer"] = {{"num_attention_heads", 2}, {"attention_head_dim", 16}, {"sample_size", 8}};
    o.configs["vae"] = case_config("vae", "vae_sd");
    return o;
}

// A DiTPipeline folder as diffusers saves it: transformer/ + vae/ + scheduler/ + model_index.json.
std::string write_pipeline_folder(const std::string& name, bool with_vae = true) {
    const fs::path d = fs::path(NUANCE_SCRATCH_DIR) / name;
    fs::remove_all(d);
    fs::create_directories(d / "transformer");
    fs::create_directories(d / "scheduler");
    std::ofstream(d / "model_index.json")
        << R"({"_class_name": "DiTPipeline", "transformer": ["diffusers", "DiTTransformer2DModel"],)"
        << R"( "vae": ["diffusers", "AutoencoderKL"], "scheduler": ["diffusers", "DDIMScheduler"]})";
    std::ofstream(d / "transformer/config.json") << case_config("dit", "dit").dump();
    fs::copy_file(kGolden + "dit/dit.safetensors", d / "transformer/diffusion_pytorch_model.safetensors");
    std::ofstream(d / "scheduler/scheduler_config.json")
        << R"({"_class_name": "DDIMScheduler", "beta_start": 0.0001, "beta_end": 0.02, "beta_schedule": "linear",)"
        << R"( "num_train_timesteps": 1000, "clip_sample": false, "steps_offset": 0})";
    if (with_vae) {
        fs::create_directories(d / "vae");
        std::ofstream(d / "vae/config.json") << case_config("vae", "vae_sd").dump();
        fs::copy_file(kGolden + "vae/vae_sd.safetensors", d / "vae/diffusion_pytorch_model.safetensors");
    }
    return d.string();
}

GenerateParams tiny_params(int64_t label = 3) {
    GenerateParams p;
    p.width = p.height = 64;  // 8x8 latents, the tiny DiT's sample size
    p.steps = 5;
    p.sampler = "ddim";
    p.scheduler = "";
    p.cfg_scale = 4.0f;
    p.class_label = label;
    p.seed = 0;
    p.rng = RngKind::Cpu;  // torch.manual_seed(0), as the reference
    return p;
}

std::map<std::string, Tensor> pipeline_ref() {
    return load_safetensors(kData + "/dit/dit_pipeline_io.safetensors").tensors;
}

float rel_err(const Tensor& a, const Tensor& b) { return max_abs_diff(a, b) / std::max(1e-12f, max_abs(b)); }

bool all_finite(const Tensor& t) {
    for (float v : t.f32().contiguous().to_vector())
        if (!std::isfinite(v)) return false;
    return true;
}

TEST(DiTFamily, DetectScoresEveryLayout) {
    EXPECT_EQ(detect_dit(open_model_source(kData + "/dit/dit_original.safetensors").index), 50);
    EXPECT_EQ(detect_dit(open_model_source(kData + "/dit/dit_original.pt").index), 50);
    EXPECT_EQ(detect_dit(open_model_source(kGolden + "dit/dit.safetensors").index), 50);
    EXPECT_EQ(detect_dit(open_model_source(write_pipeline_folder("dit_detect_pipe")).index), 100);
    EXPECT_EQ(detect_dit(open_model_source(write_pipeline_folder("dit_detect_novae", false)).index), 50);
    const FamilyMatch m = detect_model_family(open_model_source(kData + "/dit/dit_original.pt"));
    EXPECT_EQ(m.spec.name, "dit");
    EXPECT_EQ(m.score, 50);
}

TEST(DiTFamily, DetectIsZeroOnOtherFamiliesGoldenFiles) {
    int checked = 0;
    for (const auto& c : fs::directory_iterator(kGolden)) {
        if (!c.is_directory() || c.path().filename() == "dit") continue;
        for (const auto& f : fs::directory_iterator(c.path())) {
            const std::string ext = f.path().extension().string();
            if (ext != ".safetensors") continue;
            std::optional<ModelSource> src;
            try {
                src = open_model_source(f.path().string());
            } catch (const Error&) {
                continue;  // not a weights file (an I/O tensor file with odd dtypes ...)
            }
            EXPECT_EQ(detect_dit(src->index), 0) << f.path();
            ++checked;
        }
    }
    EXPECT_GT(checked, 10);
}

TEST(DiTFamily, PipelineFolderGeneratesAsDiTPipeline) {
    const std::unique_ptr<DiffusionModel> m = load_model(write_pipeline_folder("dit_gen_pipe"));
    ASSERT_EQ(m->family_name(), "dit");
    EXPECT_EQ(m->variant(), "DiT-32x2/2-64");
    EXPECT_EQ(m->guidance(), GuidanceKind::ClassConditional);
    EXPECT_EQ(m->objective().prediction, Prediction::Epsilon);
    EXPECT_EQ(m->latent_format().channels, 4);
    EXPECT_FLOAT_EQ(m->latent_format().scaling_factor, 0.18215f);
    const GenerationDefaults d = m->generation_defaults();
    EXPECT_EQ(d.width, 64);
    EXPECT_EQ(d.steps, 25);
    EXPECT_FLOAT_EQ(d.cfg_scale, 4.0f);
    EXPECT_EQ(d.sampler, "dpmpp_2m");
    EXPECT_EQ(d.prompt, "0");  // 10 classes: no ImageNet names
    EXPECT_EQ(probe_generation_defaults(m->path).width, 64);
    EXPECT_EQ(probe_generation_defaults(m->path).prompt, "0");
    EXPECT_EQ(probe_generation_defaults(kData + "/dit/dit_original.pt").width, 64);  // from the pos_embed buffer
    EXPECT_EQ(probe_generation_defaults(kGolden + "dit/dit.safetensors").width, 256);  // no size stated
    std::vector<std::string> names;
    for (const ComponentInfo& c : m->components()) names.push_back(c.name);
    EXPECT_EQ(names, (std::vector<std::string>{"transformer", "vae"}));

    // Class 3 of the reference batch [3, 7]: same noise (torch.manual_seed(0)), guidance 4, DDIM 5 steps.
    const auto r = pipeline_ref();
    GenerateParams p = tiny_params(3);
    p.initial_noise = r.at("noise").narrow(0, 0, 1).contiguous();
    const std::vector<GeneratedImage> out = generate(*m, p);
    ASSERT_EQ(out.size(), 1u);
    const Tensor want = r.at("latents").narrow(0, 0, 1);
    EXPECT_LT(rel_err(out[0].latents, want), 1e-5f) << max_abs_diff(out[0].latents, want);
    const Tensor image = clamp(out[0].decoded * 0.5f + 0.5f, 0.0f, 1.0f);
    EXPECT_LT(max_abs_diff(image, r.at("image").narrow(0, 0, 1)), 1e-4f);
    EXPECT_EQ(out[0].image.width, 64);
    EXPECT_EQ(out[0].image.height, 64);
    EXPECT_THAT(out[0].infotext, HasSubstr("Steps: 5, Sampler: DDIM"));
    EXPECT_THAT(out[0].infotext, HasSubstr("CFG scale: 4, Seed: 0, Size: 64x64"));
    EXPECT_THAT(out[0].infotext, HasSubstr(", Class label: 3"));

    // img2img through the VAE encoder: an init image of another size is resized, the result is the model's size.
    GenerateParams i2i = tiny_params(3);
    i2i.init_image = Image{32, 48, 3, std::vector<uint8_t>(32 * 48 * 3, 128)};
    i2i.strength = 0.6f;
    const GeneratedImage ii = generate(*m, i2i).at(0);
    EXPECT_EQ(ii.latents.shape(), (Shape{1, 4, 8, 8}));
    EXPECT_TRUE(all_finite(ii.decoded));

    // The reference's second row (class 7, its own noise) without guidance: one pass, as DiTPipeline at g = 1.
    GenerateParams p1 = tiny_params(7);
    p1.cfg_scale = 1.0f;
    p1.initial_noise = r.at("noise").narrow(0, 1, 1).contiguous();
    const Tensor nocfg = generate(*m, p1).at(0).latents;
    EXPECT_LT(rel_err(nocfg, r.at("latents_nocfg").narrow(0, 1, 1)), 1e-5f);
}

TEST(DiTFamily, EveryFileLayoutGeneratesDeterministically) {
    const std::vector<std::pair<std::string, ModelLoadOptions>> layouts{
        {kData + "/dit/dit_original.pt", tiny_options()},
        {kData + "/dit/dit_original.safetensors", tiny_options()},
        {kGolden + "dit/dit.safetensors", tiny_options()},
        {write_pipeline_folder("dit_layouts_pipe"), ModelLoadOptions{}},
    };
    GenerateParams p = tiny_params(5);
    p.steps = 3;
    p.sampler = "dpmpp_2m";
    p.seed = 11;
    std::vector<Tensor> results;
    for (const auto& [path, opts] : layouts) {
        SCOPED_TRACE(path);
        const std::unique_ptr<DiffusionModel> m = load_model(path, opts);
        ASSERT_EQ(m->family_name(), "dit");
        EXPECT_EQ(m->generation_defaults().width, 64);
        const GeneratedImage gi = generate(*m, p).at(0);
        EXPECT_EQ(gi.latents.shape(), (Shape{1, 4, 8, 8}));
        EXPECT_EQ(gi.image.width, 64);
        EXPECT_TRUE(all_finite(gi.latents));
        EXPECT_TRUE(all_finite(gi.decoded));
        results.push_back(gi.latents);
    }
    // The .pt and its safetensors twin are the same model; the diffusers files run diffusers' constants (timestep
    // frequency shift, MLP norm eps), so they differ slightly from the original, and not at all from each other.
    EXPECT_EQ(max_abs_diff(results[0], results[1]), 0.0f);
    EXPECT_EQ(max_abs_diff(results[2], results[3]), 0.0f);
    EXPECT_GT(max_abs_diff(results[0], results[2]), 0.0f);
    const std::unique_ptr<DiffusionModel> m = load_model(layouts[3].first);
    EXPECT_EQ(max_abs_diff(results[3], generate(*m, p).at(0).latents), 0.0f);  // same seed, same latents
    p.seed = 12;
    EXPECT_GT(max_abs_diff(results[3], generate(*m, p).at(0).latents), 0.0f);
    // Guidance as each layout's reference: DiTPipeline all 4 eps channels, the original forward_with_cfg only 3.
    const Tensor u = Tensor::zeros({1, 4, 2, 2}), c = Tensor::full({1, 4, 2, 2}, 1.0f);
    const std::unique_ptr<DiffusionModel> pt = load_model(layouts[0].first, layouts[0].second);
    const std::vector<float> og = pt->combine_guidance(u, c, 4.0f).contiguous().to_vector();
    const std::vector<float> dg = m->combine_guidance(u, c, 4.0f).contiguous().to_vector();
    for (size_t i = 0; i < 16; ++i) {
        EXPECT_EQ(dg[i], 4.0f) << i;
        EXPECT_EQ(og[i], i < 12 ? 4.0f : 1.0f) << i;  // channel 3 keeps the conditional eps
    }
    // The original file runs with the original's constants, the diffusers file with diffusers': both describe it.
    const std::unique_ptr<DiffusionModel> orig = load_model(kData + "/dit/dit_original.pt", tiny_options());
    EXPECT_THAT(orig->describe(), HasSubstr("family: dit\nlayout: original\ntransformer: DiT width=32 depth=2 heads=2"));
}

// Issue 13: a --vae file in the original (CompVis) names, bare or under first_stage_model. (also inside a whole
// checkpoint with other components), generates exactly as the same VAE in diffusers names.
TEST(DiTFamily, OriginalLayoutVaeFileGeneratesAsDiffusersNames) {
    const std::map<std::string, Tensor> orig =
        original_format::vae_to_original(load_weights(kGolden + "vae/vae_sd.safetensors").tensors);
    ASSERT_TRUE(orig.count("encoder.down.0.block.0.conv1.weight"));
    const std::string bare = temp_path("dit_vae_original_bare.safetensors");
    save_safetensors(bare, {orig.begin(), orig.end()});
    std::map<std::string, Tensor> whole;
    for (const auto& [k, v] : orig) whole["first_stage_model." + k] = v;
    whole["model.diffusion_model.time_embed.0.weight"] = Tensor::zeros({4, 4});
    whole["cond_stage_model.transformer.text_model.final_layer_norm.weight"] = Tensor::zeros({4});
    const std::string ckpt = temp_path("dit_vae_original_ckpt.safetensors");
    save_safetensors(ckpt, {whole.begin(), whole.end()});
    GenerateParams p = tiny_params(2);
    p.steps = 2;
    const GeneratedImage ref = generate(*load_model(kGolden + "dit/dit.safetensors", tiny_options()), p).at(0);
    for (const std::string& vae : {bare, ckpt}) {
        SCOPED_TRACE(vae);
        const GeneratedImage gi = generate(*load_model(kGolden + "dit/dit.safetensors", tiny_options(vae)), p).at(0);
        EXPECT_EQ(max_abs_diff(gi.latents, ref.latents), 0.0f);
        EXPECT_EQ(max_abs_diff(gi.decoded, ref.decoded), 0.0f);
    }
    // A stray tensor in the VAE's own namespace is named, not silently dropped.
    std::map<std::string, Tensor> stray = orig;
    stray["encoder.bogus.weight"] = Tensor::zeros({1});
    const std::string bad = temp_path("dit_vae_original_stray.safetensors");
    save_safetensors(bad, {stray.begin(), stray.end()});
    EXPECT_EQ(error_of([&] { load_model(kGolden + "dit/dit.safetensors", tiny_options(bad)); }),
              "vae: unrecognised tensor 'first_stage_model.encoder.bogus.weight'");
}

// A 1000-class DiT (width 64: one head by the presets' head size; no sample size), written by the test.
std::string write_imagenet_tiny() {
    DiTConfig c;
    c.hidden = 64;
    c.depth = 1;
    c.heads = 1;
    c.mlp_hidden = 256;
    c.num_classes = 1000;
    DiTTransformer2DModel net(c);
    init_random(net, 7);
    const std::string p = temp_path("dit_imagenet_tiny.safetensors");
    save_safetensors(p, state_dict(net));
    return p;
}

TEST(DiTFamily, ImageNetClassNamesAsThePrompt) {
    const std::string p = write_imagenet_tiny();
    ModelLoadOptions o;
    o.vae_path = kGolden + "vae/vae_sd.safetensors";
    o.configs["vae"] = case_config("vae", "vae_sd");
    const std::unique_ptr<DiffusionModel> m = load_model(p, o);
    const auto& dit = dynamic_cast<const DiTModel&>(*m);
    EXPECT_EQ(dit.class_of({.text = "golden retriever"}), 207);
    EXPECT_EQ(dit.class_of({.text = "207"}), 207);
    EXPECT_EQ(dit.class_of({.text = "Golden Retriever", .class_label = 207}), 207);
    EXPECT_EQ(dit.class_of({.negative = true}), 1000);
    EXPECT_EQ(dit.encode({.text = "white shark"}).at("class_labels").to_vector(), std::vector<float>{2.0f});
    EXPECT_EQ(m->generation_defaults().width, 256);  // no sample size in the file: DiT-XL/2-256's
    EXPECT_EQ(m->generation_defaults().prompt, "golden retriever");
    EXPECT_EQ(error_of([&] { dit.class_of({.text = "a photo of a cat"}); }),
              "DiT takes a class label, not a prompt: 'a photo of a cat' is not one of its classes (" +
                  error_of([] { imagenet_class_id("a photo of a cat"); }) +
                  "). Pass --class-label N (0..999) or an ImageNet class name as the prompt (the names are listed "
                  "in src/models/dit/imagenet_classes.inc)");
    EXPECT_EQ(error_of([&] { dit.class_of({.text = "tench", .class_label = 207}); }),
              "--class-label 207 and the prompt 'tench' (class 0) name different classes; give one");
    EXPECT_EQ(error_of([&] { dit.class_of({}); }),
              "DiT needs a class: --class-label N (0..999) or an ImageNet class name as the prompt (e.g. \"golden "
              "retriever\")");
    // Any size runs when the file does not fix it; the seam's generate() gets the class from the prompt.
    GenerateParams gp = tiny_params(-1);
    gp.prompt = "golden retriever";
    gp.width = gp.height = 32;
    gp.steps = 2;
    const GeneratedImage gi = generate(*m, gp).at(0);
    EXPECT_EQ(gi.latents.shape(), (Shape{1, 4, 4, 4}));
    EXPECT_THAT(gi.infotext, HasSubstr(", Class label: 207"));
}

TEST(DiTFamily, ErrorsNameWhatIsMissingAndTheFlag) {
    // A bare transformer (either layout) has no VAE.
    const std::string bare = kGolden + "dit/dit.safetensors";
    ModelLoadOptions no_vae = tiny_options("");
    const std::string hint = "pass the Stable Diffusion VAE DiT was trained with (sd-vae-ft-ema or sd-vae-ft-mse: 4 "
                             "latent channels, scaling 0.18215) with --vae";
    EXPECT_EQ(error_of([&] { load_model(bare, no_vae); }),
              "'" + bare + "' is a DiT transformer (diffusers layout) without a VAE; " + hint);
    const std::string orig = kData + "/dit/dit_original.pt";
    EXPECT_EQ(error_of([&] { load_model(orig, no_vae); }),
              "'" + orig + "' is a DiT transformer (original layout) without a VAE; " + hint);
    const std::string novae = write_pipeline_folder("dit_err_novae", false);
    EXPECT_EQ(error_of([&] { load_model(novae); }), "DiT folder '" + novae + "' has no vae/; " + hint);
    // A VAE file that is no VAE.
    EXPECT_EQ(error_of([&] { load_model(bare, tiny_options(bare)); }),
              "VAE '" + bare + "' has no decoder (decoder.conv_in.weight): it is not an AutoencoderKL file; " + hint);
    // A VAE of other latents (the 16-channel Flux/SD3 VAE).
    ModelLoadOptions flux_vae = tiny_options(kGolden + "vae/vae_flux.safetensors");
    flux_vae.configs["vae"] = case_config("vae", "vae_flux");
    EXPECT_EQ(error_of([&] { load_model(bare, flux_vae); }),
              "DiT '" + bare + "' works on 4-channel latents but the VAE '" + kGolden +
                  "vae/vae_flux.safetensors' makes 16");
    // Flags DiT cannot use.
    ModelLoadOptions t5 = tiny_options();
    t5.t5xxl = "/models/t5xxl_fp16.safetensors";
    EXPECT_EQ(error_of([&] { load_model(bare, t5); }),
              "--t5xxl '/models/t5xxl_fp16.safetensors': DiT ('" + bare + "') is class-conditional and uses no text "
              "encoder; give the class with --class-label N or an ImageNet class name as the prompt");
    ModelLoadOptions clip = tiny_options();
    clip.clip_l = "clip_l.safetensors";
    EXPECT_THAT(error_of([&] { load_model(bare, clip); }), HasSubstr("--clip-l 'clip_l.safetensors': DiT ('"));
    ModelLoadOptions v = tiny_options();
    v.prediction = "v_prediction";
    EXPECT_EQ(error_of([&] { load_model(bare, v); }),
              "--prediction 'v_prediction': DiT ('" + bare +
                  "') predicts epsilon (with a learned variance); it has no other prediction type");
    // A recognised original file that lost its class table: detected (score 1), the loader names the tensor.
    std::vector<std::pair<std::string, Tensor>> kept;
    for (const auto& [k, t] : load_weights(kData + "/dit/dit_original.safetensors").tensors)
        if (!k.starts_with("y_embedder.")) kept.push_back({k, t});
    const std::string cut = temp_path("dit_no_y_embedder.safetensors");
    save_safetensors(cut, kept);
    EXPECT_EQ(detect_model_family(open_model_source(cut)).spec.name, "dit");
    EXPECT_EQ(error_of([&] { load_model(cut, tiny_options()); }),
              "DiT original checkpoint '" + cut + "' is missing tensor 'y_embedder.embedding_table.weight'");

    // A hostile scheduler config is named with its file.
    const std::string bad_sched = write_pipeline_folder("dit_err_sched");
    std::ofstream(bad_sched + "/scheduler/scheduler_config.json") << R"({"num_train_timesteps": 1000000000})";
    EXPECT_EQ(error_of([&] { load_model(bad_sched); }),
              "'" + bad_sched + "/scheduler/scheduler_config.json': DiT scheduler_config: num_train_timesteps must be in "
              "[2, 100000], got 1000000000");
    std::ofstream(bad_sched + "/scheduler/scheduler_config.json") << R"({"prediction_type": "v_prediction"})";
    EXPECT_EQ(error_of([&] { load_model(bad_sched); }),
              "'" + bad_sched + "/scheduler/scheduler_config.json': DiT scheduler_config: prediction_type "
              "'v_prediction': DiT predicts epsilon");
    std::ofstream(bad_sched + "/scheduler/scheduler_config.json") << R"({"beta_end": "big"})";
    EXPECT_THAT(error_of([&] { load_model(bad_sched); }),
                HasSubstr("'" + bad_sched + "/scheduler/scheduler_config.json': DiT scheduler_config"));

    // Requests: labels out of range, a negative prompt, a prompt that is no class, the wrong size.
    const std::unique_ptr<DiffusionModel> m = load_model(bare, tiny_options());
    GenerateParams p = tiny_params(10);
    EXPECT_EQ(error_of([&] { generate(*m, p); }), "class label 10 is out of range for this DiT: 0..9");
    p.class_label = 3;
    p.negative_prompt = "blurry";
    EXPECT_EQ(error_of([&] { generate(*m, p); }),
              "DiT takes no negative prompt (got 'blurry'): the unconditional side of its guidance is the null "
              "class 10");
    p.negative_prompt.clear();
    p.class_label = -1;
    p.prompt = "a cat";
    EXPECT_EQ(error_of([&] { generate(*m, p); }),
              "DiT takes a class label, not a prompt: 'a cat' is not one of its classes (--class-label 'a cat': the "
              "model has 10 classes, not ImageNet's 1000, so only class numbers 0..9 work). Pass --class-label N "
              "(0..9)");
    p.prompt.clear();
    EXPECT_EQ(error_of([&] { generate(*m, p); }), "DiT needs a class: --class-label N (0..9)");
    p.class_label = 3;
    p.width = p.height = 128;
    EXPECT_THAT(error_of([&] { generate(*m, p); }),
                HasSubstr("DiT 'dit' makes 64x64 images only (its position embedding is fixed for 8x8 latents), got "
                          "128x128"));
}

TEST(DiTFamily, Cli) {
    const std::string folder = write_pipeline_folder("dit_cli_pipe");
    const std::string out = temp_path("dit_cli.png");
    const test::CliRun g = test::run_cli("generate -m " + folder + " --class-label 3 --steps 2 -s 5 -q -o " + out);
    EXPECT_EQ(g.code, 0) << g.out;
    const Image img = read_image(out);
    EXPECT_EQ(img.width, 64);
    EXPECT_EQ(img.height, 64);
    const test::CliRun i = test::run_cli("info " + folder);
    EXPECT_EQ(i.code, 0) << i.out;
    EXPECT_THAT(i.out, HasSubstr("family: dit\nlayout: diffusers\n"));
    EXPECT_THAT(i.out, HasSubstr("variant: DiT-32x2/2-64\n"));
    EXPECT_THAT(i.out, HasSubstr("objective: epsilon, guidance: class_cfg\n"));
    const test::CliRun b = test::run_cli("bench -m " + folder + " -W 64 -H 64 --steps 1 --repeat 1");
    EXPECT_EQ(b.code, 0) << b.out;
    EXPECT_THAT(b.out, HasSubstr("denoise_step median_s="));
    const std::string bare = write_imagenet_tiny();
    const test::CliRun e = test::run_cli("generate -m " + bare + " -p 'golden retriever' -q -o " + out);
    EXPECT_NE(e.code, 0) << e.out;
    EXPECT_THAT(e.out, HasSubstr("nuance: error: '" + bare + "' is a DiT transformer (diffusers layout) without a "
                                 "VAE; pass the Stable Diffusion VAE DiT was trained with"));
    const test::CliRun t5 = test::run_cli("generate -m " + bare + " --class-label 1 --t5xxl t5.safetensors -q -o " + out);
    EXPECT_NE(t5.code, 0) << t5.out;
    EXPECT_THAT(t5.out, HasSubstr("--t5xxl 't5.safetensors': DiT ('" + bare + "') is class-conditional"));
}

}  // namespace
}  // namespace nuance
