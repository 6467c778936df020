// `nuance generate` with LoRAs: --lora FILE:weight, --lora-dir + <lora:name:w> in the prompt (stripped before
// encoding, kept in the infotext with A1111's "Lora hashes"), and the errors for unknown names and bad files.
#include <gtest/gtest.h>

#include <filesystem>

#include "../test_util.h"
#include "tiny_model_suite.h"
#include "adapters/lora_library.h"
#include "io/image.h"
#include "io/safetensors.h"

using namespace nuance;
namespace fs = std::filesystem;

namespace {

using nuance::test::CliRun;
using nuance::test::run_cli;

class CliLora : public nuance::test::TinyModelSuite<CliLora> {
protected:
    // A kohya LoRA (rank 2) on one UNet attention projection and one CLIP projection of the tiny SD1.5.
    static std::string make_lora(const std::string& file, const std::string& unet_module = "down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q") {
        fs::create_directories(fs::path(file).parent_path());
        std::vector<std::pair<std::string, Tensor>> t;
        auto add = [&](const std::string& m, int64_t out, int64_t in) {
            std::vector<float> d((size_t)(2 * in)), u((size_t)(out * 2));
            for (size_t i = 0; i < d.size(); ++i) d[i] = 0.05f * (float)((i * 7) % 11) - 0.25f;
            for (size_t i = 0; i < u.size(); ++i) u[i] = 0.04f * (float)((i * 5) % 13) - 0.24f;
            t.push_back({m + ".lora_down.weight", Tensor::from_vector(d, {2, in}).to(DType::F16)});
            t.push_back({m + ".lora_up.weight", Tensor::from_vector(u, {out, 2}).to(DType::F16)});
            t.push_back({m + ".alpha", Tensor::scalar(2.0f).to(DType::F16)});
        };
        add("lora_unet_" + unet_module, 32, 32);
        add("lora_te_text_model_encoder_layers_0_self_attn_q_proj", 64, 64);
        save_safetensors(file, t);
        return file;
    }
    static std::string params(const std::string& png) { return read_png_text(png).at(0).second; }
};

const std::string kGen = " generate -q --steps 2 -W 64 -H 64 --seed 5 ";

TEST_F(CliLora, FlagAndPromptTagGiveTheSameImageAndA1111Infotext) {
    const std::string lora = make_lora(path("loras/sub/style.safetensors"));
    const std::string hash = lora_short_hash(lora);
    ASSERT_EQ(hash.size(), 12u);
    CliRun r = run_cli(kGen + "-m " + model() + " -p apple -o " + path("base.png"));
    ASSERT_EQ(r.code, 0) << r.out;
    r = run_cli(kGen + "-m " + model() + " -p apple --lora " + lora + ":4 -o " + path("flag.png"));
    ASSERT_EQ(r.code, 0) << r.out;
    r = run_cli(kGen + "-m " + model() + " -p \"apple <lora:style:4>\" --lora-dir " + path("loras") + " -o " +
                path("tag.png"));
    ASSERT_EQ(r.code, 0) << r.out;
    EXPECT_NE(read_image(path("base.png")).pixels, read_image(path("flag.png")).pixels);
    // The tag is not text: same image as the flag with the tag-less prompt.
    EXPECT_EQ(read_image(path("flag.png")).pixels, read_image(path("tag.png")).pixels);
    const std::string p = params(path("tag.png"));
    EXPECT_EQ(p.rfind("apple <lora:style:4>\nSteps: 2", 0), 0u) << p;
    EXPECT_NE(p.find(", Lora hashes: \"style: " + hash + "\", Version: "), std::string::npos) << p;
    EXPECT_NE(params(path("flag.png")).find("Lora hashes: \"style: " + hash + "\""), std::string::npos);
    // A name from --lora-dir works for --lora too; weight 0 is the base model.
    r = run_cli(kGen + "-m " + model() + " -p apple --lora-dir " + path("loras") + " --lora style:0 -o " + path("zero.png"));
    ASSERT_EQ(r.code, 0) << r.out;
    EXPECT_EQ(read_image(path("base.png")).pixels, read_image(path("zero.png")).pixels);
}

TEST_F(CliLora, UnknownNameListsCloseNames) {
    make_lora(path("lib/detail_tweaker.safetensors"));
    const CliRun r = run_cli(kGen + "-m " + model() + " -p \"x <lora:detail_tweakr:1>\" --lora-dir " + path("lib") +
                             " -o " + path("u.png"));
    EXPECT_EQ(r.code, 1) << r.out;
    EXPECT_NE(r.out.find("LoRA 'detail_tweakr' is not in --lora-dir '" + path("lib") +
                         "' (1 LoRAs; close names: detail_tweaker)"),
              std::string::npos) << r.out;
}

TEST_F(CliLora, TagWithoutFolderAndBadWeightAreUsageErrors) {
    CliRun r = run_cli(kGen + "-m " + model() + " -p \"x <lora:style:1>\" -o " + path("n.png"));
    EXPECT_EQ(r.code, 2) << r.out;
    EXPECT_NE(r.out.find("prompt: <lora:style:1> needs a LoRA folder (--lora-dir DIR)"), std::string::npos) << r.out;
    make_lora(path("lib2/style.safetensors"));
    r = run_cli(kGen + "-m " + model() + " -p \"x <lora:style:1e999>\" --lora-dir " + path("lib2") + " -o " + path("n.png"));
    EXPECT_EQ(r.code, 2) << r.out;
    EXPECT_NE(r.out.find("prompt: <lora:style:1e999>: weight '1e999' is not a number"), std::string::npos) << r.out;
    r = run_cli(kGen + "-m " + model() + " -p x --lora " + path("missing.safetensors") + ":0.5 -o " + path("n.png"));
    EXPECT_NE(r.code, 0);
    EXPECT_NE(r.out.find("--lora file '" + path("missing.safetensors") + "' does not exist"), std::string::npos) << r.out;
}

TEST_F(CliLora, LoraMatchingNothingFailsNamingTheFile) {
    const std::string lora = make_lora(path("other/flux_thing.safetensors"), "double_blocks_0_img_attn_qkv");
    // The text-encoder module matches; the UNet one does not: 1 of 2 unmatched is not "more than half".
    CliRun r = run_cli(kGen + "-m " + model() + " -p x --lora " + lora + " -o " + path("m.png"));
    EXPECT_EQ(r.code, 0) << r.out;
    std::vector<std::pair<std::string, Tensor>> t = {
        {"lora_unet_double_blocks_0_img_attn_qkv.lora_down.weight", Tensor::from_vector({1, 1}, {1, 2})},
        {"lora_unet_double_blocks_0_img_attn_qkv.lora_up.weight", Tensor::from_vector({1, 1}, {2, 1})}};
    save_safetensors(path("other/only_flux.safetensors"), t);
    r = run_cli(kGen + "-m " + model() + " -p x --lora " + path("other/only_flux.safetensors") + " -o " + path("m.png"));
    EXPECT_EQ(r.code, 1) << r.out;
    EXPECT_NE(r.out.find("only_flux.safetensors': none of its 1 modules match a layer of the model; unmatched e.g. "
                         "lora_unet_double_blocks_0_img_attn_qkv; the model's layers are e.g. text_encoder."),
              std::string::npos) << r.out;
}

}  // namespace
