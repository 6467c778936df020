// The SD3 family on the registry seam: detection over every layout (and 0 on the other families' golden files),
// load_model from the all-in-one file, the split files (--clip-l --clip-g --t5xxl --vae) and a diffusers folder,
// the conditioning as StableDiffusion3Pipeline builds it, generate() end to end at tiny size, and the errors.
// Every component is written by the test: tiny CLIP-L (8 wide) + CLIP-G (16) padded to the T5 width (32), a tiny T5
// (d_model 32), the mmdit 'tiny' preset (context 32, pooled 8 + 16 = 24) and a tiny 16-channel VAE.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include "../test_util.h"
#include "../text/t5_tokenizer_files.h"
#include "io/png_meta.h"
#include "io/safetensors.h"
#include "io/weights.h"
#include "models/convert/original_parts.h"
#include "models/mmdit/mmdit_presets.h"
#include "models/mmdit/sd3_family.h"
#include "models/mmdit/sd3_model.h"
#include "models/model_family.h"
#include "models/t5/t5_loader.h"
#include "pipelines/generate.h"

namespace nuance {
namespace {

namespace fs = std::filesystem;
using test::error_of;
using ::testing::HasSubstr;
using Dict = std::vector<std::pair<std::string, Tensor>>;

const std::string kGolden = std::string(NUANCE_TEST_DATA) + "/golden/";

ClipTextConfig tiny_clip(int64_t hidden) {
    ClipTextConfig c;
    c.hidden = hidden;
    c.intermediate = 2 * hidden;
    c.layers = 2;
    c.heads = ClipTextConfig::default_heads(hidden);
    c.act = ClipTextConfig::default_act(hidden);
    c.projection_dim = hidden;
    return c;
}

T5Config tiny_t5() {
    T5Config c;
    c.d_model = 32;
    c.d_kv = 8;
    c.heads = 4;
    c.d_ff = 16;
    c.layers = 1;
    return c;
}

AutoencoderKLConfig tiny_vae() {
    AutoencoderKLConfig c;
    c.block_out_channels = {8, 8};
    c.layers_per_block = 1;
    c.latent_channels = 16;
    c.norm_groups = 8;  // what detect() guesses for widths of 8
    c.use_quant_conv = c.use_post_quant_conv = false;
    return c;
}

// The components once, as diffusers-named tensor lists.
struct Parts {
    Dict clip_l, clip_g, t5, vae;
    std::string dir;
    std::string mmdit_original, mmdit_diffusers;  // files
};

template <class M, class C>
Dict random_dict(const C& cfg, uint64_t seed) {
    M m(cfg);
    init_random(m, seed, 0.2f);
    return state_dict(m);
}

Dict prefixed(const Dict& d, const std::string& p) {
    Dict out;
    for (const auto& [k, v] : d) out.emplace_back(p + k, v);
    return out;
}

std::map<std::string, Tensor> to_map(const Dict& d) { return {d.begin(), d.end()}; }

const Parts& parts() {
    static const Parts p = [] {
        Parts q;
        q.dir = (fs::path(NUANCE_SCRATCH_DIR) / "sd3fam").string();
        fs::create_directories(q.dir);
        q.clip_l = random_dict<ClipTextModel>(tiny_clip(8), 1);
        q.clip_g = random_dict<ClipTextModel>(tiny_clip(16), 2);
        q.t5 = random_dict<T5EncoderModel>(tiny_t5(), 3);
        q.vae = random_dict<AutoencoderKL>(tiny_vae(), 4);
        q.mmdit_original = q.dir + "/mmdit_original.safetensors";
        q.mmdit_diffusers = q.dir + "/sd3_transformer_only.safetensors";
        write_random_mmdit(q.mmdit_original, mmdit_preset("tiny"), DType::F32, 5, true);
        write_random_mmdit(q.mmdit_diffusers, mmdit_preset("tiny"), DType::F32, 5, false);
        return q;
    }();
    return p;
}

// Stability's all-in-one file: the transformer plus text_encoders.* and first_stage_model.* (original VAE names).
std::string write_all_in_one(const std::string& name, bool clip_g = true, bool t5 = true, bool vae = true) {
    const Parts& p = parts();
    Dict all;
    for (const auto& [k, v] : load_weights(p.mmdit_original).tensors) all.emplace_back(k, v);
    for (const auto& kv : prefixed(p.clip_l, "text_encoders.clip_l.transformer.")) all.push_back(kv);
    if (clip_g)
        for (const auto& kv : prefixed(p.clip_g, "text_encoders.clip_g.transformer.")) all.push_back(kv);
    if (t5)
        for (const auto& kv : prefixed(p.t5, "text_encoders.t5xxl.transformer.")) all.push_back(kv);
    if (vae)
        for (const auto& [k, v] : original_format::vae_to_original(to_map(p.vae)))
            all.emplace_back("first_stage_model." + k, v);
    const std::string path = p.dir + "/" + name;
    save_safetensors(path, all);
    return path;
}

struct SplitFiles {
    std::string clip_l, clip_g, t5, vae;
};

SplitFiles write_split_files() {
    const Parts& p = parts();
    SplitFiles s{p.dir + "/clip_l.safetensors", p.dir + "/clip_g.safetensors", p.dir + "/t5xxl.safetensors",
                 p.dir + "/vae.safetensors"};
    save_safetensors(s.clip_l, p.clip_l);
    save_safetensors(s.clip_g, p.clip_g);
    save_safetensors(s.t5, p.t5);
    save_safetensors(s.vae, p.vae);
    return s;
}

void write_text(const std::string& path, const std::string& text) {
    fs::create_directories(fs::path(path).parent_path());
    std::ofstream(path) << text;
}

std::string write_folder(const std::string& name, bool t5 = true) {
    const Parts& p = parts();
    const std::string root = p.dir + "/" + name;
    fs::create_directories(root);
    write_text(root + "/model_index.json", R"({"_class_name": "StableDiffusion3Pipeline"})");
    fs::create_directories(root + "/transformer");
    fs::copy_file(p.mmdit_diffusers, root + "/transformer/diffusion_pytorch_model.safetensors",
                  fs::copy_options::overwrite_existing);
    fs::create_directories(root + "/text_encoder");
    fs::create_directories(root + "/text_encoder_2");
    save_safetensors(root + "/text_encoder/model.safetensors", p.clip_l);
    save_safetensors(root + "/text_encoder_2/model.safetensors", p.clip_g);
    if (t5) {
        fs::create_directories(root + "/text_encoder_3");
        save_safetensors(root + "/text_encoder_3/model.safetensors", p.t5);
    }
    fs::create_directories(root + "/vae");
    save_safetensors(root + "/vae/diffusion_pytorch_model.safetensors", p.vae);
    write_text(root + "/vae/config.json", R"({"norm_num_groups": 8, "scaling_factor": 1.5305, "shift_factor": 0.0609})");
    write_text(root + "/scheduler/scheduler_config.json", R"({"shift": 3.0, "use_dynamic_shifting": false})");
    return root;
}

GenerateParams tiny_params() {
    GenerateParams g;
    g.prompt = "a red fox in the snow";
    g.negative_prompt = "";
    g.width = g.height = 16;  // latent 8x8 (VAE /2), 16 tokens of 2x2
    g.steps = 3;
    g.sampler = "euler";
    g.scheduler = "";
    g.cfg_scale = 4.5f;
    g.seed = 7;
    return g;
}

std::vector<float> values(const Tensor& t) { return t.f32().contiguous().to_vector(); }

TEST(SD3Family, DetectScoresEveryLayoutAndNothingElse) {
    const Parts& p = parts();
    EXPECT_EQ(detect_sd3(open_model_source(write_all_in_one("detect_aio.safetensors")).index), 100);
    EXPECT_EQ(detect_sd3(open_model_source(p.mmdit_original).index), 50);
    EXPECT_EQ(detect_sd3(open_model_source(p.mmdit_diffusers).index), 50);
    EXPECT_EQ(detect_sd3(open_model_source(write_folder("detect_folder")).index), 100);
    EXPECT_EQ(detect_sd3(open_model_source(kGolden + "sd3_transformer/sd35.safetensors").index), 50);
    EXPECT_EQ(detect_sd3(open_model_source(kGolden + "original_sd3/sd3_original.safetensors").index), 50);
    for (const char* other : {"flux_transformer/flux_dev.safetensors", "flux_transformer/flux_schnell.safetensors",
                              "dit/dit.safetensors", "unet_sd15/unet.safetensors", "unet_sdxl/unet.safetensors",
                              "original_format/sd15_original.safetensors", "original_format/sdxl_original.safetensors",
                              "t5_encoder/t5.safetensors", "vae/vae_sd.safetensors", "vae/vae_flux.safetensors",
                              "clip_text/clip_l.safetensors", "clip_text/clip_g.safetensors"}) {
        if (!fs::exists(kGolden + other)) continue;
        EXPECT_EQ(detect_sd3(open_model_source(kGolden + other).index), 0) << other;
    }
    EXPECT_EQ(detect_model_family(open_model_source(p.mmdit_original)).spec.name, "sd3");
}

TEST(SD3Family, AllInOneFileLoadsAndEncodesAsTheDiffusersPipeline) {
    const std::unique_ptr<DiffusionModel> m = load_model(write_all_in_one("aio.safetensors"));
    ASSERT_EQ(m->family_name(), "sd3");
    EXPECT_EQ(m->variant(), "sd3.5-medium");  // the tiny preset has qk-norm and dual attention
    const auto& sd3 = dynamic_cast<const SD3Model&>(*m);
    ASSERT_TRUE(sd3.t5);
    EXPECT_EQ(m->objective().prediction, Prediction::Flow);
    EXPECT_DOUBLE_EQ(m->objective().flow.shift, 3.0);
    EXPECT_FALSE(m->objective().flow.dynamic);
    EXPECT_EQ(m->guidance(), GuidanceKind::ClassifierFree);
    const LatentFormat f = m->latent_format();
    EXPECT_EQ(f.channels, 16);
    EXPECT_FLOAT_EQ(f.scaling_factor, 1.5305f);
    EXPECT_FLOAT_EQ(f.shift_factor, 0.0609f);
    EXPECT_EQ(f.rgb_factors.size(), 16u);
    EXPECT_THAT(m->describe(), HasSubstr("family: sd3\nvariant: sd3.5-medium\n"));

    // Hand-built reference of StableDiffusion3Pipeline.encode_prompt from the same tiny encoders.
    const std::string text = "a red fox";
    const Conditioning c = m->encode({.text = text});
    const Tensor ctx = c.at("context"), pooled = c.at("pooled");
    ASSERT_EQ(ctx.shape(), (Shape{1, 77 + 256, 32}));
    ASSERT_EQ(pooled.shape(), (Shape{1, 24}));
    const auto ids_l = ClipTokenizer::builtin().encode_padded(text, 49407);
    const auto ids_g = ClipTokenizer::builtin().encode_padded(text, 0);
    const ClipTextOutput ol = sd3.clip_l.model->forward(Tensor::from_ids(ids_l, {1, 77}));
    const ClipTextOutput og = sd3.clip_g.model->forward(Tensor::from_ids(ids_g, {1, 77}));
    const std::vector<float> hl = values(ol.hidden_states[1]), hg = values(og.hidden_states[1]);  // [-2] of 2 layers
    const std::vector<float> t5 = values(encode_t5_prompts(*sd3.t5, {text}, 256));
    const std::vector<float> got = values(ctx);
    for (int64_t l = 0; l < 77; ++l)
        for (int64_t d = 0; d < 32; ++d) {
            const float want = d < 8 ? hl[(size_t)(l * 8 + d)] : d < 24 ? hg[(size_t)(l * 16 + d - 8)] : 0.0f;
            ASSERT_EQ(got[(size_t)(l * 32 + d)], want) << l << "," << d;
        }
    for (int64_t i = 0; i < 256 * 32; ++i) ASSERT_EQ(got[(size_t)(77 * 32 + i)], t5[(size_t)i]) << i;
    const std::vector<float> pl = values(ol.text_embeds), pg = values(og.text_embeds), gp = values(pooled);
    for (int64_t d = 0; d < 24; ++d) EXPECT_EQ(gp[(size_t)d], d < 8 ? pl[(size_t)d] : pg[(size_t)(d - 8)]) << d;
    // The negative side is the empty string's embeddings, not zeros.
    const std::vector<float> neg = values(m->encode({.text = "", .negative = true}).at("pooled"));
    bool any = false;
    for (float v : neg) any = any || v != 0.0f;
    EXPECT_TRUE(any);
}

TEST(SD3Family, GeneratesTheSameImageFromEveryLayout) {
    const SplitFiles s = write_split_files();
    const GenerateParams g = tiny_params();
    const auto aio = load_model(write_all_in_one("gen_aio.safetensors"));
    const std::vector<GeneratedImage> a = generate(*aio, g);
    ASSERT_EQ(a.size(), 1u);
    EXPECT_EQ(a[0].image.width, 16);
    EXPECT_EQ(a[0].image.height, 16);
    EXPECT_EQ(a[0].latents.shape(), (Shape{1, 16, 8, 8}));
    for (float v : values(a[0].decoded)) ASSERT_TRUE(std::isfinite(v));
    EXPECT_EQ(values(generate(*aio, g)[0].latents), values(a[0].latents));  // deterministic for a seed
    GenerateParams other = g;
    other.seed = 8;
    EXPECT_NE(values(generate(*aio, other)[0].latents), values(a[0].latents));

    ModelLoadOptions o;
    o.clip_l = s.clip_l;
    o.clip_g = s.clip_g;
    o.t5xxl = s.t5;
    o.vae_path = s.vae;
    const auto split = load_model(parts().mmdit_diffusers, o);
    EXPECT_EQ(split->family_name(), "sd3");
    const auto folder = load_model(write_folder("gen_folder"));
    EXPECT_EQ(folder->family_name(), "sd3");
    const std::vector<float> want = values(a[0].latents);
    const std::vector<float> b = values(generate(*split, g)[0].latents), c = values(generate(*folder, g)[0].latents);
    ASSERT_EQ(b.size(), want.size());
    ASSERT_EQ(c.size(), want.size());
    for (size_t i = 0; i < want.size(); ++i) {
        EXPECT_NEAR(b[i], want[i], 1e-4f) << i;
        EXPECT_NEAR(c[i], want[i], 1e-4f) << i;
    }
    EXPECT_THAT(a[0].infotext, HasSubstr("Steps: 3, Sampler: Euler"));
}

TEST(SD3Family, WithoutT5TheT5PartIsZeros) {
    const auto m = load_model(write_all_in_one("no_t5.safetensors", true, false, true));
    EXPECT_FALSE(dynamic_cast<const SD3Model&>(*m).t5);
    const std::vector<float> ctx = values(m->encode({.text = "a fox"}).at("context"));
    for (size_t i = 77 * 32; i < ctx.size(); ++i) ASSERT_EQ(ctx[i], 0.0f) << i;
    EXPECT_THAT(m->describe(), HasSubstr("T5 (none: zeros, pass --t5xxl)"));
    for (float v : values(generate(*m, tiny_params())[0].decoded)) ASSERT_TRUE(std::isfinite(v));
}

TEST(SD3Family, AFoldersOwnT5TokenizerIsUsed) {
    // tokenizer_3/tokenizer.json with the piece "▁snow" renamed "▁sn0w": "sn0w" must now encode as "snow" did.
    const int snow = T5Tokenizer::builtin().token_id("\xe2\x96\x81snow");
    const std::string root = write_folder("own_t5_tokenizer");
    test::write_file(root + "/tokenizer_3/tokenizer.json", test::builtin_tokenizer_json([&](SpieceModel& m) {
                         m.pieces[(size_t)snow].piece = "\xe2\x96\x81sn0w";
                     }).dump());
    const auto own = load_model(root);
    const auto builtin = load_model(write_folder("builtin_t5_tokenizer"));
    ASSERT_TRUE(dynamic_cast<const SD3Model&>(*own).t5_tokenizer);
    EXPECT_FALSE(dynamic_cast<const SD3Model&>(*builtin).t5_tokenizer);
    EXPECT_THAT(own->describe(), HasSubstr("t5 tokenizer: the folder's tokenizer_3/"));
    EXPECT_THAT(builtin->describe(), HasSubstr("t5 tokenizer: built-in"));
    const Tensor a = own->encode({.text = "sn0w"}).at("context").narrow(1, 77, 256);
    const Tensor b = builtin->encode({.text = "snow"}).at("context").narrow(1, 77, 256);
    EXPECT_EQ(values(a), values(b));
    EXPECT_NE(values(own->encode({.text = "snow"}).at("context").narrow(1, 77, 256)), values(b));
    // A malformed file there is an error naming it, not a silent fall-back to the built-in vocabulary.
    test::write_file(root + "/tokenizer_3/tokenizer.json", "{\"model\": 3}");
    EXPECT_THAT(error_of([&] { load_model(root); }), HasSubstr(root + "/tokenizer_3/tokenizer.json"));
}

TEST(SD3Family, DefaultsFollowTheModelCards) {
    const GenerationDefaults l = sd3_variant_defaults("sd3.5-large"), md = sd3_variant_defaults("sd3.5-medium"),
                             s3 = sd3_variant_defaults("sd3-medium");
    EXPECT_EQ(l.width, 1024);
    EXPECT_EQ(l.steps, 28);
    EXPECT_FLOAT_EQ(l.cfg_scale, 3.5f);
    EXPECT_EQ(md.steps, 40);
    EXPECT_FLOAT_EQ(md.cfg_scale, 4.5f);
    EXPECT_EQ(s3.steps, 28);
    EXPECT_FLOAT_EQ(s3.cfg_scale, 7.0f);
    EXPECT_EQ(s3.sampler, "euler");
    EXPECT_EQ(sd3_variant_of(mmdit_preset("sd3.5-large")), "sd3.5-large");
    EXPECT_EQ(sd3_variant_of(mmdit_preset("sd3-medium")), "sd3-medium");
    EXPECT_EQ(probe_generation_defaults(parts().mmdit_original).steps, 40);  // dual attention: 3.5-medium
}

TEST(SD3Family, IncompleteFilesNameWhatIsMissingAndTheFlag) {
    const Parts& p = parts();
    EXPECT_EQ(error_of([&] { load_model(p.mmdit_original); }),
              "'" + p.mmdit_original + "' is an SD3 transformer without a CLIP-L text encoder "
              "(text_encoders.clip_l.*); pass one with --clip-l (e.g. clip_l.safetensors)");
    const std::string no_g = write_all_in_one("no_clip_g.safetensors", false, true, true);
    EXPECT_EQ(error_of([&] { load_model(no_g); }),
              "'" + no_g + "' is an SD3 transformer without a CLIP-G text encoder (text_encoders.clip_g.*); pass one "
              "with --clip-g (e.g. clip_g.safetensors)");
    const std::string no_vae = write_all_in_one("no_vae.safetensors", true, true, false);
    EXPECT_EQ(error_of([&] { load_model(no_vae); }),
              "'" + no_vae + "' is an SD3 transformer without a VAE (first_stage_model.*); pass one with --vae (e.g. "
              "the 16-channel SD3 VAE, diffusion_pytorch_model.safetensors)");
    ModelLoadOptions o;
    o.clip_l = p.mmdit_diffusers;  // not a CLIP file
    EXPECT_EQ(error_of([&] { load_model(write_all_in_one("aio_bad_flag.safetensors"), o); }),
              "--clip-l '" + p.mmdit_diffusers + "': no CLIP text encoder found (expected text_model.* as "
              "transformers saves it, transformer.resblocks.* as OpenCLIP does, or "
              "text_encoders.clip_l.transformer.text_model.*)");
    ModelLoadOptions pred;
    pred.prediction = "v_prediction";
    EXPECT_EQ(error_of([&] { load_model(p.mmdit_original, pred); }),
              "--prediction 'v_prediction': SD3 is a flow-matching model (its prediction is the velocity); leave "
              "--prediction out");
    // Text encoders whose widths do not make the transformer's pooled input (CLIP-G given as CLIP-L).
    SplitFiles s = write_split_files();
    ModelLoadOptions swap;
    swap.clip_l = s.clip_g;
    swap.clip_g = s.clip_g;
    swap.vae_path = s.vae;
    EXPECT_EQ(error_of([&] { load_model(p.mmdit_diffusers, swap); }),
              "SD3: the CLIP-L (16) and CLIP-G (16) pooled widths do not add up to the transformer's pooled width 24");
}

// Issue 13: skip-layer guidance as diffusers >= 0.32 StableDiffusion3Pipeline: on steps start*N < i < stop*N one more
// pass of the conditional row without the skipped blocks, noise_pred += (cond - cond_skip) * scale. The pipeline's
// result equals a hand-built Euler loop over predict() and the transformer, and the infotext records it.
TEST(SD3Family, SkipLayerGuidanceMatchesAHandBuiltLoop) {
    const auto m = load_model(write_all_in_one("aio_slg.safetensors"));
    const SD3Model& sd3 = dynamic_cast<const SD3Model&>(*m);
    GenerateParams g = tiny_params();
    g.steps = 6;
    g.sigmas = {1.0, 0.9, 0.75, 0.6, 0.4, 0.2, 0.0};
    g.initial_noise = make_rng(RngKind::Cpu, 3)->randn({1, 16, 8, 8});
    g.slg.layers = std::vector<int64_t>{1};
    g.slg.scale = 2.5f;
    g.slg.start = 0.01;
    g.slg.stop = 0.5;  // 0.06 < i < 3: steps 1 and 2 of 0..5
    const GeneratedImage got = generate(*m, g).at(0);

    const ConditioningRequest cr{.text = g.prompt}, ur{.text = g.negative_prompt, .negative = true};
    Conditioning c = m->encode(cr), u = m->encode(ur);
    m->match_for_batch({&u, &c}, cr);
    const Conditioning batch = m->batch_conditioning({&u, &c});
    StepContext ctx;
    ctx.width = ctx.height = 16;
    Tensor x = g.initial_noise;
    int skipped_steps = 0;
    for (size_t i = 0; i + 1 < g.sigmas.size(); ++i) {
        const double t = g.sigmas[i] * 1000.0;
        const Tensor out = m->predict(cat({x, x}, 0), t, batch, ctx);
        const Tensor vu = out.narrow(0, 0, 1), vc = out.narrow(0, 1, 1);
        Tensor v = vu + (vc - vu) * g.cfg_scale;
        if (i > 6 * 0.01 && i < 6 * 0.5) {
            const Tensor vs = sd3.transformer->forward(x, Tensor::full({1}, (float)t),
                                                       batch.at("context").narrow(0, 1, 1).contiguous(),
                                                       batch.at("pooled").narrow(0, 1, 1).contiguous(), {1});
            v = v + (vc - vs) * 2.5f;
            ++skipped_steps;
        }
        x = x + v * (float)(g.sigmas[i + 1] - g.sigmas[i]);
    }
    EXPECT_EQ(skipped_steps, 2);
    EXPECT_LT(max_abs_diff(got.latents, x), 1e-4f * std::max(1.0f, max_abs(x)));
    EXPECT_THAT(got.infotext,
                HasSubstr(", Skip layers: \"1\", SLG scale: 2.5, Skip layer start: 0.01, Skip layer end: 0.5"));

    // Off (the default for this non-Medium shape), and a window with no step in it: plain CFG, no infotext field.
    GenerateParams off = g;
    off.slg = {};
    const GeneratedImage plain = generate(*m, off).at(0);
    EXPECT_GT(max_abs_diff(plain.latents, got.latents), 1e-4f);
    EXPECT_THAT(plain.infotext, ::testing::Not(HasSubstr("Skip layers")));
    GenerateParams empty_window = g;
    empty_window.slg.stop = 0.1;  // 0.06 < i < 0.6: no step
    EXPECT_EQ(max_abs_diff(generate(*m, empty_window).at(0).latents, plain.latents), 0.0f);
    // Defaults: unset layers are 7,8,9 on sd3.5-medium (or with a scale), unset scale 2.8; other variants off.
    EXPECT_FALSE(sd3.resolve_slg({}).on());
    SkipLayerGuidance only_scale;
    only_scale.scale = 3.0f;
    EXPECT_EQ(sd3.resolve_slg(only_scale).layers, (std::vector<int64_t>{7, 8, 9}));
    SkipLayerGuidance only_layers;
    only_layers.layers = std::vector<int64_t>{2};
    EXPECT_FLOAT_EQ(sd3.resolve_slg(only_layers).scale, 2.8f);

    // Bad values are named.
    GenerateParams bad = g;
    bad.slg.layers = std::vector<int64_t>{3};
    EXPECT_EQ(error_of([&] { generate(*m, bad); }),
              "--skip-layers: layer 3 is not a block index of this transformer (0..2)");
    bad.slg.layers = std::vector<int64_t>{1, 1};
    EXPECT_EQ(error_of([&] { generate(*m, bad); }), "--skip-layers: layer 1 is given twice");
    bad = g;
    bad.slg.start = 0.6;
    EXPECT_EQ(error_of([&] { generate(*m, bad); }),
              "--skip-layer-start 0.6 and --skip-layer-end 0.5: expected 0 <= start <= end <= 1");
}

TEST(SD3Family, RequestOptionsItCannotUseAreRefused) {
    const auto m = load_model(write_all_in_one("aio_request.safetensors"));
    GenerateParams g = tiny_params();
    g.clip_skip = 2;
    EXPECT_EQ(error_of([&] { generate(*m, g); }),
              "clip skip 2: SD3 always takes both CLIP encoders' penultimate layer (as diffusers does); leave clip skip "
              "out");
    g.clip_skip = 0;
    g.class_label = 3;
    EXPECT_EQ(error_of([&] { generate(*m, g); }), "class label 3: SD3 is conditioned on text, not on a class");
}

TEST(SD3Family, FolderErrorsNameTheFileAndField) {
    const std::string root = write_folder("bad_sched");
    write_text(root + "/scheduler/scheduler_config.json", R"({"shift": "three"})");
    EXPECT_EQ(error_of([&] { load_model(root); }),
              "'" + root + "/scheduler/scheduler_config.json': 'shift' must be a number in (0, 100] (got \"three\")");
    write_text(root + "/scheduler/scheduler_config.json", R"({"use_dynamic_shifting": true})");
    EXPECT_EQ(error_of([&] { load_model(root); }),
              "'" + root + "/scheduler/scheduler_config.json': use_dynamic_shifting is true; SD3 runs a static shift "
              "only");
    const std::string no_vae = write_folder("folder_no_vae");
    fs::remove_all(no_vae + "/vae");
    EXPECT_EQ(error_of([&] { load_model(no_vae); }),
              "SD3 diffusers folder '" + no_vae + "': no weights in vae/; pass a VAE with --vae");
    const std::string no_g = write_folder("folder_no_clip_g");
    fs::remove_all(no_g + "/text_encoder_2");
    EXPECT_EQ(error_of([&] { load_model(no_g); }),
              "SD3 diffusers folder '" + no_g + "': no weights in text_encoder_2/; pass the text encoder with --clip-g");
    ModelLoadOptions o;
    o.clip_g = write_split_files().clip_g;
    EXPECT_EQ(load_model(no_g, o)->family_name(), "sd3");  // the flag supplies it
}

#ifdef NUANCE_CLI_PATH
TEST(SD3Family, CliGeneratesFromSplitFilesAndInfoShowsTheFamily) {
    const SplitFiles s = write_split_files();
    const std::string out = parts().dir + "/cli.png";
    const test::CliRun r = test::run_cli("generate -m '" + parts().mmdit_diffusers + "' --clip-l '" + s.clip_l +
                                         "' --clip-g '" + s.clip_g + "' --t5xxl '" + s.t5 + "' --vae '" + s.vae +
                                         "' -p 'a fox' -W 16 -H 16 --steps 2 -o '" + out + "'");
    EXPECT_EQ(r.code, 0) << r.out;
    EXPECT_TRUE(fs::exists(out)) << r.out;
    const test::CliRun i = test::run_cli("info '" + write_all_in_one("cli_info.safetensors") + "'");
    EXPECT_EQ(i.code, 0) << i.out;
    EXPECT_THAT(i.out, HasSubstr("family: sd3"));
    // A transformer-only file: info takes generate's component flags, and without them names the one missing.
    const test::CliRun bare = test::run_cli("info '" + parts().mmdit_diffusers + "'");
    EXPECT_NE(bare.code, 0) << bare.out;
    EXPECT_THAT(bare.out, HasSubstr("--clip-l"));
    const test::CliRun split = test::run_cli("info '" + parts().mmdit_diffusers + "' --clip-l '" + s.clip_l +
                                             "' --clip-g '" + s.clip_g + "' --t5xxl '" + s.t5 + "' --vae '" + s.vae +
                                             "'");
    EXPECT_EQ(split.code, 0) << split.out;
    EXPECT_THAT(split.out, HasSubstr("family: sd3"));
    EXPECT_THAT(split.out, HasSubstr("objective: flow"));
}

TEST(SD3Family, CliSkipLayerFlags) {
    const std::string aio = write_all_in_one("cli_slg.safetensors");
    const std::string out = parts().dir + "/cli_slg.png";
    const test::CliRun ok = test::run_cli("generate -m '" + aio + "' -p 'a fox' -W 16 -H 16 --steps 4 --skip-layers "
                                          "'[0,2]' --slg-scale 2 --skip-layer-end 0.9 -q -o '" + out + "'");
    EXPECT_EQ(ok.code, 0) << ok.out;
    std::string text;
    for (const auto& [k, v] : read_png_text(out)) text += k + ": " + v + "\n";
    EXPECT_THAT(text, HasSubstr("Skip layers: \"0,2\", SLG scale: 2, Skip layer start: 0.01, "
                                              "Skip layer end: 0.9"));
    const test::CliRun bad = test::run_cli("generate -m '" + aio + "' -p 'a fox' -W 16 -H 16 --skip-layers 7,x -q -o '" +
                                           out + "'");
    EXPECT_NE(bad.code, 0);
    EXPECT_THAT(bad.out, HasSubstr("--skip-layers '7,x': 'x' is not a block index (expected e.g. 7,8,9)"));
}
#endif

}  // namespace
}  // namespace nuance

