// nuance train: the differentiable model forwards against the inference forwards, short runs whose loss falls,
// bit-exact resume, the exported model loading into the SD pipeline, and the error paths (bad data, mismatched
// checkpoints, a full disk).
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/resource.h>

#include <csignal>
#include <filesystem>

#include "../test_util.h"
#include "autograd/param_grads.h"
#include "data_test_util.h"
#include "core/mt19937.h"
#include "io/safetensors.h"
#include "models/sd/stable_diffusion.h"
#include "nn/module.h"
#include "ops/elementwise.h"
#include "pipelines/generate.h"
#include "train/checkpoint.h"
#include "train/model_graph.h"
#include "train/train_arch.h"
#include "samplers/schedule.h"
#include "train/trainer.h"

namespace nuance {
namespace {

using ::testing::HasSubstr;
namespace fs = std::filesystem;

float largest_diff(const Tensor& a, const Tensor& b) {
    const Tensor d = (a.f32() - b.f32()).contiguous();
    float m = 0;
    for (int64_t i = 0; i < d.numel(); ++i) m = std::max(m, std::fabs(d.data<float>()[i]));
    return m;
}

const nlohmann::json kTinyVae = {{"vae", {{"block_out_channels", {8, 16}}, {"norm_num_groups", 4}}}};
const nlohmann::json kTinyLdm = {
    {"unet", {{"block_out_channels", {8, 16}}, {"attention_levels", {false, true}}, {"heads", 2},
              {"norm_num_groups", 4}}},
    {"text_encoder", {{"hidden", 16}, {"layers", 1}, {"heads", 2}, {"intermediate", 32}}}};

// 8 images of 8x8 pixels: a colour per caption, so a text-conditioned model has something to learn.
void write_color_folder(const std::string& dir, int n = 8) {
    const char* names[] = {"red", "green", "blue", "yellow"};
    const uint8_t rgb[4][3] = {{220, 30, 30}, {30, 200, 40}, {40, 50, 220}, {230, 220, 30}};
    for (int i = 0; i < n; ++i) {
        Image img = test::gradient_image(8, 8, 0, 0, 0);
        for (size_t p = 0; p < img.pixels.size(); p += 3)
            for (int c = 0; c < 3; ++c) img.pixels[p + c] = rgb[i % 4][c];
        const std::string stem = dir + "/img" + std::to_string(i);
        test::write_image(stem + ".png", img);
        test::write_text(stem + ".txt", std::string(names[i % 4]) + " square");
    }
}

TrainOptions tiny_options(const std::string& model, const std::string& data, const std::string& out) {
    TrainOptions o;
    o.model = model;
    o.data = data;
    o.output = out;
    o.arch = model == "vae" ? kTinyVae : kTinyLdm;
    o.resolution = 8;
    o.batch = 4;
    o.steps = 4;
    o.warmup = 0;
    o.lr = 1e-3f;
    o.checkpoint_every = 2;
    o.seed = 7;
    return o;
}

// The colour folder under `d`, a tiny VAE trained `vae_steps` steps on it (d / "vae"), and options for a tiny LDM on
// that VAE writing to d / run.
TrainOptions tiny_ldm_options(const test::TempDir& d, int64_t vae_steps, const std::string& run) {
    write_color_folder(d / "data");
    TrainOptions vo = tiny_options("vae", d / "data", d / "vae");
    vo.steps = vae_steps;
    train(vo);
    TrainOptions o = tiny_options("ldm", d / "data", d / run);
    o.vae = d / "vae";
    return o;
}

// ---- the differentiable forwards compute what the inference forwards compute ----

TEST(TrainModelGraph, UNetVaeClipMatchTheInferenceForwards) {
    const UNetConfig uc = unet_config_from_arch(kTinyLdm["unet"], 4, 16);
    UNet2DConditionModel unet(uc);
    init_random(unet, 3, 0.2f);
    ClipTextModel te(clip_config_from_arch(kTinyLdm["text_encoder"]));
    init_random(te, 4, 0.2f);
    AutoencoderKL vae(vae_config_from_arch(kTinyVae["vae"], 3));
    init_random(vae, 5, 0.2f);

    TorchCpuRng rng(1);
    const Tensor x = rng.randn({2, 4, 4, 4}), img = rng.randn({2, 3, 8, 8});
    const Tensor ids = Tensor::from_ids({49406, 320, 1000, 49407, 49407, 49406, 500, 49407, 49407, 49407}, {2, 5});
    const Tensor t = Tensor::from_vector({10.0f, 900.0f}, {2});
    NoGradGuard ng;
    const Tensor ctx_ref = te.forward(ids).last_hidden_state;
    const Var ctx = clip_encode(te, ids);
    EXPECT_LT(largest_diff(ctx.value(), ctx_ref), 1e-4f);
    EXPECT_LT(largest_diff(unet_forward(unet, Var(x), t, ctx).value(), unet.forward(x, t, ctx_ref)), 1e-4f);
    EXPECT_LT(largest_diff(vae_encode_moments(vae, Var(img)).value(), vae.encode_moments(img)), 1e-4f);
    EXPECT_LT(largest_diff(vae_decode(vae, Var(x)).value(), vae.decode(x)), 1e-4f);
}

// The one definition covers the SD2/SDXL block variants too: linear proj_in/proj_out, two transformer blocks per
// attention (mid included), attention at every level, and records the tape through every one of those weights.
TEST(TrainModelGraph, LinearProjectionAndDepthTwoMatchTheInferenceForward) {
    UNetConfig uc;
    uc.in_channels = uc.out_channels = 4;
    uc.block_out_channels = {8, 16};
    uc.layers_per_block = 1;
    uc.down_attn = {true, true};
    uc.down_depth = {2, 2};
    uc.up_depth = {2, 2};
    uc.mid_depth = 2;
    uc.heads = {2, 4};
    uc.cross_attention_dim = 12;
    uc.use_linear_projection = true;
    uc.norm_num_groups = 4;
    uc.time_embed_dim = 32;
    UNet2DConditionModel unet(uc);
    init_random(unet, 8, 0.2f);
    TorchCpuRng rng(3);
    const Tensor x = rng.randn({2, 4, 4, 4}), ctx = rng.randn({2, 7, 12});
    const Tensor t = Tensor::from_vector({3.0f, 700.0f}, {2});
    {
        NoGradGuard ng;
        EXPECT_LT(largest_diff(unet_forward(unet, Var(x), t, Var(ctx)).value(), unet.forward(x, t, ctx)), 1e-4f);
    }
    ParamGrads g(unet);
    {
        ParamGrads::Bind bind(g);
        backward(mean(square(unet_forward(unet, Var(x), t, Var(ctx)))));
    }
    for (auto& e : g.entries()) EXPECT_TRUE(g.grad(*e.param).defined()) << e.name;
    // SD2's penultimate-layer conditioning (clip skip 2) through the Var text encoder, and its range check.
    nlohmann::json tj = kTinyLdm["text_encoder"];
    tj["layers"] = 2;
    ClipTextModel te(clip_config_from_arch(tj));
    init_random(te, 11, 0.2f);
    const Tensor ids = Tensor::from_ids({49406, 320, 1000, 49407, 49407, 49406, 500, 49407, 49407, 49407}, {2, 5});
    {
        NoGradGuard ng;
        EXPECT_LT(largest_diff(clip_encode(te, ids, 2).value(), te.encode_sd(ids, 2, true)), 1e-4f);
        EXPECT_THAT(test::error_of([&] { clip_encode(te, ids, 3); }),
                    ::testing::HasSubstr("clip_skip 3 is outside 1..2"));
    }
    // An SDXL UNet needs its micro-conditioning; the Var entry point without pooled text or time ids says so.
    uc.text_time = true;
    uc.add_in_dim = 8 + 6 * 4;
    uc.addition_time_embed_dim = 4;
    UNet2DConditionModel xl(uc);
    init_random(xl, 10, 0.2f);
    NoGradGuard ng;
    EXPECT_THAT(test::error_of([&] { unet_forward(xl, Var(x), t, Var(ctx)); }),
                ::testing::HasSubstr("SDXL UNet needs pooled text_embeds and time_ids"));
}

TEST(TrainModelGraph, GradientsReachEveryTrainedWeight) {
    UNet2DConditionModel unet(unet_config_from_arch(kTinyLdm["unet"], 4, 16));
    init_random(unet, 3, 0.2f);
    ParamGrads g(unet);
    TorchCpuRng rng(2);
    const Var ctx(rng.randn({1, 3, 16}));
    {
        ParamGrads::Bind bind(g);
        backward(mean(square(unet_forward(unet, Var(rng.randn({1, 4, 4, 4})), Tensor::scalar(5.0f), ctx))));
    }
    for (auto& e : g.entries()) EXPECT_TRUE(g.grad(*e.param).defined()) << e.name;
}

TEST(TrainObjective, NoisedInputAndTargetsMatchHandComputedValues) {
    // Linear betas 0.1, 0.2 over 2 steps: alphas_cumprod = [0.9, 0.9 * 0.8 = 0.72].
    NoiseScheduleConfig c;
    c.num_train_timesteps = 2;
    c.beta_start = 0.1;
    c.beta_end = 0.2;
    c.beta_schedule = BetaSchedule::Linear;
    const NoiseSchedule sched(c);
    const Tensor x0 = Tensor::from_vector({1.0f, -2.0f}, {2, 1, 1, 1});
    const Tensor noise = Tensor::from_vector({0.5f, 3.0f}, {2, 1, 1, 1});
    const NoisedBatch e = add_training_noise(x0, noise, {0, 1}, sched, "epsilon");
    const float a0 = std::sqrt(0.9f), b0 = std::sqrt(0.1f), a1 = std::sqrt(0.72f), b1 = std::sqrt(0.28f);
    EXPECT_NEAR(e.x_t.data<float>()[0], a0 * 1.0f + b0 * 0.5f, 1e-6f);
    EXPECT_NEAR(e.x_t.data<float>()[1], a1 * -2.0f + b1 * 3.0f, 1e-6f);
    EXPECT_EQ(e.target.data<float>()[1], 3.0f);
    EXPECT_EQ(e.timesteps.data<float>()[1], 1.0f);
    const NoisedBatch v = add_training_noise(x0, noise, {0, 1}, sched, "v_prediction");
    EXPECT_NEAR(v.target.data<float>()[0], a0 * 0.5f - b0 * 1.0f, 1e-6f);
    EXPECT_NEAR(v.target.data<float>()[1], a1 * 3.0f - b1 * -2.0f, 1e-6f);
    EXPECT_THAT(test::error_of([&] { add_training_noise(x0, noise, {0, 2}, sched, "epsilon"); }),
                HasSubstr("timestep 2 outside 0..1"));
}

// Min-SNR-gamma weights against diffusers' training_utils.compute_snr on the SD schedule (scaled-linear 0.00085-0.012,
// 1000 steps), gamma 5: min(snr, 5) / snr (epsilon), / (snr + 1) (v_prediction).
TEST(TrainObjective, MinSnrWeightsMatchDiffusers) {
    NoiseScheduleConfig c;  // (the SD1 defaults)
    const NoiseSchedule sched(c);
    const std::vector<int64_t> t = {0, 10, 100, 300, 500, 999};
    const std::vector<float> eps = {0.004253724f, 0.04830568f, 0.5914454f, 1, 1, 1};
    const std::vector<float> v = {0.004250109f, 0.04784346f, 0.5288842f, 0.5905008f, 0.2763325f, 0.004660094f};
    const Tensor we = min_snr_weights(t, sched, 5.0f, "epsilon"), wv = min_snr_weights(t, sched, 5.0f, "v_prediction");
    ASSERT_EQ(we.shape(), Shape({6, 1, 1, 1}));
    for (size_t i = 0; i < t.size(); ++i) {
        EXPECT_NEAR(we.data<float>()[i], eps[i], 2e-6f * std::max(1.0f, eps[i]) + 1e-7f) << t[i];
        EXPECT_NEAR(wv.data<float>()[i], v[i], 2e-6f) << t[i];
    }
    // zero terminal SNR: the last step's SNR is 0; epsilon takes the limit 1 (not 0 / 0), v 0
    NoiseScheduleConfig z;
    z.rescale_zero_snr = true;
    const NoiseSchedule zsched(z);
    EXPECT_EQ(min_snr_weights({999}, zsched, 5.0f, "epsilon").data<float>()[0], 1.0f);
    EXPECT_EQ(min_snr_weights({999}, zsched, 5.0f, "v_prediction").data<float>()[0], 0.0f);
    EXPECT_THAT(test::error_of([&] { min_snr_weights(t, sched, 0.0f, "epsilon"); }), HasSubstr("gamma must be > 0"));
    EXPECT_THAT(test::error_of([&] { min_snr_weights({1000}, sched, 5.0f, "epsilon"); }),
                HasSubstr("timestep 1000 outside 0..999"));
}

// ---- short runs ----

TEST(Trainer, VaeLossFallsAndExportsADiffusersVae) {
    test::TempDir d("train_vae");
    write_color_folder(d / "data");
    TrainOptions o = tiny_options("vae", d / "data", d / "run");
    o.steps = 60;
    o.lr = 5e-3f;  // 60 Adam steps move a weight by at most ~60 lr: enough to learn the colours
    o.checkpoint_every = 30;
    const TrainReport r = train(o);
    EXPECT_EQ(r.steps, 60);
    EXPECT_LT(r.last_loss, r.first_loss * 0.8);
    EXPECT_TRUE(fs::exists(d / "run/vae/config.json"));
    const auto vae = load_trained_vae(d / "run");
    EXPECT_GT(vae->config().scaling_factor, 0.0f);
    EXPECT_NE(vae->config().scaling_factor, 1.0f);  // calibrated on the data
    EXPECT_EQ(vae->config().block_out_channels, (std::vector<int64_t>{8, 16}));
}

TEST(Trainer, LdmLossFallsAndTheExportGeneratesThroughTheSdPipeline) {
    test::TempDir d("train_ldm");
    TrainOptions o = tiny_ldm_options(d, 10, "run");
    o.steps = 60;
    o.checkpoint_every = 30;
    o.caption_dropout = 0.1f;
    const TrainReport r = train(o);
    EXPECT_LT(r.last_loss, r.first_loss);
    EXPECT_EQ(r.exported, d / "run/model");
    // The run folder holds the checkpoints and a log line every 10 steps.
    EXPECT_TRUE(fs::exists(d / "run/checkpoints/step-0000060.safetensors"));
    EXPECT_TRUE(fs::exists(d / "run/train_log.jsonl"));

    StableDiffusionModel m = load_stable_diffusion(d / "run/model");
    EXPECT_EQ(m.family, SDFamily::SD1);
    EXPECT_EQ(m.vae_scale(), 2);
    EXPECT_EQ(m.unet->config().cross_attention_dim, 16);
    GenerateParams g;
    g.prompt = "red square";
    g.width = g.height = 8;
    g.steps = 3;
    g.seed = 1;
    const std::vector<GeneratedImage> res = generate(m, g);
    ASSERT_EQ(res.size(), 1u);
    EXPECT_EQ(res[0].image.width, 8);
}

// --min-snr-gamma reweights the same first batch (same data, timesteps and noise: the weights are <= 1 for epsilon,
// so the first loss falls below the plain run's); --noise-offset changes the noise; both train, both are checked.
TEST(Trainer, MinSnrGammaAndNoiseOffset) {
    test::TempDir d("train_snr");
    TrainOptions o = tiny_ldm_options(d, 2, "plain");
    o.steps = 2;
    const TrainReport plain = train(o);
    o.output = d / "snr";
    o.min_snr_gamma = 5;
    const TrainReport snr = train(o);
    EXPECT_LT(snr.first_loss, plain.first_loss);
    EXPECT_GT(snr.first_loss, 0.0);
    o.output = d / "offset";
    o.min_snr_gamma = 0;
    o.noise_offset = 0.1f;
    const TrainReport off = train(o);
    EXPECT_NE(off.first_loss, plain.first_loss);
    EXPECT_TRUE(std::isfinite(off.last_loss));
    o.noise_offset = 1.5f;
    EXPECT_THAT(test::error_of([&] { train(o); }), HasSubstr("--noise-offset must be in [0, 1]"));
    o.noise_offset = 0;
    o.min_snr_gamma = std::nanf("");
    EXPECT_THAT(test::error_of([&] { train(o); }), HasSubstr("--min-snr-gamma must be in [0, 1000]"));
    o.min_snr_gamma = 5;
    o.model = "vae";
    o.vae.clear();
    EXPECT_THAT(test::error_of([&] { train(o); }), HasSubstr("are for the diffusion objectives"));
}

// A resumed checkpoint's nuance_train metadata with fields of the wrong type: a named error, not nlohmann's.
TEST(Trainer, ResumeRefusesMetadataFieldsOfTheWrongType) {
    test::TempDir d("train_resume_bad_meta");
    write_color_folder(d / "data");
    TrainOptions o = tiny_options("vae", d / "data", d / "run");
    o.steps = 1;
    o.checkpoint_every = 1;
    train(o);
    const std::string ck = d / "run/checkpoints/step-0000001.safetensors";
    const WeightFile wf = load_safetensors(ck);
    std::vector<std::pair<std::string, Tensor>> tensors(wf.tensors.begin(), wf.tensors.end());
    nlohmann::json meta = nlohmann::json::parse(wf.metadata.at("nuance_train"));
    meta["loader"]["seed"] = "x";
    save_checkpoint_file(ck, tensors, meta);
    o.steps = 2;
    o.resume = true;
    EXPECT_EQ(test::error_of([&] { train(o); }),
              "checkpoint '" + ck + "': nuance_train metadata loader: field 'seed' must be a non-negative integer, got \"x\"");
    meta["loader"]["seed"] = 1;
    meta["model"] = 7;
    save_checkpoint_file(ck, tensors, meta);
    EXPECT_EQ(test::error_of([&] { train(o); }),
              "checkpoint '" + ck + "': nuance_train metadata: field 'model' must be a string, got 7");
}

TEST(Trainer, ResumeContinuesBitExactly) {
    test::TempDir d("train_resume");
    TrainOptions o = tiny_ldm_options(d, 2, "straight");
    o.steps = 6;
    o.checkpoint_every = 3;
    train(o);
    TrainOptions a = o;
    a.output = d / "split";
    a.steps = 6;
    a.checkpoint_every = 3;
    // The interrupted run: the straight run's step-3 checkpoint, resumed with the same schedule length (the cosine
    // depends on `steps`).
    fs::create_directories(d / "split/checkpoints");
    fs::copy_file(d / "straight/checkpoints/step-0000003.safetensors", d / "split/checkpoints/step-0000003.safetensors");
    a.resume = true;
    const TrainReport r = train(a);
    EXPECT_EQ(r.steps, 3);
    const WeightFile x = load_safetensors(d / "straight/checkpoints/step-0000006.safetensors");
    const WeightFile y = load_safetensors(d / "split/checkpoints/step-0000006.safetensors");
    ASSERT_EQ(x.tensors.size(), y.tensors.size());
    for (const auto& [k, v] : x.tensors) {
        ASSERT_TRUE(y.tensors.count(k)) << k;
        EXPECT_EQ(largest_diff(v, y.tensors.at(k)), 0.0f) << k;
    }
}

TEST(Trainer, PixelDdpmOnFashionMnist) {
    // --model ddpm: the denoiser on 1-channel 28x28 pixels, no VAE (Debian's dataset-fashion-mnist).
    if (!fs::exists("/usr/share/datasets/fashion-mnist")) GTEST_SKIP() << "dataset-fashion-mnist not installed";
    test::TempDir d("train_ddpm");
    TrainOptions o;
    o.model = "ddpm";
    o.output = d / "run";
    o.arch = {{"unet", {{"block_out_channels", {8, 16}}, {"attention_levels", {false, true}}, {"heads", 2},
                        {"norm_num_groups", 4}}},
              {"text_encoder", {{"hidden", 16}, {"layers", 1}, {"heads", 2}}}};
    o.resolution = 28;
    o.batch = 4;
    o.steps = 20;
    o.limit = 16;
    o.warmup = 0;
    o.lr = 1e-3f;
    const TrainReport r = train(o);
    EXPECT_EQ(r.steps, 20);
    EXPECT_TRUE(std::isfinite(r.last_loss));
    EXPECT_TRUE(fs::exists(d / "run/model/unet/config.json"));
}

TEST(Trainer, Bf16MixedPrecisionTracksFp32) {
    // The guard switches the forward products to bf16 (operands rounded, f32 accumulation): results move by about
    // bf16's resolution, never more; f32 is restored when the guard ends.
    TorchCpuRng rng(5);
    const Var x(rng.randn({16, 64})), w(rng.randn({32, 64}), true);
    const Tensor y32 = linear(x, w).value();
    Tensor y16;
    {
        ComputePrecisionGuard g(Precision::BF16);
        EXPECT_EQ(compute_precision(), Precision::BF16);
        y16 = linear(x, w).value();
    }
    EXPECT_EQ(compute_precision(), Precision::FP32);
    const float d = largest_diff(y32, y16);
    EXPECT_GT(d, 0.0f);
    EXPECT_LT(d, 0.1f);  // |y| ~ 8: bf16 inputs (8 bits of mantissa) give errors of a few 1e-2

    // A run in bf16 mixed precision learns like the f32 run: the master weights, gradients and AdamW stay f32.
    test::TempDir dir("train_bf16");
    write_color_folder(dir / "data");
    TrainOptions o = tiny_options("vae", dir / "data", dir / "f32");
    o.steps = 30;
    o.lr = 5e-3f;
    const TrainReport a = train(o);
    o.output = dir / "bf16";
    o.precision = Precision::BF16;
    const TrainReport b = train(o);
    EXPECT_LT(b.last_loss, b.first_loss);
    EXPECT_NEAR(b.last_loss, a.last_loss, 0.1 * a.last_loss);
    EXPECT_NE(b.last_loss, a.last_loss);  // it did run in another precision
}

// ---- errors ----

TEST(TrainerErrors, BadDataFoldersAndImagesAreNamed) {
    test::TempDir d("train_err");
    TrainOptions o = tiny_options("vae", d / "missing", d / "run");
    EXPECT_THAT(test::error_of([&] { train(o); }), HasSubstr("does not exist"));
    fs::create_directories(d / "empty");
    o.data = d / "empty";
    EXPECT_THAT(test::error_of([&] { train(o); }), HasSubstr("empty"));
    // An image that is not an image
    write_color_folder(d / "bad");
    test::write_text(d / "bad/img3.png", "not a png");
    o.data = d / "bad";
    EXPECT_THAT(test::error_of([&] { train(o); }), HasSubstr("img3.png"));
    // An image without its caption file
    write_color_folder(d / "nocap");
    fs::remove(d / "nocap/img2.txt");
    o.data = d / "nocap";
    EXPECT_THAT(test::error_of([&] { train(o); }), HasSubstr("img2"));
    // ldm without a VAE, bad options
    TrainOptions l = tiny_options("ldm", d / "bad", d / "run2");
    EXPECT_THAT(test::error_of([&] { train(l); }), HasSubstr("--vae"));
    l.model = "gan";
    EXPECT_THAT(test::error_of([&] { train(l); }), HasSubstr("unknown --model 'gan'"));
    TrainOptions a = tiny_options("vae", d / "nocap", d / "run3");
    a.arch = {{"unet", {{"block_out_channels", {8}}}}};
    EXPECT_THAT(test::error_of([&] { train(a); }), HasSubstr("'unet' is not a part of a vae model"));
    a.arch = {{"vae", {{"block_out_channels", {6, 12}}}}};
    EXPECT_THAT(test::error_of([&] { train(a); }), HasSubstr("6 channels are not divisible into 32 norm groups"));
}

TEST(TrainerErrors, CheckpointOfAnotherArchitectureIsRefused) {
    test::TempDir d("train_arch");
    write_color_folder(d / "data");
    TrainOptions o = tiny_options("vae", d / "data", d / "run");
    o.steps = 2;
    train(o);
    o.arch = {{"vae", {{"block_out_channels", {8, 32}}, {"norm_num_groups", 4}}}};
    o.steps = 4;
    o.resume = true;
    EXPECT_THAT(test::error_of([&] { train(o); }), HasSubstr("does not match the configured architecture"));
    TrainOptions n = tiny_options("vae", d / "data", d / "fresh");
    n.resume = true;
    EXPECT_THAT(test::error_of([&] { train(n); }), HasSubstr("holds no checkpoint"));
    n.resume = false;
    n.resume_from = d / "data/img0.png";
    EXPECT_THAT(test::error_of([&] { train(n); }), HasSubstr("not a safetensors file"));
}

TEST(TrainerErrors, DiskFullLeavesThePreviousCheckpointIntactAndNoPartialFile) {
    test::TempDir d("train_full");
    write_color_folder(d / "data");
    TrainOptions o = tiny_options("vae", d / "data", d / "run");
    o.steps = 2;
    o.checkpoint_every = 2;
    train(o);
    const std::string good = d / "run/checkpoints/step-0000002.safetensors";
    const auto size_before = fs::file_size(good);
    o.steps = 4;
    o.resume = true;
    std::string err;
    {
        const test::FileSizeLimit full_disk(64 * 1024);  // files may not grow past 64 KiB
        err = test::error_of([&] { train(o); });
    }
    EXPECT_THAT(err, HasSubstr("step-0000004"));
    EXPECT_FALSE(fs::exists(d / "run/checkpoints/step-0000004.safetensors"));
    for (const auto& e : fs::directory_iterator(d / "run/checkpoints"))
        EXPECT_EQ(e.path().filename().string().find(".tmp"), std::string::npos) << e.path();
    EXPECT_EQ(fs::file_size(good), size_before);
    EXPECT_NO_THROW(load_checkpoint_file(good));
}

}  // namespace
}  // namespace nuance
