#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <unistd.h>

#include "eval/golden/taesd_golden.h"
#include "io/safetensors.h"
#include "io/weights.h"
#include "models/taesd/taesd.h"
#include "ops/ops.h"
#include "../../test_util.h"

using namespace nuance;
using ::testing::HasSubstr;
using nuance::test::error_of;
namespace fs = std::filesystem;

namespace {

const std::string kDir = std::string(NUANCE_TEST_DATA) + "/golden/taesd";

struct TempDir {
    fs::path path;
    explicit TempDir(const std::string& tag)
        : path(fs::path(NUANCE_SCRATCH_DIR) / ("nuance_taesd_" + tag + "_" + std::to_string(::getpid()))) {
        fs::remove_all(path);
        fs::create_directories(path);
    }
    ~TempDir() { fs::remove_all(path); }
    std::string operator/(const std::string& f) const { return (path / f).string(); }
};

std::vector<std::pair<std::string, Tensor>> pairs(const WeightFile& w) {
    return {w.tensors.begin(), w.tensors.end()};
}

}  // namespace

TEST(Taesd, GoldenAllOutputs) {
    const auto lines = check_golden_taesd(kDir);
    EXPECT_EQ(lines.size(), 20u);  // 7 tensors + 3 original-layout checks, x {taesd, taef1}
    for (const auto& l : lines) {
        EXPECT_TRUE(l.pass) << l.name << ": " << l.reason;
        EXPECT_FALSE(l.skip) << l.name;
    }
}

// The decoder file alone (the usual --taesd file), the encoder file alone, and both: each loads its halves, with the
// latent channels and widths read from the weights.
TEST(Taesd, OriginalFilesLoadTheirHalves) {
    auto dec = TinyAutoencoder::load(kDir + "/taef1_decoder.safetensors", "--taesd");
    EXPECT_TRUE(dec->has_decoder());
    EXPECT_FALSE(dec->has_encoder());
    EXPECT_EQ(dec->config().latent_channels, 16);
    EXPECT_EQ(dec->config().decoder_width, 24);
    EXPECT_THAT(error_of([&] { dec->encode(Tensor::zeros({1, 3, 16, 16})); }), HasSubstr("has no encoder weights"));
    auto enc = TinyAutoencoder::load(kDir + "/taesd_encoder.safetensors", "--taesd");
    EXPECT_TRUE(enc->has_encoder());
    EXPECT_FALSE(enc->has_decoder());
    EXPECT_EQ(enc->config().latent_channels, 4);
    EXPECT_THAT(error_of([&] { enc->decode(Tensor::zeros({1, 4, 2, 2})); }), HasSubstr("has no decoder weights"));
    auto both = TinyAutoencoder::load({kDir + "/taesd_decoder.safetensors", kDir + "/taesd_encoder.safetensors"}, "x");
    EXPECT_TRUE(both->has_encoder() && both->has_decoder());
    const Tensor out = both->decode(both->encode(Tensor::zeros({1, 3, 16, 24})));
    EXPECT_EQ(out.shape(), (Shape{1, 3, 16, 24}));
}

// A diffusers AutoencoderTiny folder (config.json + diffusion_pytorch_model.safetensors), and a TAESD module's
// state dict ("encoder.0.weight", "decoder.1.weight": taesd.py's TAESD class) give the same model.
TEST(Taesd, DiffusersFolderAndPrefixedOriginal) {
    TempDir t("folder");
    fs::create_directories(t / "tae");
    fs::copy_file(kDir + "/taesd_diffusers.safetensors", t / "tae/diffusion_pytorch_model.safetensors");
    std::ofstream(t / "tae/config.json") << R"({"_class_name": "AutoencoderTiny", "latent_channels": 4,
                                               "latent_magnitude": 2, "latent_shift": 0.25})";
    auto a = TinyAutoencoder::load(t / "tae", "--taesd");
    EXPECT_FLOAT_EQ(a->config().latent_magnitude, 2.0f);
    EXPECT_FLOAT_EQ(a->config().latent_shift, 0.25f);
    std::vector<std::pair<std::string, Tensor>> pre;
    for (const char* half : {"encoder", "decoder"})
        for (auto& [k, v] : load_safetensors(kDir + "/taesd_" + half + ".safetensors").tensors)
            pre.emplace_back(std::string(half) + "." + k, v);
    save_safetensors(t / "taesd.safetensors", pre);
    auto b = TinyAutoencoder::load(t / "taesd.safetensors", "--taesd");
    const Tensor z = Tensor::full({1, 4, 3, 5}, 0.3f);
    EXPECT_EQ(max_abs_diff(a->decode(z), b->decode(z)), 0.0);

    std::ofstream(t / "tae/config.json") << R"({"latent_channels": 16})";
    EXPECT_EQ(error_of([&] { TinyAutoencoder::load(t / "tae", "--taesd"); }),
              "--taesd: config.json says latent_channels 16 but the weights have 4");
}

