// DiT sampling as DiTPipeline does it (tools/make_dit_pipeline_ref.py): same noise, guided eps on the first C
// channels, DDIM on the linear-beta schedule, VAE decode of latents / 0.18215.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "core/rng.h"
#include "io/json_file.h"
#include "io/safetensors.h"
#include "models/dit/dit_load.h"
#include "models/dit/dit_sampling.h"
#include "models/vae/autoencoder_kl.h"
#include "../test_util.h"

using namespace nuance;
using ::testing::HasSubstr;
using nuance::test::error_of;

namespace {

const std::string kData = std::string(NUANCE_TEST_DATA);

LoadedDiT tiny_dit() {
    const nlohmann::json cfg{{"num_attention_heads", 2}, {"attention_head_dim", 16}, {"sample_size", 8}};
    return load_dit_tensors(load_safetensors(kData + "/golden/dit/dit.safetensors").tensors, "dit.safetensors", {},
                            &cfg);
}

std::map<std::string, Tensor> ref() { return load_safetensors(kData + "/dit/dit_pipeline_io.safetensors").tensors; }

// max |a - b| / max |b|
float rel_err(const Tensor& a, const Tensor& b) { return max_abs_diff(a, b) / std::max(1e-12f, max_abs(b)); }

}  // namespace

TEST(DiTSampling, NoiseScheduleIsLinear) {
    const NoiseSchedule ns = dit_noise_schedule();
    EXPECT_EQ(ns.num_train_timesteps(), 1000);
    EXPECT_FLOAT_EQ(ns.betas().front(), 1e-4f);
    EXPECT_FLOAT_EQ(ns.betas().back(), 0.02f);
    EXPECT_NEAR(ns.betas()[500], 1e-4 + 500 * (0.02 - 1e-4) / 999, 1e-8);
}

TEST(DiTSampling, MatchesDiTPipelineWithGuidance) {
    const LoadedDiT d = tiny_dit();
    const auto r = ref();
    auto rng = make_rng(RngKind::Cpu, 0);
    EXPECT_EQ(max_abs_diff(rng->randn({2, 4, 8, 8}), r.at("noise")), 0.0f);  // torch.manual_seed(0) randn

    DiTSampling o;
    o.class_labels = {3, 7};
    o.guidance_scale = 4.0;
    o.steps = 5;
    rng = make_rng(RngKind::Cpu, 0);
    SamplerOptions so;
    const Tensor latents = dit_sample_latents(*d.model, o, *rng, so);
    EXPECT_LT(rel_err(latents, r.at("latents")), 1e-5f) << max_abs_diff(latents, r.at("latents"));

    const nlohmann::json vcfg = read_json_object(kData + "/golden/vae/case.json")["models"]["vae_sd"]["config"];
    const WeightFile vw = load_safetensors(kData + "/golden/vae/vae_sd.safetensors");
    AutoencoderKLConfig vc = AutoencoderKLConfig::detect(vw.tensors);
    vc.apply_diffusers_config(vcfg);
    AutoencoderKL vae(vc);
    load_module(vae, vw.tensors, {});
    const Tensor image = dit_decode(vae, r.at("latents"));
    EXPECT_LT(max_abs_diff(image, r.at("image")), 1e-4f);
}

TEST(DiTSampling, MatchesDiTPipelineWithoutGuidance) {
    const LoadedDiT d = tiny_dit();
    DiTSampling o;
    o.class_labels = {3, 7};
    o.guidance_scale = 1.0;
    o.steps = 5;
    auto rng = make_rng(RngKind::Cpu, 0);
    SamplerOptions so;
    const Tensor latents = dit_sample_latents(*d.model, o, *rng, so);
    EXPECT_LT(rel_err(latents, ref().at("latents_nocfg")), 1e-5f);
}

TEST(DiTSampling, GuidedModelCallsTheModelOnceOnTheDoubledBatch) {
    const LoadedDiT d = tiny_dit();
    const ModelFn f = dit_guided_model(*d.model, {3, 7}, 4.0);
    const Tensor x = Tensor::full({2, 4, 8, 8}, 0.1f);
    const Tensor eps = f(x, 500.0);
    ASSERT_EQ(eps.shape(), (Shape{2, 4, 8, 8}));
    // By hand: out(x, [3, 7, 10, 10]) -> uncond + 4 (cond - uncond) on channels 0..3.
    const Tensor out = d.model->forward(cat({x, x}, 0), Tensor::full({4}, 500.0f), Tensor::from_ids({3, 7, 10, 10}, {4}));
    const Tensor cond = out.narrow(0, 0, 2).narrow(1, 0, 4), uncond = out.narrow(0, 2, 2).narrow(1, 0, 4);
    EXPECT_LT(max_abs_diff(eps, uncond + (cond - uncond) * 4.0f), 1e-5f);
}

TEST(DiTSampling, Errors) {
    const LoadedDiT d = tiny_dit();
    EXPECT_THAT(error_of([&] { dit_guided_model(*d.model, {3, 10}, 4.0); }),
                HasSubstr("DiT sampling: class label 10 is out of range [0, 9]"));
    EXPECT_THAT(error_of([&] { dit_guided_model(*d.model, {}, 4.0); }), HasSubstr("DiT sampling: no class labels"));
    EXPECT_THAT(error_of([&] { dit_guided_model(*d.model, {1}, std::nan("")); }),
                HasSubstr("DiT sampling: guidance scale nan is not finite"));
    auto rng = make_rng(RngKind::Cpu, 0);
    SamplerOptions so;
    DiTSampling o;
    o.class_labels = {1};
    o.steps = 0;
    EXPECT_THAT(error_of([&] { dit_sample_latents(*d.model, o, *rng, so); }),
                HasSubstr("DiT sampling: steps 0 out of range [1, 1000]"));
    o.steps = 2;
    o.latent_size = 7;
    EXPECT_THAT(error_of([&] { dit_sample_latents(*d.model, o, *rng, so); }),
                HasSubstr("DiT sampling: latent size 7 must be a multiple of the patch size 2"));
    o.latent_size = 0;
    o.sampler = "no_such_sampler";
    EXPECT_THAT(error_of([&] { dit_sample_latents(*d.model, o, *rng, so); }), HasSubstr("no_such_sampler"));
    // A model that does not know its sample size needs one.
    DiTLoadOptions h;
    h.heads = 2;
    const LoadedDiT bare = load_dit_tensors(load_safetensors(kData + "/golden/dit/dit.safetensors").tensors, "d", h);
    o.sampler = "ddim";
    EXPECT_THAT(error_of([&] { dit_sample_latents(*bare.model, o, *rng, so); }),
                HasSubstr("DiT sampling: the model does not state its sample size"));
}
