// Training option and architecture validation (train/train_options.h, train_arch.h): every numeric option bounded,
// nested --arch keys checked, sizes bounded; train() refuses the same values before any work.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>

#include "../test_util.h"
#include "train/train_options.h"

using namespace nuance;
using ::testing::HasSubstr;

namespace {

TrainOptions ok_options() {
    TrainOptions o;
    o.model = "vae";
    o.output = "/nonexistent/run";
    return o;
}

std::string err(const std::function<void(TrainOptions&)>& change) {
    TrainOptions o = ok_options();
    change(o);
    return test::error_of([&] { validate_train_options(o); });
}

std::string arch_err(const std::string& model, const nlohmann::json& arch) {
    TrainOptions o = ok_options();
    o.model = model;
    o.vae = "/x";
    o.arch = arch;
    return test::error_of([&] { validate_train_arch(o); });
}

}  // namespace

TEST(TrainOptions, DefaultsPass) {
    EXPECT_EQ(err([](TrainOptions&) {}), "(no error)");
    EXPECT_EQ(arch_err("vae", nlohmann::json::object()), "(no error)");
    EXPECT_EQ(arch_err("ldm", nlohmann::json::object()), "(no error)");
    EXPECT_EQ(arch_err("ddpm", nlohmann::json::object()), "(no error)");
}

TEST(TrainOptions, HeldOutConceptsNeedAnImageFolder) {
    EXPECT_EQ(err([](TrainOptions& o) { o.exclude_concepts = "held.txt"; }), "(no error)");
    EXPECT_EQ(err([](TrainOptions& o) {
                  o.model = "ddpm";
                  o.exclude_concepts = "held.txt";
              }),
              "train: --exclude-concepts needs an image folder with labels or captions (not --model ddpm)");
    EXPECT_EQ(err([](TrainOptions& o) { o.balance_concepts = true; }), "(no error)");
    EXPECT_EQ(err([](TrainOptions& o) {
                  o.model = "ddpm";
                  o.balance_concepts = true;
              }),
              "train: --balance-concepts needs an image folder with labels or captions (not --model ddpm)");
}

TEST(TrainOptions, EveryNumericOptionIsBounded) {
    EXPECT_EQ(err([](TrainOptions& o) { o.checkpoint_every = 0; }),
              "train: --checkpoint-every must be in 1..1000000000, got 0");
    EXPECT_EQ(err([](TrainOptions& o) { o.limit = -1; }), "train: --limit must be in 0..9223372036854775807, got -1");
    EXPECT_EQ(err([](TrainOptions& o) { o.steps = 0; }), "train: --steps must be in 1..1000000000, got 0");
    EXPECT_EQ(err([](TrainOptions& o) { o.batch = -4; }), "train: --batch must be in 1..65536, got -4");
    EXPECT_EQ(err([](TrainOptions& o) { o.keep_checkpoints = 0; }),
              "train: --keep-checkpoints must be in 1..1000000, got 0");
    EXPECT_EQ(err([](TrainOptions& o) { o.warmup = -1; }), "train: --warmup must be in 0..1000000000, got -1");
    EXPECT_EQ(err([](TrainOptions& o) { o.resolution = 4; }), "train: --resolution must be in 8..4096, got 4");
    EXPECT_EQ(err([](TrainOptions& o) { o.ema_decay = 1.0f; }), "train: --ema must be in [0, 1), got 1");
    EXPECT_EQ(err([](TrainOptions& o) { o.ema_decay = -0.5f; }), "train: --ema must be in [0, 1), got -0.5");
    EXPECT_EQ(err([](TrainOptions& o) { o.ema_decay = NAN; }), "train: --ema must be in [0, 1), got nan");
    EXPECT_EQ(err([](TrainOptions& o) { o.lr = INFINITY; }), "train: --lr must be in (0, 10], got inf");
    EXPECT_EQ(err([](TrainOptions& o) { o.min_lr = -1; }), "train: --min-lr must be in [0, 0.0002], got -1");
    EXPECT_EQ(err([](TrainOptions& o) { o.weight_decay = NAN; }), "train: --weight-decay must be in [0, 10], got nan");
    EXPECT_EQ(err([](TrainOptions& o) { o.max_grad_norm = 0; }),
              "train: --max-grad-norm must be a finite number > 0, got 0");
    EXPECT_EQ(err([](TrainOptions& o) { o.caption_dropout = 2; }),
              "train: --caption-dropout must be in [0, 1], got 2");
    EXPECT_EQ(err([](TrainOptions& o) { o.style_dropout = -0.1f; }),
              "train: --style-dropout must be in [0, 1], got -0.1");
    EXPECT_EQ(err([](TrainOptions& o) { o.keyword_prob = NAN; }), "train: --keyword-prob must be in [0, 1], got nan");
    EXPECT_EQ(err([](TrainOptions& o) { o.kl_weight = -1; }), "train: --kl-weight must be a finite number >= 0, got -1");
    EXPECT_EQ(err([](TrainOptions& o) { o.prediction = "x0"; }),
              "train: --prediction must be epsilon or v_prediction, got 'x0'");
    // train() itself refuses them too (library callers), before creating the run folder
    TrainOptions o = ok_options();
    o.checkpoint_every = 0;
    EXPECT_EQ(test::error_of([&] { train(o); }), "train: --checkpoint-every must be in 1..1000000000, got 0");
}

