// nuance train --model lcm (latent consistency distillation): the boundary scalings, the DDIM solver and the
// guidance-scale embedding against hand-computed / diffusers-formula values, the guidance-conditioned UNet (detection,
// zero-initialised cond_proj, Var vs Tensor forward), a distillation run on a tiny random teacher (loss falls, the
// export loads and samples with the lcm sampler, a 1-step run at lr ~ 0 leaves the student equal to the teacher),
// bit-exact resume, and the error paths (missing teacher, bad w range, ...).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>

#include "../test_util.h"
#include "autograd/param_grads.h"
#include "core/mt19937.h"
#include "data_test_util.h"
#include "lcm_test_util.h"
#include "io/safetensors.h"
#include "models/sd/stable_diffusion.h"
#include "nn/module.h"
#include "ops/elementwise.h"
#include "pipelines/generate.h"
#include "samplers/schedule.h"
#include "train/checkpoint.h"
#include "train/lcm_distill.h"
#include "train/model_graph.h"
#include "train/train_arch.h"

namespace nuance {
namespace {

using ::testing::HasSubstr;
namespace fs = std::filesystem;

// ---- the formulas ----

TEST(LcmDistill, BoundaryScalingsMatchDiffusers) {
    // c_skip(0) = 1, c_out(0) = 0: f(x, 0) = x.
    const BoundaryScalings z = consistency_boundary(0.0);
    EXPECT_EQ(z.c_skip, 1.0);
    EXPECT_EQ(z.c_out, 0.0);
    // t = 19, timestep_scaling 10: s = 190, c_skip = 0.25 / (190^2 + 0.25), c_out = 190 / sqrt(190^2 + 0.25).
    const BoundaryScalings b = consistency_boundary(19.0);
    EXPECT_NEAR(b.c_skip, 0.25 / 36100.25, 1e-15);
    EXPECT_NEAR(b.c_out, 190.0 / std::sqrt(36100.25), 1e-15);
    // scaling 1 at t = 0.5: s = 0.5, c_skip = c_out^2 = 0.5.
    const BoundaryScalings h = consistency_boundary(0.5, 1.0);
    EXPECT_NEAR(h.c_skip, 0.5, 1e-15);
    EXPECT_NEAR(h.c_out, std::sqrt(0.5), 1e-15);
}

TEST(LcmDistill, DdimSolverGridAndStepMatchHandComputedValues) {
    const NoiseSchedule ns;  // SD's scaled_linear, 1000 steps
    const DdimSolver s(ns, 50);
    // diffusers' DDIMSolver: (arange(1, 51) * 20).round() - 1 = 19, 39, ..., 999; previous = t - 20, clamped at 0.
    EXPECT_EQ(s.steps(), 50);
    EXPECT_EQ(s.timestep(0), 19);
    EXPECT_EQ(s.timestep(49), 999);
    EXPECT_EQ(s.prev_timestep(0), 0);
    EXPECT_EQ(s.prev_timestep(10), 199);
    const auto& ac = ns.alphas_cumprod();
    EXPECT_EQ(s.alpha_cumprod_prev(0), ac[0]);
    EXPECT_EQ(s.alpha_cumprod_prev(10), ac[199]);
    // z_prev = sqrt(a_prev) x0 + sqrt(1 - a_prev) eps, per row.
    const Tensor x0 = Tensor::from_vector({1.0f, -2.0f}, {2, 1, 1, 1});
    const Tensor eps = Tensor::from_vector({0.5f, 3.0f}, {2, 1, 1, 1});
    const Tensor z = s.step(x0, eps, {0, 10}).contiguous();
    EXPECT_NEAR(z.data<float>()[0], std::sqrt(ac[0]) * 1.0f + std::sqrt(1.0f - ac[0]) * 0.5f, 1e-6f);
    EXPECT_NEAR(z.data<float>()[1], std::sqrt(ac[199]) * -2.0f + std::sqrt(1.0f - ac[199]) * 3.0f, 1e-6f);
    // N = 30 does not divide 1000: step 33, last timestep 989 (diffusers' integer step_ratio).
    const DdimSolver t30(ns, 30);
    EXPECT_EQ(t30.timestep(29), 989);
    EXPECT_EQ(t30.prev_timestep(1), 32);
    EXPECT_THAT(test::error_of([&] { s.timestep(50); }), HasSubstr("index 50 outside 0..49"));
    EXPECT_THAT(test::error_of([&] { DdimSolver(ns, 0); }), HasSubstr("0 steps"));
    EXPECT_THAT(test::error_of([&] { s.step(x0, eps, {0}); }), HasSubstr("1 indices"));
}

TEST(LcmDistill, GuidanceEmbeddingMatchesDiffusers) {
    // diffusers' get_guidance_scale_embedding in float32 (w * 1000, log(10000) / (half - 1), exp, sin | cos, pad),
    // evaluated step by step in float32 by a Python transcription of it.
    const float ref8[3][8] = {
        {0.0000000f, 0.0000000f, 0.0000000f, 0.0000000f, 1.0000000f, 1.0000000f, 1.0000000f, 1.0000000f},
        {-0.9705280f, -0.8205646f, 0.5129421f, 0.0249974f, 0.2409883f, 0.5715538f, 0.8584232f, 0.9996875f},
        {0.2191900f, 0.8508515f, 0.1791469f, 0.2955202f, -0.9756822f, 0.5254062f, 0.9838223f, 0.9553365f}};
    const Tensor e = guidance_scale_embedding({0.0f, 0.25f, 3.0f}, 8);
    ASSERT_EQ(e.shape(), (Shape{3, 8}));
    for (int r = 0; r < 3; ++r)
        for (int k = 0; k < 8; ++k) EXPECT_NEAR(e.data<float>()[r * 8 + k], ref8[r][k], 1e-3f) << r << "," << k;
    const float ref5[5] = {-0.9939020f, 0.1494381f, -0.1102674f, 0.9887711f, 0.0f};  // odd width: a zero pad
    const Tensor o = guidance_scale_embedding({1.5f}, 5);
    for (int k = 0; k < 5; ++k) EXPECT_NEAR(o.data<float>()[k], ref5[k], 1e-3f) << k;
    EXPECT_THAT(test::error_of([] { guidance_scale_embedding({1.0f}, 1); }), HasSubstr("width 1 outside"));
    EXPECT_THAT(test::error_of([] { guidance_scale_embedding({NAN}, 8); }), HasSubstr("not finite"));
}

// ---- the guidance-conditioned UNet ----

TEST(LcmUNet, CondProjIsDetectedZeroInitLeavesTheOutputAndVarForwardMatches) {
    UNetConfig c = unet_config_from_arch(kTinyUnet, 4, 16);
    UNet2DConditionModel plain(c);
    init_random(plain, 3, 0.2f);
    c.time_cond_proj_dim = 8;
    UNet2DConditionModel cond(c);
    // The teacher's weights, cond_proj zero: what train_lcm starts the student from.
    std::map<std::string, Tensor> sd = weights_of(plain);
    for_each_param(cond, [&](const std::string& n, Param& p) {
        p.value = sd.count(n) ? sd.at(n).clone() : Tensor::zeros(p.shape);
    });
    const std::map<std::string, Tensor> csd = weights_of(cond);
    ASSERT_TRUE(csd.count("time_embedding.cond_proj.weight"));
    EXPECT_EQ(csd.at("time_embedding.cond_proj.weight").shape(), (Shape{8, 8}));
    EXPECT_EQ(UNetConfig::detect(csd).time_cond_proj_dim, 8);
    EXPECT_EQ(UNetConfig::detect(sd).time_cond_proj_dim, 0);

    TorchCpuRng rng(1);
    const Tensor x = rng.randn({2, 4, 4, 4}), ctx = rng.randn({2, 3, 16});
    const Tensor t = Tensor::from_vector({10.0f, 900.0f}, {2});
    UNetExtra ex;
    ex.timestep_cond = guidance_scale_embedding({2.0f, 7.0f}, 8);
    NoGradGuard ng;
    const Tensor y0 = plain.forward(x, t, ctx);
    EXPECT_EQ(largest_diff(cond.forward(x, t, ctx, ex), y0), 0.0f);  // zero cond_proj: the teacher exactly
    // A non-zero cond_proj changes the output, and the Var forward computes what the Tensor forward does.
    for_each_param(cond, [&](const std::string& n, Param& p) {
        if (n == "time_embedding.cond_proj.weight") p.value = rng.randn(p.shape) * 0.3f;
    });
    const Tensor y1 = cond.forward(x, t, ctx, ex);
    EXPECT_GT(largest_diff(y1, y0), 1e-4f);
    EXPECT_LT(largest_diff(unet_forward(cond, Var(x), t, Var(ctx), ex.timestep_cond).value(), y1), 1e-4f);
    // Without a guidance input the student runs as diffusers does with timestep_cond=None.
    EXPECT_EQ(largest_diff(cond.forward(x, t, ctx), y0), 0.0f);
    ex.timestep_cond = guidance_scale_embedding({2.0f, 7.0f}, 6);
    EXPECT_THAT(test::error_of([&] { cond.forward(x, t, ctx, ex); }), HasSubstr("guidance embedding"));
    std::map<std::string, Tensor> bad = csd;
    bad["time_embedding.cond_proj.weight"] = Tensor::zeros({5, 8});
    EXPECT_THAT(test::error_of([&] { UNetConfig::detect(bad); }), HasSubstr("time_embedding.cond_proj.weight"));
}

// ---- distillation runs on a tiny random teacher ----

TEST(LcmDistillRun, LossFallsAndTheStudentSamplesWithTheLcmSampler) {
    test::TempDir d("lcm_run");
    write_tiny_teacher(d / "teacher");
    write_color_folder(d / "data");
    TrainOptions o = tiny_options(d / "data", d / "run");
    o.steps = 30;
    o.checkpoint_every = 30;
    o.lr = 1e-2f;
    // One solver step (N = 1): from t = 999 straight to t = 0, where the boundary condition makes the target the
    // teacher's guided x0 itself (c_skip(0) = 1): a fixed regression target, so the loss must fall.
    LcmOptions l = tiny_lcm(d / "teacher");
    l.num_ddim_steps = 1;
    l.loss = "l2";
    l.w_max = 2.0f;
    const TrainReport r = train_lcm(o, l);
    EXPECT_EQ(r.steps, 30);
    EXPECT_LT(r.last_loss, r.first_loss * 0.8) << r.first_loss << " -> " << r.last_loss;
    EXPECT_EQ(r.exported, d / "run/model");
    EXPECT_TRUE(fs::exists(d / "run/checkpoints/step-0000030.safetensors"));
    EXPECT_TRUE(fs::exists(d / "run/model/text_encoder/model.safetensors"));

    StableDiffusionModel m = load_stable_diffusion(d / "run/model");
    EXPECT_EQ(m.unet->config().time_cond_proj_dim, 8);
    EXPECT_EQ(m.guidance(), GuidanceKind::Distilled);
    EXPECT_EQ(m.scheduler_config.value("_class_name", std::string()), "LCMScheduler");
    {
        // The boundary condition at inference: at t = 0 the implied x0 is x itself (c_skip = 1, c_out = 0); at
        // t = 999 (c_skip ~ 3e-7) the output is the network's.
        TorchCpuRng rng(5);
        const Tensor x = rng.randn({1, 4, 4, 4}), out = rng.randn({1, 4, 4, 4});
        const float a0 = m.objective().prediction == Prediction::Epsilon ? 1.0f : 0.0f;
        ASSERT_EQ(a0, 1.0f);
        const NoiseSchedule ns;
        const float sa = std::sqrt(ns.alphas_cumprod()[0]), sb = std::sqrt(1.0f - ns.alphas_cumprod()[0]);
        const Tensor e0 = m.consistency_output(out, x, 0.0);
        EXPECT_LT(largest_diff((x - e0 * sb) / sa, x), 1e-4f);
        EXPECT_LT(largest_diff(m.consistency_output(out, x, 999.0), out), 1e-4f);
    }
    const GenerationDefaults gd = m.generation_defaults();
    EXPECT_EQ(gd.sampler, "lcm");
    EXPECT_EQ(gd.steps, 4);
    EXPECT_EQ(gd.cfg_scale, 3.0f);  // the teacher's 5, clamped to 1 + [1, 2]
    GenerateParams g;
    g.prompt = "red square";
    g.width = g.height = 8;
    g.steps = 4;
    g.sampler = "lcm";
    g.seed = 1;
    g.cfg_scale = 2.0f;
    const std::vector<GeneratedImage> a = generate(m, g);
    ASSERT_EQ(a.size(), 1u);
    EXPECT_EQ(a[0].image.width, 8);
    EXPECT_EQ(generate(m, g)[0].image.pixels, a[0].image.pixels);  // deterministic
    g.cfg_scale = 7.0f;  // the guidance reaches the UNet through the embedding
    EXPECT_NE(generate(m, g)[0].image.pixels, a[0].image.pixels);
}

TEST(LcmDistillRun, ZeroInitStudentIsTheTeacherAfterAStepOfNothing) {
    test::TempDir d("lcm_zero");
    write_tiny_teacher(d / "teacher");
    write_color_folder(d / "data");
    TrainOptions o = tiny_options(d / "data", d / "run");
    o.steps = 1;
    o.lr = 1e-12f;  // one AdamW step moves a weight by ~lr: below f16's resolution of the export
    o.weight_decay = 0;
    train_lcm(o, tiny_lcm(d / "teacher"));
    const StableDiffusionModel t = load_stable_diffusion(d / "teacher");
    const StableDiffusionModel s = load_stable_diffusion(d / "run/model");
    const std::map<std::string, Tensor> ts = weights_of(*t.unet), ss = weights_of(*s.unet);
    for (const auto& [name, v] : ts) {
        ASSERT_TRUE(ss.count(name)) << name;
        EXPECT_EQ(largest_diff(ss.at(name), v), 0.0f) << name;
    }
    EXPECT_EQ(largest_diff(ss.at("time_embedding.cond_proj.weight"), Tensor::zeros({8, 8})), 0.0f);
    TorchCpuRng rng(3);
    const Tensor x = rng.randn({1, 4, 4, 4}), ctx = rng.randn({1, 77, 16});
    UNetExtra ex;
    ex.timestep_cond = guidance_scale_embedding({4.0f}, 8);
    NoGradGuard ng;
    EXPECT_EQ(largest_diff(s.unet->forward(x, Tensor::scalar(500.0f), ctx, ex),
                           t.unet->forward(x, Tensor::scalar(500.0f), ctx)),
              0.0f);
}

TEST(LcmDistillRun, ResumeContinuesBitExactly) {
    test::TempDir d("lcm_resume");
    write_tiny_teacher(d / "teacher");
    write_color_folder(d / "data");
    TrainOptions o = tiny_options(d / "data", d / "straight");
    o.steps = 4;
    o.checkpoint_every = 2;
    train_lcm(o, tiny_lcm(d / "teacher"));
    TrainOptions a = tiny_options(d / "data", d / "resumed");
    a.steps = 4;
    a.checkpoint_every = 2;
    // Resume from the straight run's step-2 checkpoint: the remaining 2 steps give the same weights.
    fs::create_directories(d / "resumed/checkpoints");
    fs::copy_file(d / "straight/checkpoints/step-0000002.safetensors", d / "resumed/checkpoints/step-0000002.safetensors");
    a.resume = true;
    train_lcm(a, tiny_lcm(d / "teacher"));
    const CheckpointFile x = load_checkpoint_file(d / "straight/checkpoints/step-0000004.safetensors");
    const CheckpointFile y = load_checkpoint_file(d / "resumed/checkpoints/step-0000004.safetensors");
    ASSERT_EQ(x.tensors.size(), y.tensors.size());
    for (const auto& [name, v] : x.tensors) EXPECT_EQ(largest_diff(v, y.tensors.at(name)), 0.0f) << name;
}

// ---- errors ----

TEST(LcmDistillErrors, BadOptionsAndMissingTeacherAreNamed) {
    test::TempDir d("lcm_err");
    write_color_folder(d / "data");
    const TrainOptions o = tiny_options(d / "data", d / "run");
    LcmOptions l = tiny_lcm(d / "nowhere");
    EXPECT_THAT(test::error_of([&] { train_lcm(o, l); }), HasSubstr("--teacher '" + (d / "nowhere") + "' is not a folder"));
    fs::create_directories(d / "empty");
    l.teacher = d / "empty";
    EXPECT_THAT(test::error_of([&] { train_lcm(o, l); }), HasSubstr("has no model_index.json"));
    l.teacher.clear();
    EXPECT_THAT(test::error_of([&] { validate_lcm_options(o, l); }), HasSubstr("needs --teacher"));
    l = tiny_lcm(d / "teacher");
    l.w_min = 8;
    l.w_max = 3;
    EXPECT_THAT(test::error_of([&] { validate_lcm_options(o, l); }),
                HasSubstr("--w-min/--w-max must satisfy 0 <= w-min <= w-max <= 100, got 8 and 3"));
    l.w_min = -1;
    EXPECT_THAT(test::error_of([&] { validate_lcm_options(o, l); }), HasSubstr("--w-min/--w-max"));
    l = tiny_lcm(d / "teacher");
    l.w_max = NAN;
    EXPECT_THAT(test::error_of([&] { validate_lcm_options(o, l); }), HasSubstr("--w-min/--w-max"));
    l = tiny_lcm(d / "teacher");
    l.num_ddim_steps = 0;
    EXPECT_THAT(test::error_of([&] { validate_lcm_options(o, l); }), HasSubstr("--num-ddim-steps"));
    l = tiny_lcm(d / "teacher");
    l.target_ema = 1.0f;
    EXPECT_THAT(test::error_of([&] { validate_lcm_options(o, l); }), HasSubstr("--ema-decay"));
    l = tiny_lcm(d / "teacher");
    l.loss = "l1";
    EXPECT_THAT(test::error_of([&] { validate_lcm_options(o, l); }), HasSubstr("--loss must be huber or l2"));
    l = tiny_lcm(d / "teacher");
    l.default_guidance = 0.5f;
    EXPECT_THAT(test::error_of([&] { validate_lcm_options(o, l); }), HasSubstr("--lcm-guidance"));
    // A teacher that is already a student, and a checkpoint of another kind of run.
    write_tiny_teacher(d / "teacher");
    TrainOptions one = tiny_options(d / "data", d / "student");
    one.steps = 1;
    train_lcm(one, tiny_lcm(d / "teacher"));
    EXPECT_THAT(test::error_of([&] { train_lcm(o, tiny_lcm(d / "student/model")); }),
                HasSubstr("already a guidance-conditioned (LCM) student"));
    TrainOptions big = tiny_options(d / "data", d / "run2");
    big.batch = 9;
    EXPECT_THAT(test::error_of([&] { train_lcm(big, tiny_lcm(d / "teacher")); }),
                HasSubstr("fewer than the batch size 9"));
}

TEST(LcmDistillCli, UsageErrorsAndAMissingTeacher) {
    auto r = test::run_cli("train --model lcm -o /tmp/nuance_lcm_cli_bad");
    EXPECT_EQ(r.code, 2) << r.out;
    EXPECT_THAT(r.out, HasSubstr("--model lcm needs --teacher"));
    r = test::run_cli("train --model lcm --teacher x --w-min 9 --w-max 3 -o /tmp/nuance_lcm_cli_bad");
    EXPECT_EQ(r.code, 2) << r.out;
    EXPECT_THAT(r.out, HasSubstr("got 9 and 3"));
    r = test::run_cli("train --model lcm --teacher x --arch '{}' -o /tmp/nuance_lcm_cli_bad");
    EXPECT_EQ(r.code, 2) << r.out;
    EXPECT_THAT(r.out, HasSubstr("--arch does not apply to --model lcm"));
    r = test::run_cli("train --model lcm --teacher /nonexistent/teacher --data /tmp -o /tmp/nuance_lcm_cli_bad");
    EXPECT_EQ(r.code, 1) << r.out;
    EXPECT_THAT(r.out, HasSubstr("--teacher '/nonexistent/teacher' is not a folder"));
    fs::remove_all("/tmp/nuance_lcm_cli_bad");
}

}  // namespace
}  // namespace nuance
