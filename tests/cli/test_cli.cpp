// End-to-end tests of the `nuance` binary: exit codes, messages, outputs.
#include <gtest/gtest.h>

#include "../test_util.h"
#include "tiny_model_suite.h"

#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sys/wait.h>

#include "io/image.h"
#include "io/safetensors.h"
#include "io/weights.h"

using namespace nuance;
namespace fs = std::filesystem;

namespace {

using nuance::test::CliRun;
using nuance::test::run_cli;

class Cli : public nuance::test::TinyModelSuite<Cli> {};

const std::string kGen = " generate -q --steps 2 -W 64 -H 64 ";

}  // namespace

TEST_F(Cli, GeneratesPngWithA1111Parameters) {
    const CliRun r = run_cli(kGen + "-m " + model() + " -p \"a red apple, (shiny:1.3)\" -n blurry --seed 7 -o " + path("a.png"));
    ASSERT_EQ(r.code, 0) << r.out;
    const Image img = read_image(path("a.png"));
    EXPECT_EQ(img.width, 64);
    EXPECT_EQ(img.height, 64);
    const PngText text = read_png_text(path("a.png"));
    ASSERT_EQ(text.size(), 1u);
    EXPECT_EQ(text[0].first, "parameters");
    const std::string& p = text[0].second;
    EXPECT_EQ(p.rfind("a red apple, (shiny:1.3)\nNegative prompt: blurry\nSteps: 2, Sampler: Euler a,", 0), 0u) << p;
    EXPECT_NE(p.find("CFG scale: 7, Seed: 7, Size: 64x64, Model hash: "), std::string::npos) << p;
    EXPECT_NE(p.find("Model: tiny15"), std::string::npos) << p;
}

TEST_F(Cli, SameSeedSameImageAndBatchSeedsIncrement) {
    ASSERT_EQ(run_cli(kGen + "-m " + model() + " -p apple --seed 3 -o " + path("s1.png")).code, 0);
    const CliRun r = run_cli(kGen + "-m " + model() + " -p apple --seed 3 -b 2 --sampler dpm++2m --scheduler karras -o " +
                      path("s2.png"));
    ASSERT_EQ(r.code, 0) << r.out;
    ASSERT_TRUE(fs::exists(path("s2_2.png")));
    EXPECT_NE(read_png_text(path("s2_2.png"))[0].second.find("Seed: 4"), std::string::npos);
    EXPECT_NE(read_png_text(path("s2.png"))[0].second.find("Sampler: DPM++ 2M, Schedule type: Karras"),
              std::string::npos) << read_png_text(path("s2.png"))[0].second;
    ASSERT_EQ(run_cli(kGen + "-m " + model() + " -p apple --seed 3 -o " + path("s3.png")).code, 0);
    EXPECT_EQ(read_image(path("s1.png")).pixels, read_image(path("s3.png")).pixels);
    EXPECT_NE(read_image(path("s1.png")).pixels, read_image(path("s2_2.png")).pixels);
}

TEST_F(Cli, Img2ImgAndNonSquare) {
    ASSERT_EQ(run_cli(kGen + "-m " + model() + " -p apple -o " + path("init.png")).code, 0);
    const CliRun r = run_cli(" generate -q --steps 4 -W 80 -H 48 -m " + model() + " -p pear --sampler ddim -i " +
                      path("init.png") + " --strength 0.5 -o " + path("i2i.png"));
    ASSERT_EQ(r.code, 0) << r.out;
    const Image img = read_image(path("i2i.png"));
    EXPECT_EQ(img.width, 80);
    EXPECT_EQ(img.height, 48);
    EXPECT_NE(read_png_text(path("i2i.png"))[0].second.find("Denoising strength: 0.5"), std::string::npos);
}

TEST_F(Cli, MissingModelFile) {
    const CliRun r = run_cli(kGen + "-m " + path("nope.safetensors") + " -p x");
    EXPECT_EQ(r.code, 1);
    EXPECT_NE(r.out.find("nope.safetensors' does not exist"), std::string::npos) << r.out;
}

