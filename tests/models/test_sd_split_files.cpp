// SD1.x / SDXL from separate files (models/sd/sd_split_files.h): a UNet-only file (bare original names as
// ComfyUI-GGUF and `nuance quantize` write them, or diffusers names) with --clip-l [--clip-g] --vae files makes the
// very image of the full checkpoint it was split from; each missing component is named.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "../test_util.h"
#include "backends/cpu/ggml_quants.h"
#include "core/quantized_weight.h"
#include "io/gguf_quantize.h"
#include "io/safetensors.h"
#include "io/weights.h"
#include "models/clip/clip_text.h"
#include "models/convert/original_format.h"
#include "models/convert/original_parts.h"
#include "models/model_family.h"
#include "models/random_model.h"
#include "models/sd/sd_split_files.h"
#include "models/sd/stable_diffusion.h"
#include "nuance.h"
#include "pipelines/generate.h"

using namespace nuance;
using ::testing::HasSubstr;

namespace {

std::string tmp(const std::string& name) { return std::string(NUANCE_SCRATCH_DIR) + "/nuance_split_" + name; }

using Pairs = std::vector<std::pair<std::string, Tensor>>;

Pairs under(const std::map<std::string, Tensor>& t, const std::string& prefix, const std::string& to = "") {
    Pairs out;
    for (const auto& [k, v] : t)
        if (k.starts_with(prefix)) out.emplace_back(to + k.substr(prefix.size()), v);
    return out;
}
Pairs pairs(const std::map<std::string, Tensor>& t) { return Pairs(t.begin(), t.end()); }

// The checkpoint and its parts as ComfyUI users keep them.
struct Split {
    std::string full, unet, unet_diffusers, unet_gguf, clip_l, clip_g, vae;
};

Split split(const std::string& family) {
    Split s;
    s.full = tmp(family + "_full.safetensors");
    RandomModelOptions ro;
    ro.family = family;
    ro.tiny = true;
    ro.dtype = DType::F32;
    ro.seed = 3;
    write_random_checkpoint(s.full, ro);
    const WeightFile wf = load_weights(s.full);
    s.unet = tmp(family + "_unet.safetensors");
    save_safetensors(s.unet, under(wf.tensors, "model.diffusion_model."));
    const ComponentWeights cw = split_original(wf.tensors);
    s.unet_diffusers = tmp(family + "_unet_diffusers.safetensors");
    save_safetensors(s.unet_diffusers, pairs(cw.unet));
    s.unet_gguf = tmp(family + "_unet_q8_0.gguf");
    quantize_to_gguf(wf, s.unet_gguf, GgmlType::Q8_0);  // comfy layout: the UNet alone, prefix stripped
    s.vae = tmp(family + "_vae.safetensors");  // original VAE names without first_stage_model. (sdxl_vae style)
    save_safetensors(s.vae, under(wf.tensors, "first_stage_model."));
    s.clip_l = tmp(family + "_clip_l.safetensors");  // transformers names (ComfyUI's clip_l.safetensors)
    save_safetensors(s.clip_l, under(wf.tensors, family == "sdxl" ? "conditioner.embedders.0.transformer."
                                                                  : "cond_stage_model.transformer."));
    if (family == "sdxl") {  // ComfyUI's clip_g.safetensors: transformers CLIPTextModelWithProjection names
        s.clip_g = tmp(family + "_clip_g.safetensors");
        save_safetensors(s.clip_g, pairs(cw.text_encoder_2));
    }
    return s;
}

std::vector<uint8_t> image(const DiffusionModel& m) {
    GenerateParams p;
    p.prompt = "a red fox";
    p.width = p.height = 64;
    p.steps = 2;
    p.seed = 11;
    p.sampler = "euler";
    const auto r = generate(m, p);
    EXPECT_EQ(r.size(), 1u);
    return r.empty() ? std::vector<uint8_t>{} : r[0].image.pixels;
}

double mean_abs_diff(const std::vector<uint8_t>& a, const std::vector<uint8_t>& b) {
    EXPECT_EQ(a.size(), b.size());
    if (a.size() != b.size() || a.empty()) return 1e9;
    double sum = 0;
    for (size_t i = 0; i < a.size(); ++i) sum += std::abs((int)a[i] - (int)b[i]);
    return sum / (double)a.size();
}

ModelLoadOptions with(const Split& s) {
    ModelLoadOptions o;
    o.clip_l = s.clip_l;
    o.clip_g = s.clip_g;
    o.vae_path = s.vae;
    return o;
}

}  // namespace