// Files that are not tiny autoencoders, or are broken ones, fail naming the file and what is wrong.
TEST(Taesd, HostileFiles) {
    TempDir t("hostile");
    save_safetensors(t / "unet.safetensors", {{"conv_in.weight", Tensor::zeros({4, 4, 3, 3})}});
    EXPECT_EQ(error_of([&] { TinyAutoencoder::load(t / "unet.safetensors", "--taesd"); }),
              t / "unet.safetensors" + " is not a tiny autoencoder (TAESD/TAESDXL/TAESD3/TAEF1): expected "
              "'encoder.layers.*'/'decoder.layers.*' (diffusers AutoencoderTiny) or the original taesd_decoder/"
              "taesd_encoder keys ('1.weight', '3.conv.0.weight', ...); it has 1 tensors, e.g. 'conv_in.weight'");

    // A decoder with one layer's weight missing.
    auto w = pairs(load_safetensors(kDir + "/taesd_decoder.safetensors"));
    std::erase_if(w, [](const auto& p) { return p.first == "3.conv.2.weight"; });
    save_safetensors(t / "dec.safetensors", w);
    EXPECT_THAT(error_of([&] { TinyAutoencoder::load(t / "dec.safetensors", "--taesd"); }),
                HasSubstr("is missing tensor '3.conv.2.weight'"));

    // An extra layer the architecture does not have.
    w = pairs(load_safetensors(kDir + "/taesd_decoder.safetensors"));
    w.emplace_back("40.weight", Tensor::zeros({16, 16, 3, 3}));
    save_safetensors(t / "extra.safetensors", w);
    EXPECT_EQ(error_of([&] { TinyAutoencoder::load(t / "extra.safetensors", "--taesd"); }),
              t / "extra.safetensors" + ": 1 decoder tensor(s) fit no layer of a tiny autoencoder, e.g. '40.weight'");

    // The first decoder conv is not 4-D.
    w = pairs(load_safetensors(kDir + "/taesd_decoder.safetensors"));
    for (auto& [k, v] : w)
        if (k == "1.weight") v = Tensor::zeros({16, 4});
    save_safetensors(t / "flat.safetensors", w);
    EXPECT_EQ(error_of([&] { TinyAutoencoder::load(t / "flat.safetensors", "--taesd"); }),
              t / "flat.safetensors" + ": tensor '1.weight' is [16, 4], not a conv weight");

    // A folder without weights; three files.
    fs::create_directories(t / "empty");
    EXPECT_EQ(error_of([&] { TinyAutoencoder::load(t / "empty", "--taesd"); }),
              "--taesd folder '" + t / "empty" + "' has no diffusion_pytorch_model.safetensors (a diffusers "
              "AutoencoderTiny folder expected)");
    EXPECT_THAT(error_of([&] { TinyAutoencoder::load({"a", "b", "c"}, "--taesd"); }), HasSubstr("got 3"));
}

TEST(Taesd, DecodeChecksItsInput) {
    auto tae = TinyAutoencoder::load(kDir + "/taesd_decoder.safetensors", "--taesd");
    EXPECT_EQ(error_of([&] { tae->decode(Tensor::zeros({1, 16, 2, 2})); }),
              "tiny autoencoder '" + kDir + "/taesd_decoder.safetensors' decodes [N, 4, h, w] latents, got [1, 16, 2, 2]");
}

// A 4-channel TAESD on a 16-channel (SD3/Flux) model, and the reverse: an error naming both.
TEST(Taesd, FamilyMismatchNamesBoth) {
    auto sd = TinyAutoencoder::load(kDir + "/taesd_decoder.safetensors", "--taesd");
    auto f1 = TinyAutoencoder::load(kDir + "/taef1_decoder.safetensors", "--taesd");
    EXPECT_NO_THROW(check_tae_matches(*sd, 4, "sd1 model 'm.safetensors'"));
    EXPECT_EQ(error_of([&] { check_tae_matches(*sd, 16, "flux model 'flux.safetensors'"); }),
              "TAESD/TAESDXL '" + kDir + "/taesd_decoder.safetensors' (4-channel latents) does not fit flux model "
              "'flux.safetensors' (16-channel latents): use TAESD3 (SD3) or TAEF1 (Flux)");
    EXPECT_EQ(error_of([&] { check_tae_matches(*f1, 4, "sdxl model 'xl.safetensors'"); }),
              "TAESD3/TAEF1 '" + kDir + "/taef1_decoder.safetensors' (16-channel latents) does not fit sdxl model "
              "'xl.safetensors' (4-channel latents): use TAESD (SD1/SD2) or TAESDXL (SDXL)");
}
