// Helpers of the latent consistency distillation tests (test_lcm_distill.cpp, test_lcm_lora.cpp): a tiny random
// SD1-layout teacher folder, a folder of coloured squares, and the tiny run's options.
#pragma once
#include <algorithm>
#include <cmath>
#include <map>
#include <string>

#include "../test_util.h"
#include "data_test_util.h"
#include "models/unet/unet2d.h"
#include "nn/module.h"
#include "train/checkpoint.h"
#include "train/lcm_distill.h"
#include "train/train_arch.h"

namespace nuance {
namespace {

inline std::map<std::string, Tensor> weights_of(Module& m) {
    std::map<std::string, Tensor> out;
    for (auto& [k, v] : state_dict(m)) out[k] = v;
    return out;
}

inline float largest_diff(const Tensor& a, const Tensor& b) {
    const Tensor d = (a.f32() - b.f32()).contiguous();
    float m = 0;
    for (int64_t i = 0; i < d.numel(); ++i) m = std::max(m, std::fabs(d.data<float>()[i]));
    return m;
}

const nlohmann::json kTinyUnet = {{"block_out_channels", {8, 16}}, {"attention_levels", {false, true}}, {"heads", 2},
                                  {"norm_num_groups", 4}};
const nlohmann::json kTinyTe = {{"hidden", 16}, {"layers", 1}, {"heads", 2}, {"intermediate", 32}};
const nlohmann::json kTinyVae = {{"block_out_channels", {8, 16}}, {"norm_num_groups", 4}};

// A tiny SD1-layout diffusers folder with random weights (what `nuance train --model ldm` exports, untrained):
// 8x8 images, 4x4x4 latents; prediction: epsilon or v_prediction.
inline void write_tiny_teacher(const std::string& dir, uint64_t seed = 1, const std::string& prediction = "epsilon") {
    UNet2DConditionModel unet(unet_config_from_arch(kTinyUnet, 4, 16));
    init_random(unet, seed, 0.1f);
    ClipTextModel te(clip_config_from_arch(kTinyTe));
    init_random(te, seed + 1, 0.2f);
    AutoencoderKL vae(vae_config_from_arch(kTinyVae, 3));
    init_random(vae, seed + 2, 0.2f);
    write_component(dir + "/unet", unet, "diffusion_pytorch_model.safetensors", unet_diffusers_config(unet.config(), 4));
    write_component(dir + "/text_encoder", te, "model.safetensors", clip_hf_config(te.config()));
    export_vae(vae, dir + "/vae", 8);
    write_json(dir + "/scheduler/scheduler_config.json",
               {{"_class_name", "DDIMScheduler"}, {"num_train_timesteps", 1000}, {"beta_start", 0.00085},
                {"beta_end", 0.012}, {"beta_schedule", "scaled_linear"}, {"prediction_type", prediction},
                {"steps_offset", 1}, {"clip_sample", false}, {"set_alpha_to_one", false}});
    write_json(dir + "/model_index.json",
               {{"_class_name", "StableDiffusionPipeline"},
                {"_nuance", {{"defaults", {{"cfg_scale", 5.0}, {"sampler", "euler_a"}, {"steps", 20}}}}},
                {"unet", {"diffusers", "UNet2DConditionModel"}}, {"text_encoder", {"transformers", "CLIPTextModel"}},
                {"vae", {"diffusers", "AutoencoderKL"}}, {"scheduler", {"diffusers", "DDIMScheduler"}}});
}

// 8 images of 8x8 pixels, a colour per caption.
inline void write_color_folder(const std::string& dir, int n = 8) {
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

inline TrainOptions tiny_options(const std::string& data, const std::string& out) {
    TrainOptions o;
    o.model = "lcm";
    o.data = data;
    o.output = out;
    o.resolution = 8;
    o.batch = 4;
    o.steps = 4;
    o.warmup = 0;
    o.lr = 1e-3f;
    o.checkpoint_every = 2;
    o.seed = 7;
    return o;
}

inline LcmOptions tiny_lcm(const std::string& teacher) {
    LcmOptions l;
    l.teacher = teacher;
    l.w_min = 1.0f;
    l.w_max = 6.0f;
    l.w_embedding_dim = 8;
    return l;
}

}  // namespace
}  // namespace nuance