TEST(TrainOptions, NestedArchKeysAndSizes) {
    EXPECT_THAT(arch_err("ldm", {{"unet", {{"layers_per_blok", 2}}}}),
                HasSubstr("UNet arch: unknown key 'layers_per_blok' (known keys: block_out_channels, layers_per_block"));
    EXPECT_THAT(arch_err("ldm", {{"text_encoder", {{"hiden", 8}}}}), HasSubstr("text encoder arch: unknown key 'hiden'"));
    EXPECT_THAT(arch_err("vae", {{"vae", {{"latent", 8}}}}), HasSubstr("VAE arch: unknown key 'latent'"));
    EXPECT_EQ(arch_err("ldm", {{"unet", {{"layers_per_block", 100000}}}}),
              "UNet arch: 'layers_per_block' must be an integer in 1..16, got 100000");
    EXPECT_EQ(arch_err("ldm", {{"unet", {{"transformer_depth", -1}}}}),
              "UNet arch: 'transformer_depth' must be an integer in 0..16, got -1");
    EXPECT_EQ(arch_err("ldm", {{"unet", {{"heads", 1000}}}}), "UNet arch: 'heads' must be an integer in 1..64, got 1000");
    EXPECT_THAT(arch_err("ldm", {{"unet", {{"block_out_channels", {64, 64, 64, 64, 64, 64, 64, 64, 64}}}}}),
                HasSubstr("'block_out_channels' must be a list of 1..8 integers"));
    EXPECT_THAT(arch_err("ldm", {{"unet", {{"attention_levels", {false, "yes", true}}}}}),
                HasSubstr("'attention_levels' has a bad entry \"yes\" (true or false)"));
    EXPECT_EQ(arch_err("ldm", {{"text_encoder", {{"layers", 1000}}}}),
              "text encoder arch: 'layers' must be an integer in 1..48, got 1000");
    EXPECT_EQ(arch_err("vae", {{"vae", {{"latent_channels", 100000}}}}),
              "VAE arch: 'latent_channels' must be an integer in 1..64, got 100000");
    EXPECT_EQ(arch_err("vae", {{"vae", {{"mid_block_attention", "no"}}}}),
              "VAE arch: 'mid_block_attention' must be true or false, got \"no\"");
    EXPECT_THAT(arch_err("vae", {{"unet", nlohmann::json::object()}}), HasSubstr("--arch: 'unet' is not a part of a vae model"));
}