namespace nuance {
namespace {

// tools/make_sd3_pipeline_reference.py: diffusers' StableDiffusion3Pipeline on a tiny random folder (float16 weights,
// float32 run), 3 Euler steps, CFG 4.5, negative prompt "", 32x32, from the stored initial noise.
TEST(SD3Family, MatchesTheDiffusersPipeline) {
    const std::string dir = std::string(NUANCE_TEST_DATA) + "/sd3_pipeline/";
    const WeightFile io = load_weights(dir + "io.safetensors");
    const std::unique_ptr<DiffusionModel> m = load_model(dir + "tiny");
    ASSERT_EQ(m->family_name(), "sd3");
    const std::string prompt = io.metadata.at("prompt");
    auto expect_close = [](const Tensor& got, const Tensor& want, float tol, const char* what) {
        ASSERT_EQ(got.shape(), want.shape()) << what;
        const std::vector<float> g = values(got), w = values(want);
        double worst = 0;
        for (size_t i = 0; i < g.size(); ++i) worst = std::max(worst, (double)std::fabs(g[i] - w[i]));
        EXPECT_LE(worst, tol) << what;
    };
    const Conditioning c = m->encode({.text = prompt, .syntax = PromptSyntax::Literal});
    expect_close(c.at("context"), io.tensors.at("prompt_embeds"), 1e-4f, "prompt_embeds");
    expect_close(c.at("pooled"), io.tensors.at("pooled_prompt_embeds"), 1e-4f, "pooled_prompt_embeds");
    const Conditioning u = m->encode({.text = "", .negative = true, .syntax = PromptSyntax::Literal});
    expect_close(u.at("context"), io.tensors.at("negative_prompt_embeds"), 1e-4f, "negative_prompt_embeds");
    expect_close(u.at("pooled"), io.tensors.at("negative_pooled_prompt_embeds"), 1e-4f, "negative_pooled");

    GenerateParams g;
    g.prompt = prompt;
    g.negative_prompt = "";
    g.width = g.height = 32;
    g.steps = 3;
    g.sampler = "euler";
    g.scheduler = "";
    g.cfg_scale = 4.5f;
    g.syntax = PromptSyntax::Literal;
    g.initial_noise = io.tensors.at("latents_in").f32();
    const std::vector<GeneratedImage> out = generate(*m, g);
    expect_close(out.at(0).latents, io.tensors.at("latents_out"), 5e-3f, "latents_out");  // measured 1.5e-3 (std 3.7)
    expect_close(out.at(0).decoded, io.tensors.at("decoded"), 2e-3f, "decoded");
}

}  // namespace
}  // namespace nuance
