// The "flux" family on the seam: detection over every layout (and 0 on the other families' goldens), load_model from
// a BFL file + --clip-l --t5xxl --vae, a ComfyUI all-in-one and a diffusers folder (same weights -> same image),
// generate() end to end at tiny size (finite, deterministic, right size), defaults, errors, and the CLI.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include "../test_util.h"
#include "../text/t5_tokenizer_files.h"
#include "io/safetensors.h"
#include "io/weights.h"
#include "models/clip/clip_text.h"
#include "models/convert/original_parts.h"
#include "models/flux/flux_family.h"
#include "models/flux/flux_original.h"
#include "models/model_family.h"
#include "models/t5/t5_encoder.h"
#include "models/vae/autoencoder_kl.h"
#include "pipelines/generate.h"

namespace nuance {
namespace {

namespace fs = std::filesystem;
using test::error_of;
using ::testing::HasSubstr;
using Pairs = std::vector<std::pair<std::string, Tensor>>;

const std::string kGolden = std::string(NUANCE_TEST_DATA) + "/golden/";

// Tiny components: the flux_transformer golden's widths (D 32 = 2 x 16, joint_attention_dim 32, pooled 24), a
// CLIP-L of width 24, a T5 of d_model 32 (the real 32128-token vocabulary, so the built-in tokenizers work) and a
// two-level 16-channel VAE without quant convs (Flux's ae: downscale 2 here).
struct TinyFlux {
    Pairs transformer, clip, t5, vae;  // diffusers / transformers names
};

TinyFlux make_tiny_flux(bool dev) {
    TinyFlux t;
    FluxConfig fc;
    fc.in_channels = fc.out_channels = 64;
    fc.hidden = 32;
    fc.heads = 2;
    fc.head_dim = 16;
    fc.mlp_hidden = 128;  // diffusers' mlp_ratio 4 (tools/flux_tiny_reference.py builds the same model)
    fc.joint_attention_dim = 32;
    fc.pooled_projection_dim = 24;
    fc.num_double = 1;
    fc.num_single = 1;
    fc.guidance_embeds = dev;
    fc.axes_dims_rope = {4, 6, 6};
    FluxTransformer2DModel tr(fc);
    init_random(tr, 1, 0.1f);
    t.transformer = state_dict(tr);

    ClipTextConfig cc;
    cc.hidden = 24;
    cc.intermediate = 48;
    cc.layers = 1;
    cc.heads = ClipTextConfig::default_heads(24);
    cc.act = ClipTextConfig::default_act(24);
    ClipTextModel clip(cc);
    init_random(clip, 2, 0.1f);
    t.clip = state_dict(clip);

    T5Config tc;
    tc.d_model = 32;
    tc.d_kv = 8;
    tc.heads = 4;
    tc.d_ff = 64;
    tc.layers = 1;
    T5EncoderModel t5(tc);
    init_random(t5, 3, 0.1f);
    t.t5 = state_dict(t5);

    AutoencoderKLConfig vc;
    vc.block_out_channels = {32, 32};
    vc.layers_per_block = 1;
    vc.latent_channels = 16;
    vc.use_quant_conv = vc.use_post_quant_conv = false;
    vc.scaling_factor = 0.3611f;
    vc.shift_factor = 0.1159f;
    AutoencoderKL vae(vc);
    init_random(vae, 4, 0.1f);
    t.vae = state_dict(vae);
    return t;
}

std::map<std::string, Tensor> to_map(const Pairs& p) { return {p.begin(), p.end()}; }

Pairs with_prefix(const Pairs& p, const std::string& prefix) {
    Pairs out;
    for (const auto& [k, v] : p) out.push_back({prefix + k, v});
    return out;
}

std::string temp_dir(const std::string& name) {
    const fs::path d = fs::path(NUANCE_SCRATCH_DIR) / name;
    fs::remove_all(d);
    fs::create_directories(d);
    return d.string();
}

void write_text(const std::string& path, const std::string& text) { std::ofstream(path) << text; }

struct SplitFiles {
    std::string model, clip_l, t5xxl, vae;
};

// flux1-dev.safetensors (BFL keys, bare) + clip_l.safetensors + t5xxl_fp16.safetensors + ae.safetensors (BFL's
// autoencoder layout = the original SD VAE names: encoder.down.N.block.M ...).
SplitFiles write_split(const TinyFlux& t, const std::string& dir) {
    SplitFiles f{dir + "/flux1-dev.safetensors", dir + "/clip_l.safetensors", dir + "/t5xxl_fp16.safetensors",
                 dir + "/ae.safetensors"};
    save_safetensors(f.model, flux_diffusers_to_bfl(to_map(t.transformer)));
    save_safetensors(f.clip_l, t.clip);
    save_safetensors(f.t5xxl, t.t5);
    const auto ae = original_format::vae_to_original(to_map(t.vae));
    save_safetensors(f.vae, Pairs(ae.begin(), ae.end()));
    return f;
}

// ComfyUI all-in-one: model.diffusion_model.<BFL> + text_encoders.{clip_l,t5xxl}.transformer.* + vae.<original>.
std::string write_all_in_one(const TinyFlux& t, const std::string& dir) {
    Pairs all = with_prefix(flux_diffusers_to_bfl(to_map(t.transformer)), "model.diffusion_model.");
    for (auto& kv : with_prefix(t.clip, "text_encoders.clip_l.transformer.")) all.push_back(kv);
    for (auto& kv : with_prefix(t.t5, "text_encoders.t5xxl.transformer.")) all.push_back(kv);
    const auto ae = original_format::vae_to_original(to_map(t.vae));
    for (auto& kv : with_prefix(Pairs(ae.begin(), ae.end()), "vae.")) all.push_back(kv);
    const std::string p = dir + "/flux1-dev-fp8-all.safetensors";
    save_safetensors(p, all);
    return p;
}

// A diffusers FluxPipeline folder (schnell's scheduler config when !dev).
std::string write_folder(const TinyFlux& t, const std::string& dir, bool dev) {
    for (const char* c : {"transformer", "text_encoder", "text_encoder_2", "vae", "scheduler"})
        fs::create_directories(dir + "/" + c);
    write_text(dir + "/model_index.json", R"({"_class_name": "FluxPipeline"})");
    save_safetensors(dir + "/transformer/diffusion_pytorch_model.safetensors", t.transformer);
    save_safetensors(dir + "/text_encoder/model.safetensors", t.clip);
    save_safetensors(dir + "/text_encoder_2/model.safetensors", t.t5);
    save_safetensors(dir + "/vae/diffusion_pytorch_model.safetensors", t.vae);
    write_text(dir + "/vae/config.json", R"({"latent_channels": 16, "scaling_factor": 0.3611, "shift_factor": 0.1159,
        "norm_num_groups": 32, "use_quant_conv": false, "use_post_quant_conv": false})");
    write_text(dir + "/scheduler/scheduler_config.json",
               dev ? R"({"shift": 3.0, "use_dynamic_shifting": true, "base_shift": 0.5, "max_shift": 1.15})"
                   : R"({"shift": 1.0, "use_dynamic_shifting": false})");
    return dir;
}

GenerateParams tiny_params() {
    GenerateParams p;
    p.prompt = "a red fox in the snow";
    p.width = p.height = 8;  // latent 4x4 -> 4 packed tokens
    p.steps = 2;
    p.sampler = "euler";
    p.scheduler = "";
    p.cfg_scale = 3.5f;
    p.seed = 7;
    return p;
}

void expect_finite_image(const GeneratedImage& g, int w, int h) {
    EXPECT_EQ(g.image.width, w);
    EXPECT_EQ(g.image.height, h);
    EXPECT_EQ(g.latents.shape(), (Shape{1, 16, h / 2, w / 2}));
    for (float v : g.decoded.f32().contiguous().to_vector()) ASSERT_TRUE(std::isfinite(v));
}

std::vector<float> latents_of(const GeneratedImage& g) { return g.latents.f32().contiguous().to_vector(); }

TEST(FluxFamily, DetectScoresEveryLayoutAndIgnoresOtherFamilies) {
    // The golden BFL files, bare and under ComfyUI's prefix, and the diffusers-named goldens: 50 (transformer only).
    for (const char* f : {"original_flux/flux_dev_original.safetensors", "original_flux/flux_schnell_original.safetensors",
                          "flux_transformer/flux_dev.safetensors", "flux_transformer/flux_schnell.safetensors"}) {
        const ModelSource src = open_model_source(kGolden + f);
        EXPECT_EQ(detect_flux(src.index), 50) << f;
        EXPECT_EQ(detect_model_family(src).spec.name, "flux") << f;
    }
    const WeightFile bfl = load_weights(kGolden + "original_flux/flux_dev_original.safetensors");
    Pairs comfy;
    for (const auto& [k, v] : bfl.tensors) comfy.push_back({"model.diffusion_model." + k, v});
    const std::string comfy_path = temp_dir("flux_detect") + "/comfy_flux.safetensors";
    save_safetensors(comfy_path, comfy);
    const ModelSource cs = open_model_source(comfy_path);
    EXPECT_EQ(detect_flux(cs.index), 50);
    const FamilyMatch m = detect_model_family(cs);  // not SD's original layout, though under model.diffusion_model.
    EXPECT_EQ(m.spec.name, "flux");
    EXPECT_EQ(m.score, 50);
    // Other families' golden files: not Flux.
    int others = 0;
    for (const auto& e : fs::recursive_directory_iterator(kGolden)) {
        const std::string p = e.path().string();
        const std::string rel = fs::relative(e.path(), kGolden).string();  // the checkout's path may say "flux"
        if (!e.is_regular_file() || e.path().extension() != ".safetensors" || rel.rfind("flux_transformer/", 0) == 0 ||
            rel.rfind("original_flux/", 0) == 0)
            continue;
        EXPECT_EQ(detect_flux(open_model_source(p).index), 0) << p;
        ++others;
    }
    EXPECT_GE(others, 15);  // vae, unet_sd15/sd2/sdxl, clip_text, t5_encoder, sd3_transformer, dit, original_* ...
}

TEST(FluxFamily, SplitFilesAllInOneAndFolderGiveTheSameImage) {
    const TinyFlux t = make_tiny_flux(true);
    const std::string dir = temp_dir("flux_layouts");
    const SplitFiles f = write_split(t, dir);
    ModelLoadOptions o;
    o.clip_l = f.clip_l;
    o.t5xxl = f.t5xxl;
    o.vae_path = f.vae;
    const auto split = load_model(f.model, o);
    ASSERT_EQ(split->family_name(), "flux");
    EXPECT_EQ(split->variant(), "flux-dev");
    EXPECT_EQ(split->guidance(), GuidanceKind::Distilled);
    const auto& fm = dynamic_cast<const FluxModel&>(*split);
    EXPECT_EQ(fm.max_sequence_length, 512);
    const LatentFormat lf = split->latent_format();
    EXPECT_EQ(lf.channels, 16);
    EXPECT_FLOAT_EQ(lf.scaling_factor, 0.3611f);
    EXPECT_FLOAT_EQ(lf.shift_factor, 0.1159f);
    const Objective ob = split->objective();
    EXPECT_TRUE(ob.is_flow());
    EXPECT_EQ(ob.flow_timestep_scale, 1000.0);  // predict passes t / 1000 (sigma) on, as FluxPipeline
    EXPECT_TRUE(ob.flow.dynamic);
    EXPECT_TRUE(ob.flow.linspace_sigmas);
    EXPECT_EQ(ob.flow.base_seq_len, 256);
    EXPECT_EQ(ob.flow.max_seq_len, 4096);

    const GenerateParams p = tiny_params();
    const std::vector<GeneratedImage> a = generate(*split, p);
    ASSERT_EQ(a.size(), 1u);
    expect_finite_image(a[0], 8, 8);
    EXPECT_THAT(a[0].infotext, HasSubstr("CFG scale: 1, Distilled CFG Scale: 3.5, Seed: 7"));
    EXPECT_EQ(latents_of(generate(*split, p).at(0)), latents_of(a[0]));  // deterministic for a seed
    GenerateParams other = p;
    other.seed = 8;
    EXPECT_NE(latents_of(generate(*split, other).at(0)), latents_of(a[0]));
    GenerateParams g2 = p;
    g2.cfg_scale = 1.0f;  // the distilled guidance is a model input
    EXPECT_NE(latents_of(generate(*split, g2).at(0)), latents_of(a[0]));

    const auto aio = load_model(write_all_in_one(t, dir));
    EXPECT_EQ(aio->family_name(), "flux");
    EXPECT_EQ(detect_flux(open_model_source(aio->path).index), 100);
    const std::vector<float> la = latents_of(a[0]), lb = latents_of(generate(*aio, p).at(0));
    ASSERT_EQ(la.size(), lb.size());
    for (size_t i = 0; i < la.size(); ++i) EXPECT_NEAR(la[i], lb[i], 1e-5f) << i;

    const std::string folder = write_folder(t, temp_dir("flux_folder_dev"), true);
    EXPECT_EQ(detect_flux(open_model_source(folder).index), 100);
    const auto fol = load_model(folder);
    EXPECT_EQ(fol->family_name(), "flux");
    const std::vector<float> lc = latents_of(generate(*fol, p).at(0));
    ASSERT_EQ(la.size(), lc.size());
    for (size_t i = 0; i < la.size(); ++i) EXPECT_NEAR(la[i], lc[i], 1e-5f) << i;
}

TEST(FluxFamily, SchnellFolderIsOnePassWithoutShiftOrGuidance) {
    const TinyFlux t = make_tiny_flux(false);
    const auto m = load_model(write_folder(t, temp_dir("flux_folder_schnell"), false));
    EXPECT_EQ(m->variant(), "flux-schnell");
    EXPECT_EQ(m->guidance(), GuidanceKind::None);
    EXPECT_EQ(dynamic_cast<const FluxModel&>(*m).max_sequence_length, 256);
    const Objective o = m->objective();
    EXPECT_FALSE(o.flow.dynamic);
    EXPECT_EQ(o.flow.shift, 1.0);
    const GenerationDefaults d = m->generation_defaults();
    EXPECT_EQ(d.steps, 4);
    EXPECT_EQ(d.cfg_scale, 0.0f);
    EXPECT_EQ(d.width, 1024);
    EXPECT_EQ(d.sampler, "euler");
    GenerateParams p = tiny_params();
    p.width = 12;  // 6x4 latent: 3x2 tokens
    const std::vector<GeneratedImage> a = generate(*m, p);
    expect_finite_image(a.at(0), 12, 8);
    p.cfg_scale = 9.0f;  // schnell ignores the guidance scale
    EXPECT_EQ(latents_of(generate(*m, p).at(0)), latents_of(a[0]));
    EXPECT_THAT(m->describe(), HasSubstr("family: flux\nguidance: none"));
}

// diffusers 0.31's FluxPipeline steps on the same tiny dev folder (tools/flux_tiny_reference.py; its noise, final
// latents and decoded image are in tests/data/golden/flux_pipeline_tiny/ref.safetensors): T5 512 tokens, CLIP-L
// pooled, dynamic shift at 4 tokens, 2 Euler steps with distilled guidance 3.5, VAE scale/shift. Measured: latents
// max abs 4e-6, decoded 3e-6.
TEST(FluxFamily, TinyPipelineMatchesDiffusers) {
    const WeightFile ref = load_weights(kGolden + "flux_pipeline_tiny/ref.safetensors");
    const auto m = load_model(write_folder(make_tiny_flux(true), temp_dir("flux_folder_ref"), true));
    GenerateParams p = tiny_params();
    p.initial_noise = ref.tensors.at("noise").f32().contiguous();
    ConditioningRequest r;
    r.text = p.prompt;
    const Conditioning c = m->encode(r);
    for (const char* name : {"context", "pooled"}) {
        const std::vector<float> want = ref.tensors.at(name).f32().contiguous().to_vector();
        const std::vector<float> got = c.at(name).f32().contiguous().to_vector();
        ASSERT_EQ(got.size(), want.size()) << name;
        float worst = 0;
        for (size_t i = 0; i < got.size(); ++i) worst = std::max(worst, std::abs(got[i] - want[i]));
        EXPECT_LT(worst, 1e-4f) << name;
    }
    const GeneratedImage g = generate(*m, p).at(0);
    for (const char* name : {"latents", "decoded"}) {
        const std::vector<float> want = ref.tensors.at(name).f32().contiguous().to_vector();
        const std::vector<float> got = (std::string(name) == "latents" ? g.latents : g.decoded).f32().contiguous()
                                           .to_vector();
        ASSERT_EQ(got.size(), want.size()) << name;
        float worst = 0;
        for (size_t i = 0; i < got.size(); ++i) worst = std::max(worst, std::abs(got[i] - want[i]));
        EXPECT_LT(worst, 1e-4f) << name;
        RecordProperty(std::string(name) + "_max_abs", std::to_string(worst));
    }
}

TEST(FluxFamily, AFoldersOwnT5TokenizerIsUsed) {
    // tokenizer_2/spiece.model (the built-in vocabulary) gives the built-in ids; an edited tokenizer.json alone
    // ("▁snow" renamed "▁sn0w") makes "sn0w" encode as "snow" did.
    const TinyFlux t = make_tiny_flux(true);
    const std::string same = write_folder(t, temp_dir("flux_own_spiece"), true);
    test::write_file(same + "/tokenizer_2/spiece.model", [] {
        std::ifstream f(test::builtin_spiece_path(), std::ios::binary);
        return std::string(std::istreambuf_iterator<char>(f), {});
    }());
    const std::string edited = write_folder(t, temp_dir("flux_own_json"), true);
    const int snow = T5Tokenizer::builtin().token_id("\xe2\x96\x81snow");
    test::write_file(edited + "/tokenizer_2/tokenizer.json", test::builtin_tokenizer_json([&](SpieceModel& m) {
                         m.pieces[(size_t)snow].piece = "\xe2\x96\x81sn0w";
                     }).dump());
    const auto a = load_model(same), b = load_model(edited), plain = load_model(write_folder(t, temp_dir("flux_plain"), true));
    EXPECT_THAT(a->describe(), HasSubstr("tokenizer=the folder's tokenizer_2/"));
    EXPECT_THAT(plain->describe(), HasSubstr("tokenizer=built-in"));
    auto ctx = [](const DiffusionModel& m, const std::string& p) {
        return m.encode({.text = p}).at("context").f32().contiguous().to_vector();
    };
    EXPECT_EQ(ctx(*a, "a red fox in the snow"), ctx(*plain, "a red fox in the snow"));
    EXPECT_EQ(ctx(*b, "sn0w"), ctx(*plain, "snow"));
    EXPECT_NE(ctx(*b, "snow"), ctx(*plain, "snow"));
}

TEST(FluxFamily, DevDefaultsFollowFluxPipeline) {
    const GenerationDefaults d = flux_defaults(false);
    EXPECT_EQ(d.width, 1024);
    EXPECT_EQ(d.height, 1024);
    EXPECT_EQ(d.steps, 28);
    EXPECT_EQ(d.cfg_scale, 3.5f);
    EXPECT_EQ(d.sampler, "euler");
    EXPECT_EQ(probe_generation_defaults(kGolden + "original_flux/flux_schnell_original.safetensors").steps, 4);
    EXPECT_EQ(probe_generation_defaults(kGolden + "original_flux/flux_dev_original.safetensors").steps, 28);
}

TEST(FluxFamily, IncompleteFilesNameWhatIsMissingAndTheFlag) {
    const TinyFlux t = make_tiny_flux(true);
    const std::string dir = temp_dir("flux_errors");
    const SplitFiles f = write_split(t, dir);
    ModelLoadOptions o;
    EXPECT_EQ(error_of([&] { load_model(f.model, o); }),
              "'" + f.model + "' has no CLIP-L text encoder (text_encoders.clip_l.transformer.*); pass one with "
              "--clip-l (e.g. clip_l.safetensors)");
    o.clip_l = f.clip_l;
    EXPECT_EQ(error_of([&] { load_model(f.model, o); }),
              "'" + f.model + "' has no T5-XXL text encoder (text_encoders.t5xxl.transformer.*), which Flux needs; "
              "pass one with --t5xxl (e.g. t5xxl_fp16.safetensors)");
    o.t5xxl = f.t5xxl;
    EXPECT_EQ(error_of([&] { load_model(f.model, o); }),
              "'" + f.model + "' has no VAE (vae.* or first_stage_model.*); pass one with --vae (e.g. ae.safetensors)");
    o.vae_path = f.vae;
    o.clip_g = f.clip_l;
    EXPECT_EQ(error_of([&] { load_model(f.model, o); }),
              "--clip-g '" + f.clip_l + "': Flux.1 has no CLIP-G text encoder (it uses --clip-l and --t5xxl)");
    // A T5 of the wrong width for this transformer (d_model 16, joint_attention_dim 32).
    o.clip_g.clear();
    T5Config tc;
    tc.d_model = 16;
    tc.d_kv = 4;
    tc.heads = 4;
    tc.d_ff = 32;
    tc.layers = 1;
    T5EncoderModel narrow(tc);
    init_random(narrow, 5, 0.1f);
    o.t5xxl = dir + "/t5_narrow.safetensors";
    save_safetensors(o.t5xxl, state_dict(narrow));
    EXPECT_EQ(error_of([&] { load_model(f.model, o); }),
              "Flux '" + f.model + "': the T5 text encoder's d_model 16 (--t5xxl '" + o.t5xxl +
                  "') does not match the transformer's joint_attention_dim 32");
    // A diffusers folder without text_encoder_2/.
    const std::string folder = write_folder(t, temp_dir("flux_folder_no_t5"), true);
    fs::remove_all(folder + "/text_encoder_2");
    EXPECT_EQ(error_of([&] { load_model(folder); }),
              "diffusers folder '" + folder + "' has no text_encoder_2/ (T5-XXL), which Flux needs; pass one with "
              "--t5xxl");
    ModelLoadOptions fo;
    fo.t5xxl = f.t5xxl;
    EXPECT_EQ(load_model(folder, fo)->family_name(), "flux");  // --t5xxl supplies it
}

TEST(FluxFamily, CliGeneratesWithSplitFilesAndInfoShowsTheFamily) {
    const TinyFlux t = make_tiny_flux(true);
    const std::string dir = temp_dir("flux_cli");
    const SplitFiles f = write_split(t, dir);
    const std::string out = dir + "/out.png";
    const std::string comps = " --clip-l '" + f.clip_l + "' --t5xxl '" + f.t5xxl + "' --vae '" + f.vae + "'";
    const test::CliRun r = test::run_cli("generate -m '" + f.model + "'" + comps +
                                         " -p 'a fox' -n 'blurry' -W 8 -H 8 --steps 2 --seed 3 -o '" + out + "'");
    EXPECT_EQ(r.code, 0) << r.out;
    EXPECT_THAT(r.out, HasSubstr("note: flux-dev takes no negative prompt (guidance: distilled); --negative-prompt is "
                                 "ignored")) << r.out;
    EXPECT_TRUE(fs::exists(out)) << r.out;
    const test::CliRun info = test::run_cli("info '" + f.model + "'" + comps);
    EXPECT_EQ(info.code, 0) << info.out;
    EXPECT_THAT(info.out, HasSubstr("family: flux")) << info.out;
    EXPECT_THAT(info.out, HasSubstr("variant: flux-dev")) << info.out;
    const test::CliRun bad = test::run_cli("generate -m '" + f.model + "' -p x -W 8 -H 8 --steps 1 -o '" + out + "'");
    EXPECT_EQ(bad.code, 1) << bad.out;
    EXPECT_THAT(bad.out, HasSubstr("pass one with --clip-l")) << bad.out;
}

}  // namespace
}  // namespace nuance