TEST_F(Cli, TruncatedSafetensors) {
    {
        std::ifstream in(model(), std::ios::binary);
        std::string data((std::istreambuf_iterator<char>(in)), {});
        std::ofstream(path("trunc.safetensors"), std::ios::binary).write(data.data(), (std::streamsize)data.size() / 2);
    }
    const CliRun r = run_cli(kGen + "-m " + path("trunc.safetensors") + " -p x");
    EXPECT_EQ(r.code, 1);
    EXPECT_NE(r.out.find("trunc.safetensors"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("truncated or corrupt"), std::string::npos) << r.out;
}

TEST_F(Cli, CorruptHeader) {
    std::ofstream(path("bad.safetensors"), std::ios::binary).write("\x10\0\0\0\0\0\0\0{not json here!}", 24);
    const CliRun r = run_cli(kGen + "-m " + path("bad.safetensors") + " -p x");
    EXPECT_EQ(r.code, 1);
    EXPECT_NE(r.out.find("not valid JSON"), std::string::npos) << r.out;
}

TEST_F(Cli, MissingTensorAndWrongShape) {
    WeightFile wf = load_safetensors(model());
    std::vector<std::pair<std::string, Tensor>> t(wf.tensors.begin(), wf.tensors.end());
    auto missing = t;
    std::erase_if(missing, [](auto& kv) { return kv.first == "model.diffusion_model.out.2.bias"; });
    save_safetensors(path("missing.safetensors"), missing);
    CliRun r = run_cli(kGen + "-m " + path("missing.safetensors") + " -p x");
    EXPECT_EQ(r.code, 1);
    EXPECT_NE(r.out.find("missing tensor 'conv_out.bias'"), std::string::npos) << r.out;

    auto wrong = t;
    for (auto& kv : wrong)
        if (kv.first == "model.diffusion_model.out.2.bias") kv.second = Tensor::zeros({3}, DType::F16);
    save_safetensors(path("wrong.safetensors"), wrong);
    r = run_cli(kGen + "-m " + path("wrong.safetensors") + " -p x");
    EXPECT_EQ(r.code, 1);
    EXPECT_NE(r.out.find("expected [4], got [3]"), std::string::npos) << r.out;
}

TEST_F(Cli, UnknownFamily) {
    save_safetensors(path("other.safetensors"), {{"encoder.layer.0.weight", Tensor::zeros({2, 2})}});
    const CliRun r = run_cli(kGen + "-m " + path("other.safetensors") + " -p x");
    EXPECT_EQ(r.code, 1);
    // The registry's error (models/model_family.h): the families it knows and a sample of the keys it saw.
    EXPECT_NE(r.out.find("unknown model layout in '" + path("other.safetensors") + "': no model family recognises "
                         "it (known: sd1, sd2, sdxl"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("it holds 1 tensors, e.g. 'encoder.layer.0.weight'"), std::string::npos) << r.out;
}

TEST_F(Cli, UsageErrors) {
    CliRun r = run_cli(kGen + "-m " + model() + " -p x --sampler euler_b");
    EXPECT_EQ(r.code, 2) << r.out;
    EXPECT_NE(r.out.find("euler_b"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("dpmpp_2m"), std::string::npos) << "valid names listed: " << r.out;
    r = run_cli(" generate -q -m " + model() + " -p x -W 100 -H 64");
    EXPECT_EQ(r.code, 2) << r.out;
    EXPECT_NE(r.out.find("size 100x64 is not a positive multiple of 8"), std::string::npos) << r.out;
    r = run_cli(" generate -p x", "NUANCE_DEFAULT_MODEL=/nonexistent ");
    EXPECT_EQ(r.code, 2) << r.out;
    EXPECT_NE(r.out.find("no model given"), std::string::npos) << r.out;
    r = run_cli(" generate --no-such-flag");
    EXPECT_EQ(r.code, 2) << r.out;
    r = run_cli(kGen + "-m " + model() + " -p x --rng quantum");
    EXPECT_EQ(r.code, 2) << r.out;
}

TEST_F(Cli, UnreadableInitImage) {
    std::ofstream(path("fake.png"), std::ios::binary) << "this is not an image";
    const CliRun r = run_cli(kGen + "-m " + model() + " -p x -i " + path("fake.png"));
    EXPECT_EQ(r.code, 1);
    EXPECT_NE(r.out.find("fake.png"), std::string::npos) << r.out;
}

TEST_F(Cli, InfoDescribesModel) {
    const CliRun r = run_cli(" info " + model());
    ASSERT_EQ(r.code, 0) << r.out;
    EXPECT_NE(r.out.find("family: sd1"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("dtypes: F16="), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("components: text_encoder unet vae"), std::string::npos) << r.out;
}

// A file that is one part of a model (as ComfyUI users keep them) is described as that part, with the flags that
// take it; a file nothing recognises still fails with the loader's message.
TEST_F(Cli, InfoDescribesComponentFiles) {
    const std::vector<std::pair<std::string, std::string>> cases = {
        {"sd35-medium", "component: an SD3 / SD3.5 transformer (MMDiT, "},
        {"flux-dev", "component: a Flux.1 transformer (dev: guidance-distilled, "},
        {"flux-schnell", "component: a Flux.1 transformer (schnell, "},
        {"clip-l", "component: a CLIP text encoder (Hugging Face layout, "},
        {"t5xxl", "component: a T5 encoder ("},
        {"vae16", "component: a VAE (AutoencoderKL, 16 latent channels)"},
    };
    for (const auto& [fam, want] : cases) {
        const std::string f = path("part_" + fam + ".safetensors");
        ASSERT_EQ(run_cli(" make-random --tiny --family " + fam + " -o " + f).code, 0) << fam;
        const CliRun r = run_cli(" info " + f);
        EXPECT_EQ(r.code, 0) << fam << "\n" << r.out;
        EXPECT_NE(r.out.find(want), std::string::npos) << fam << "\n" << r.out;
        EXPECT_NE(r.out.find("use: nuance generate"), std::string::npos) << fam << "\n" << r.out;
    }
    // a ControlNet made for the tiny model, and a kohya LoRA
    const std::string cn = path("part_cn.safetensors");
    ASSERT_EQ(run_cli(" make-random --tiny --controlnet-for " + model() + " -o " + cn).code, 0);
    CliRun r = run_cli(" info " + cn);
    EXPECT_EQ(r.code, 0) << r.out;
    EXPECT_NE(r.out.find("component: a ControlNet"), std::string::npos) << r.out;
    save_safetensors(path("part_lora.safetensors"),
                     {{"lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight", Tensor::full({1, 2}, 0.5f)},
                      {"lora_unet_down_blocks_0_attentions_0_proj_in.lora_up.weight", Tensor::full({2, 1}, 0.5f)},
                      {"lora_unet_down_blocks_0_attentions_0_proj_in.alpha", Tensor::full({}, 1.0f)}});
    r = run_cli(" info " + path("part_lora.safetensors"));
    EXPECT_EQ(r.code, 0) << r.out;
    EXPECT_NE(r.out.find("component: a LoRA / LyCORIS file (1 adapted modules)"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("lora: LoRA 1; 0 of 1 modules on text encoders"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("lora_rank: 1, scale (alpha / rank): 1"), std::string::npos) << r.out;
    // a LoKr whose modules are split in two (lokr_w1_a + lokr_w1_b) counts each module once; kohya metadata shown
    save_safetensors(path("part_lokr.safetensors"),
                     {{"lora_unet_a.lokr_w1_a", Tensor::full({2, 1}, 0.5f)}, {"lora_unet_a.lokr_w1_b", Tensor::full({1, 2}, 0.5f)},
                      {"lora_unet_a.lokr_w2", Tensor::full({2, 2}, 0.5f)}, {"lora_unet_a.alpha", Tensor::full({}, 2.0f)},
                      {"lora_te_b.lokr_w1", Tensor::full({2, 2}, 0.5f)}, {"lora_te_b.lokr_w2", Tensor::full({2, 2}, 0.5f)}},
                     {{"ss_network_module", "lycoris.kohya"}, {"ss_steps", "300"}, {"ss_base_model_version", "sd_v1"}});
    r = run_cli(" info " + path("part_lokr.safetensors"));
    EXPECT_EQ(r.code, 0) << r.out;
    EXPECT_NE(r.out.find("(2 adapted modules)"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("lora: LoKr 2; 1 of 2 modules on text encoders"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("lora_rank: 1, scale (alpha / rank): 1-2"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("lora_training: network lycoris.kohya, base sd_v1, steps 300"), std::string::npos) << r.out;
    // LyCORIS kinds with no low-rank factors (OFT here, as LyCORIS wrote it, constrained and rescaled): counted, no
    // rank or scale to show
    r = run_cli(" info " + std::string(NUANCE_TEST_DATA) + "/lycoris_algos/oft.safetensors");
    EXPECT_EQ(r.code, 0) << r.out;
    EXPECT_NE(r.out.find("(13 adapted modules)"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("lora: OFT 13 (13 with a norm constraint, 13 rescaled); 3 of 13 modules on text encoders"),
              std::string::npos) << r.out;
    EXPECT_NE(r.out.find("lora_rank: none (full factors), scale (alpha / rank): none"), std::string::npos) << r.out;
    // a nuance-trained OFT with LyCORIS' constraint and rescale, and a LoRA with norm modules (--train-norm)
    r = run_cli(" info " + std::string(NUANCE_TEST_DATA) + "/lycoris_trained/oft_cr.safetensors");
    EXPECT_NE(r.out.find("lora: OFT 136 (136 with a norm constraint, 136 rescaled); 36 of 136"), std::string::npos) << r.out;
    r = run_cli(" info " + std::string(NUANCE_TEST_DATA) + "/lycoris_trained/norm.safetensors");
    EXPECT_NE(r.out.find("lora: LoRA 136, norm diff 50; 36 of 186"), std::string::npos) << r.out;
    // the all-in-one file (text encoders and VAE inside) is a whole model, not a component
    const std::string aio = path("sd35_aio.safetensors");
    ASSERT_EQ(run_cli(" make-random --tiny --family sd35-medium --with-text-encoders -o " + aio).code, 0);
    const CliRun whole = run_cli(" info " + aio);
    EXPECT_EQ(whole.code, 0) << whole.out;
    EXPECT_NE(whole.out.find("family: sd3"), std::string::npos) << whole.out;
    EXPECT_EQ(whole.out.find("\ncomponent: "), std::string::npos) << whole.out;
    // unknown tensors: an error naming the file
    save_safetensors(path("junk.safetensors"), {{"foo.weight", Tensor::full({2, 2}, 1.0f)}});
    const CliRun junk = run_cli(" info " + path("junk.safetensors"));
    EXPECT_EQ(junk.code, 1) << junk.out;
    EXPECT_NE(junk.out.find("unknown model layout"), std::string::npos) << junk.out;
}

// An SD2 UNet-only file with its OpenCLIP ViT-H text encoder (--clip-h) and VAE as separate files: the full
// checkpoint's PNG, byte for byte; without --clip-h the error names the flag.
TEST_F(Cli, Sd2UNetOnlyFileGeneratesWithClipH) {
    const std::string full = path("sd2_full.safetensors");
    ASSERT_EQ(run_cli(" make-random --tiny --family sd2 --dtype f32 -o " + full).code, 0);
    const WeightFile wf = load_weights(full);
    auto under = [&](const std::string& prefix) {
        std::vector<std::pair<std::string, Tensor>> out;
        for (const auto& [k, v] : wf.tensors)
            if (k.starts_with(prefix)) out.emplace_back(k.substr(prefix.size()), v);
        return out;
    };
    save_safetensors(path("sd2_unet.safetensors"), under("model.diffusion_model."));
    save_safetensors(path("sd2_open_clip.safetensors"), under("cond_stage_model.model."));
    save_safetensors(path("sd2_vae.safetensors"), under("first_stage_model."));
    const std::string gen = " generate -p \"a red fox\" -W 64 -H 64 --steps 2 -s 3 --disable-image-metadata -q ";
    ASSERT_EQ(run_cli(gen + "-m " + full + " -o " + path("sd2_full.png")).code, 0);
    const std::string parts = "-m " + path("sd2_unet.safetensors") + " --family sd2 --vae " + path("sd2_vae.safetensors");
    const CliRun r = run_cli(gen + parts + " --clip-h " + path("sd2_open_clip.safetensors") + " -o " + path("sd2_parts.png"));
    ASSERT_EQ(r.code, 0) << r.out;
    EXPECT_EQ(read_image(path("sd2_parts.png")).pixels, read_image(path("sd2_full.png")).pixels);
    const CliRun missing = run_cli(gen + parts + " -o " + path("sd2_none.png"));
    EXPECT_EQ(missing.code, 1) << missing.out;
    EXPECT_NE(missing.out.find("has no OpenCLIP ViT-H text encoder (cond_stage_model.model.*); pass one with --clip-h"),
              std::string::npos) << missing.out;
}

TEST_F(Cli, SamplersListed) {
    const CliRun r = run_cli(" samplers");
    ASSERT_EQ(r.code, 0) << r.out;
    for (const char* s : {"euler_a", "Euler a", "dpmpp_2m", "ddim", "karras"})
        EXPECT_NE(r.out.find(s), std::string::npos) << s;
}

TEST_F(Cli, BenchPrintsTheAgreedLinesAndAProfile) {
    const CliRun r = run_cli(" bench -m " + model() + " -W 64 -H 64 --steps 1 --repeat 2 -t 1 --precision fp32 --profile");
    ASSERT_EQ(r.code, 0) << r.out;
    const std::string num = "[0-9]+\\.[0-9]+";
    for (const std::string part : {"text_encode", "denoise_step", "vae_decode"})
        EXPECT_TRUE(std::regex_search(r.out, std::regex("\n" + part + " median_s=" + num + " min_s=" + num + " max_s=" + num + "\n")))
            << part << "\n" << r.out;
    EXPECT_TRUE(std::regex_search(r.out, std::regex("\npeak_rss_mb=[0-9]+\n"))) << r.out;
    EXPECT_TRUE(std::regex_search(r.out, std::regex("denoise_step_gflop=" + num + " gflops_per_s=" + num))) << r.out;
    // the profile: the UNet's convolutions and attention are there, with counted work
    EXPECT_TRUE(std::regex_search(r.out, std::regex("profile part=denoise_step op=conv2d calls=[0-9]+ ms=" + num +
                                                    " share=" + num + "% gflops_per_s=" + num))) << r.out;
    EXPECT_NE(r.out.find("profile part=denoise_step op=attention"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("profile part=vae_decode total_ms="), std::string::npos) << r.out;
    const CliRun bad = run_cli(" bench -m " + model() + " --repeat 0");
    EXPECT_EQ(bad.code, 2) << bad.out;
    EXPECT_NE(bad.out.find("--repeat"), std::string::npos) << bad.out;
}

TEST(CheckGolden, ProjectCopyPassesWithNoSkipInRequiredCases) {
    const CliRun r = run_cli(std::string(" check-golden ") + NUANCE_TEST_DATA + "/golden");
    EXPECT_EQ(r.code, 0) << r.out;
    EXPECT_EQ(r.out.find(" FAIL "), std::string::npos) << r.out;
    for (const char* req : {"clip_tokenizer/ids_sd1 PASS", "clip_tokenizer/ids_sd2 PASS", "clip_text/", "unet_sd15/eps PASS",
                            "unet_sd15/odd.eps PASS", "unet_sd2/odd.eps PASS", "unet_sdxl/odd.eps PASS",
                            "vae/vae_sd.decoded PASS", "pipeline_sd15/ddim.image PASS", "pipeline_sd15/euler.image PASS",
                            "pipeline_inpaint/inpaint9.image PASS", "pipeline_inpaint/blend4.image PASS",
                            "original_format/sd15.unet.eps PASS", "original_format/sdxl.text_encoder_2.text_embeds PASS",
                            "schedulers/euler.x PASS", "schedulers/euler_ancestral.x PASS", "schedulers/ddim.x PASS",
                            "schedulers/dpmpp_2m.x PASS", "schedulers/dpmpp_2m_karras.x PASS", "rng/cpu/seed0/7 PASS"})
        EXPECT_NE(r.out.find(req), std::string::npos) << req;
    for (const char* c : {"\nclip_tokenizer/", "\nclip_text/", "\nunet_", "\nvae/vae_sd", "\npipeline_sd15/", "\npipeline_inpaint/", "\noriginal_format/"}) {
        size_t pos = 0;
        while ((pos = r.out.find(c, pos)) != std::string::npos) {
            const size_t eol = r.out.find('\n', pos + 1);
            EXPECT_EQ(r.out.substr(pos, eol - pos).find(" SKIP "), std::string::npos) << r.out.substr(pos, eol - pos);
            pos = eol;
            if (pos == std::string::npos) break;
        }
    }
    const auto last = r.out.rfind("passed, 0 failed");
    EXPECT_NE(last, std::string::npos);
}

TEST(CheckGolden, MissingFolderIsAnError) {
    const CliRun r = run_cli(" check-golden /nonexistent/golden");
    EXPECT_EQ(r.code, 1);
    EXPECT_NE(r.out.find("does not exist"), std::string::npos) << r.out;
}

TEST_F(Cli, MakeRandomEveryFamilyGenerates) {
    for (const std::string fam : {"sd2", "sdxl"}) {
        const std::string m = path("tiny_" + fam + ".safetensors");
        CliRun r = run_cli(" make-random --tiny --family " + fam + " -o " + m);
        ASSERT_EQ(r.code, 0) << r.out;
        r = run_cli(" info " + m);
        EXPECT_NE(r.out.find("family: " + fam), std::string::npos) << r.out;
        r = run_cli(kGen + "-m " + m + " -p cat -n dog --sampler ddim -o " + path(fam + ".png"));
        ASSERT_EQ(r.code, 0) << r.out;
        EXPECT_EQ(read_image(path(fam + ".png")).width, 64);
    }
    const CliRun r = run_cli(" make-random --family sd9 -o " + path("x.safetensors"));
    EXPECT_NE(r.code, 0);
    EXPECT_NE(r.out.find("unknown family 'sd9'"), std::string::npos) << r.out;
}