TEST(SdSplitFiles, Sd1UNetOnlyFilesMakeTheFullCheckpointsImage) {
    const Split s = split("sd15");
    const std::vector<uint8_t> want = image(*load_model(s.full));
    ASSERT_FALSE(want.empty());
    for (const std::string& u : {s.unet, s.unet_diffusers}) {
        const FamilyMatch f = detect_model_family(open_model_source(u));
        EXPECT_EQ(f.spec.name, "sd1") << u;
        const auto m = load_model(u, with(s));
        EXPECT_EQ(m->family_name(), "sd1");
        EXPECT_EQ(image(*m), want) << u;  // the same f32 weights: bit for bit
    }
    // The ComfyUI-GGUF file: the UNet's blocks computed on directly, nearly the same image.
    const auto q = load_model(s.unet_gguf, with(s));
    const auto* sd = dynamic_cast<const StableDiffusionModel*>(q.get());
    ASSERT_NE(sd, nullptr);
    int handles = 0;
    for_each_param(*sd->unet, [&](const std::string&, Param& p) { handles += quantized_weight_view(p.value).has_value(); });
    EXPECT_GT(handles, 10);
    EXPECT_LT(mean_abs_diff(image(*q), want), 4.0);
    // The golden UNet-only GGUF files: ComfyUI-GGUF's (bare original names) and stable-diffusion.cpp's
    // (model.diffusion_model.* alone) are SD1 UNets that ask for their text encoder and VAE.
    for (const char* g : {"unet_sd15_comfy_Q8_0.gguf", "unet_sd15_sdcpp_q4_0.gguf"}) {
        const std::string p = std::string(NUANCE_TEST_DATA) + "/golden/gguf/" + g;
        EXPECT_THAT(test::error_of([&] { load_model(p); }),
                    HasSubstr("' holds only a UNet (sd1): it has no text encoder (cond_stage_model.*) and VAE"))
            << g;
    }
    // --clip-l / --vae also replace a full checkpoint's own components (same tensors here: same image).
    EXPECT_EQ(image(*load_model(s.full, with(s))), want);
}

TEST(SdSplitFiles, SdxlUNetOnlyFileWithClipLClipGAndVae) {
    const Split s = split("sdxl");
    const std::vector<uint8_t> want = image(*load_model(s.full));
    for (const std::string& u : {s.unet, s.unet_diffusers}) {
        EXPECT_EQ(detect_model_family(open_model_source(u)).spec.name, "sdxl") << u;
        EXPECT_EQ(image(*load_model(u, with(s))), want) << u;
    }
    EXPECT_LT(mean_abs_diff(image(*load_model(s.unet_gguf, with(s))), want), 4.0);  // Q8_0 blocks
    // The text encoders may also come from a full SDXL checkpoint (conditioner.embedders.{0,1}.*: OpenCLIP names).
    ModelLoadOptions o = with(s);
    o.clip_g = s.full;
    o.clip_l = s.full;
    EXPECT_EQ(image(*load_model(s.unet, o)), want);
    // What is missing is named, with the flags that supply it.
    ModelLoadOptions no_g = with(s);
    no_g.clip_g.clear();
    EXPECT_EQ(test::error_of([&] { load_model(s.unet, no_g); }),
              "'" + s.unet + "' has no OpenCLIP bigG text encoder (conditioner.embedders.1.*); pass one with --clip-g");
    EXPECT_EQ(test::error_of([&] { load_model(s.unet_gguf); }),
              "'" + s.unet_gguf + "' holds only a UNet (sdxl): it has no CLIP-L text encoder (conditioner.embedders.0.*), "
              "OpenCLIP bigG text encoder (conditioner.embedders.1.*) and VAE (first_stage_model.*); pass them with "
              "--clip-l FILE, --clip-g FILE and --vae FILE (ComfyUI keeps them as clip_l.safetensors, "
              "clip_g.safetensors and a VAE file)");
    // A CLIP-L file as --clip-g has no text projection (the pooled embedding SDXL needs).
    ModelLoadOptions l_as_g = with(s);
    l_as_g.clip_g = s.clip_l;
    EXPECT_THAT(test::error_of([&] { load_model(s.unet, l_as_g); }),
                HasSubstr("': SDXL's second text encoder needs its text_projection"));
}

// SD2: the UNet alone (a tiny one: --family says what its cross-attention width cannot) with its OpenCLIP ViT-H
// text encoder from --clip-h, in OpenCLIP names (open_clip's file), transformers names (diffusers' text_encoder/) or
// inside a full SD2 checkpoint: the full checkpoint's image, bit for bit.
TEST(SdSplitFiles, Sd2UNetOnlyFileWithClipHAndVae) {
    RandomModelOptions ro;
    ro.family = "sd2";
    ro.tiny = true;
    ro.dtype = DType::F32;
    ro.seed = 5;
    const std::string full = tmp("sd2h_full.safetensors"), unet = tmp("sd2h_unet.safetensors"),
                      open_clip = tmp("sd2h_open_clip.safetensors"), hf = tmp("sd2h_text_encoder.safetensors"),
                      vae = tmp("sd2h_vae.safetensors"), gguf = tmp("sd2h_unet_q8_0.gguf");
    write_random_checkpoint(full, ro);
    const WeightFile wf = load_weights(full);
    save_safetensors(unet, under(wf.tensors, "model.diffusion_model."));
    save_safetensors(open_clip, under(wf.tensors, "cond_stage_model.model."));
    ASSERT_GT(under(wf.tensors, "cond_stage_model.model.transformer.resblocks.").size(), 0u);
    save_safetensors(hf, pairs(split_original(wf.tensors).text_encoder));
    save_safetensors(vae, under(wf.tensors, "first_stage_model."));
    quantize_to_gguf(wf, gguf, GgmlType::Q8_0);
    const auto ref = load_model(full);
    ASSERT_EQ(ref->family_name(), "sd2");
    const std::vector<uint8_t> want = image(*ref);
    ASSERT_FALSE(want.empty());
    ModelLoadOptions o;
    o.family = "sd2";
    o.vae_path = vae;
    for (const std::string& te : {open_clip, hf, full}) {
        o.clip_h = te;
        const auto m = load_model(unet, o);
        EXPECT_EQ(m->family_name(), "sd2");
        EXPECT_EQ(image(*m), want) << te;  // the same f32 weights: bit for bit
    }
    o.clip_h = open_clip;
    EXPECT_LT(mean_abs_diff(image(*load_model(gguf, o)), want), 4.0);  // the ComfyUI-GGUF UNet's Q8_0 blocks
    {  // the C API's clip_h_path
        nuance_model_params mp;
        nuance_model_params_init(&mp);
        EXPECT_EQ(mp.clip_h_path, nullptr);
        mp.family = "sd2";
        mp.vae_path = vae.c_str();
        mp.clip_h_path = open_clip.c_str();
        nuance_model* cm = nullptr;
        ASSERT_EQ(nuance_model_load(unet.c_str(), &mp, &cm), NUANCE_OK) << nuance_last_error();
        EXPECT_STREQ(nuance_model_family(cm), "sd2");
        nuance_model_free(cm);
        mp.clip_h_path = nullptr;
        EXPECT_EQ(nuance_model_load(unet.c_str(), &mp, &cm), NUANCE_ERR_INVALID_ARGUMENT);
        EXPECT_THAT(std::string(nuance_last_error()), HasSubstr("pass one with --clip-h"));
    }
    // What is missing or misplaced is named with the flag that takes it.
    o.clip_h.clear();
    EXPECT_EQ(test::error_of([&] { load_model(unet, o); }),
              "'" + unet + "' has no OpenCLIP ViT-H text encoder (cond_stage_model.model.*); pass one with --clip-h");
    o.clip_l = open_clip;
    EXPECT_EQ(test::error_of([&] { load_model(unet, o); }),
              "--clip-l '" + open_clip + "': '" + unet + "' is an SD2 UNet, whose text encoder is OpenCLIP ViT-H: pass "
              "it with --clip-h");
    o.clip_l.clear();
    o.vae_path.clear();
    EXPECT_EQ(test::error_of([&] { load_model(unet, o); }),
              "'" + unet + "' holds only a UNet (sd2): it has no OpenCLIP ViT-H text encoder (cond_stage_model.model.*) "
              "and VAE (first_stage_model.*); pass them with --clip-h FILE and --vae FILE (the text encoder: diffusers' "
              "text_encoder/model.safetensors or OpenCLIP's ViT-H-14 file)");
    o.vae_path = vae;
    o.clip_h = vae;  // not a text encoder
    EXPECT_THAT(test::error_of([&] { load_model(unet, o); }),
                HasSubstr("--clip-h '" + vae + "': no CLIP text encoder found (expected text_model.* as transformers "
                          "saves it or transformer.resblocks.* as OpenCLIP does, under the prefix (none), "
                          "cond_stage_model.model.)"));
    // A text encoder of another width than the UNet's cross-attention (a tiny SDXL's CLIP-G here).
    RandomModelOptions rx = ro;
    rx.family = "sdxl";
    const std::string xl = tmp("sd2h_xl.safetensors"), xl_g = tmp("sd2h_xl_clip_g.safetensors");
    write_random_checkpoint(xl, rx);
    save_safetensors(xl_g, pairs(split_original(load_weights(xl).tensors).text_encoder_2));
    const int64_t w_g = load_weights(xl_g).tensors.at("text_model.embeddings.token_embedding.weight").shape()[1];
    const int64_t w_unet = load_weights(unet).tensors.at("input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight").shape()[1];
    ASSERT_NE(w_g, w_unet);
    o.clip_h = xl_g;
    EXPECT_EQ(test::error_of([&] { load_model(unet, o); }),
              "the text encoder in '" + xl_g + "' has width " + std::to_string(w_g) + ", but the UNet in '" + unet +
                  "' takes " + std::to_string(w_unet) + " (sd2)");
    // Other families refuse --clip-h.
    o = ModelLoadOptions();
    o.clip_h = open_clip;
    EXPECT_THAT(test::error_of([&] { load_model(xl, o); }),
                HasSubstr("is an sdxl UNet; --clip-h is SD2's OpenCLIP ViT-H text encoder (sdxl takes --clip-l and "
                          "--clip-g)"));
}

TEST(SdSplitFiles, ErrorsNameTheFlagAndTheFile) {
    const Split s = split("sd15");
    ModelLoadOptions o;
    o.clip_l = s.clip_l;
    EXPECT_EQ(test::error_of([&] { load_model(s.unet_gguf, o); }),
              "'" + s.unet_gguf + "' has no VAE (first_stage_model.*); pass one with --vae");
    o.vae_path = s.vae;
    o.clip_g = s.clip_l;
    EXPECT_EQ(test::error_of([&] { load_model(s.unet_gguf, o); }),
              "--clip-g '" + s.clip_l + "': '" + s.unet_gguf +
                  "' is an sd1 UNet, which takes one text encoder (--clip-l); --clip-g is SDXL's second");
    o.clip_g.clear();
    o.clip_l = s.vae;  // not a text encoder
    EXPECT_EQ(test::error_of([&] { load_model(s.unet_gguf, o); }),
              "--clip-l '" + s.vae + "': no CLIP text encoder found (expected text_model.* as transformers saves it "
              "or transformer.resblocks.* as OpenCLIP does, under the prefix (none), cond_stage_model.transformer., "
              "conditioner.embedders.0.transformer., text_encoders.clip_l.transformer.)");
    o.clip_l = tmp("does_not_exist.safetensors");
    EXPECT_THAT(test::error_of([&] { load_model(s.unet_gguf, o); }), HasSubstr("does_not_exist.safetensors"));
    // --clip-h is SD2's; an SD1 UNet says which flag it takes.
    o.clip_l = s.clip_l;
    o.clip_h = s.clip_l;
    EXPECT_EQ(test::error_of([&] { load_model(s.unet, o); }),
              "--clip-h '" + s.clip_l + "': '" + s.unet + "' is an sd1 UNet; --clip-h is SD2's OpenCLIP ViT-H text "
              "encoder (sd1 takes --clip-l)");
    o.clip_h.clear();
    // A diffusers folder keeps its own text encoders.
    const std::string folder = std::string(NUANCE_SCRATCH_DIR) + "/nuance_split_folder";
    std::filesystem::create_directories(folder + "/unet");
    {
        std::FILE* f = std::fopen((folder + "/model_index.json").c_str(), "w");
        std::fputs("{\"_class_name\": \"StableDiffusionPipeline\"}", f);
        std::fclose(f);
    }
    ModelLoadOptions fo;
    fo.clip_l = s.clip_l;
    fo.family = "sd1";
    EXPECT_THAT(test::error_of([&] { load_model(folder, fo); }),
                HasSubstr("--clip-l '" + s.clip_l + "': a diffusers folder ('" + folder +
                          "') takes its text encoders from its text_encoder*/ folders"));
}

TEST(SdSplitFiles, CliGeneratesFromTheUNetGgufAndComponents) {
    const Split s = split("sd15");
    const std::string out = tmp("cli.png");
    const test::CliRun r = test::run_cli("generate -m " + s.unet_gguf + " --clip-l " + s.clip_l + " --vae " + s.vae +
                                         " -p fox -W 64 -H 64 --steps 1 --seed 1 -t 1 -o " + out);
    EXPECT_EQ(r.code, 0) << r.out;
    EXPECT_TRUE(std::filesystem::exists(out)) << r.out;
    const test::CliRun bad = test::run_cli("generate -m " + s.unet_gguf + " -p fox -W 64 -H 64 --steps 1 -t 1 -o " + out);
    EXPECT_EQ(bad.code, 1);
    EXPECT_THAT(bad.out, HasSubstr("holds only a UNet (sd1): it has no text encoder (cond_stage_model.*) and VAE "
                                   "(first_stage_model.*); pass them with --clip-l FILE and --vae FILE"));
}
