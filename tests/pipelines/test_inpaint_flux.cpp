// Masked-latent inpainting on a real flow-matching family: a tiny Flux.1-schnell diffusers folder (the widths of
// tests/models/test_flux_family.cpp) through load_model and generate(): the 16-channel VAE with its shift factor,
// 2x2 packing, one-pass guidance; the kept area of the final latents is the image's, the rest is repainted.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include "../test_util.h"
#include "io/safetensors.h"
#include "models/clip/clip_text.h"
#include "models/flux/flux_family.h"
#include "models/model_family.h"
#include "models/t5/t5_encoder.h"
#include "models/vae/autoencoder_kl.h"
#include "nn/module.h"
#include "ops/ops.h"
#include "pipelines/generate.h"

namespace nuance {
namespace {

namespace fs = std::filesystem;

void write_text(const std::string& path, const std::string& text) { std::ofstream(path) << text; }

std::string tiny_schnell_folder() {
    static const std::string dir = [] {
        const fs::path d = fs::path(NUANCE_SCRATCH_DIR) / "inpaint_flux_schnell";
        fs::remove_all(d);
        for (const char* c : {"transformer", "text_encoder", "text_encoder_2", "vae", "scheduler"})
            fs::create_directories(d / c);
        FluxConfig fc;
        fc.in_channels = fc.out_channels = 64;
        fc.hidden = 32;
        fc.heads = 2;
        fc.head_dim = 16;
        fc.mlp_hidden = 128;
        fc.joint_attention_dim = 32;
        fc.pooled_projection_dim = 24;
        fc.num_double = 1;
        fc.num_single = 1;
        fc.guidance_embeds = false;
        fc.axes_dims_rope = {4, 6, 6};
        FluxTransformer2DModel tr(fc);
        init_random(tr, 1, 0.1f);
        save_safetensors((d / "transformer/diffusion_pytorch_model.safetensors").string(), state_dict(tr));
        ClipTextConfig cc;
        cc.hidden = 24;
        cc.intermediate = 48;
        cc.layers = 1;
        cc.heads = ClipTextConfig::default_heads(24);
        cc.act = ClipTextConfig::default_act(24);
        ClipTextModel clip(cc);
        init_random(clip, 2, 0.1f);
        save_safetensors((d / "text_encoder/model.safetensors").string(), state_dict(clip));
        T5Config tc;
        tc.d_model = 32;
        tc.d_kv = 8;
        tc.heads = 4;
        tc.d_ff = 64;
        tc.layers = 1;
        T5EncoderModel t5(tc);
        init_random(t5, 3, 0.1f);
        save_safetensors((d / "text_encoder_2/model.safetensors").string(), state_dict(t5));
        AutoencoderKLConfig vc;
        vc.block_out_channels = {32, 32};
        vc.layers_per_block = 1;
        vc.latent_channels = 16;
        vc.use_quant_conv = vc.use_post_quant_conv = false;
        vc.scaling_factor = 0.3611f;
        vc.shift_factor = 0.1159f;
        AutoencoderKL vae(vc);
        init_random(vae, 4, 0.1f);
        save_safetensors((d / "vae/diffusion_pytorch_model.safetensors").string(), state_dict(vae));
        write_text((d / "model_index.json").string(), R"({"_class_name": "FluxPipeline"})");
        write_text((d / "vae/config.json").string(), R"({"latent_channels": 16, "scaling_factor": 0.3611,
            "shift_factor": 0.1159, "norm_num_groups": 32, "use_quant_conv": false, "use_post_quant_conv": false})");
        write_text((d / "scheduler/scheduler_config.json").string(), R"({"shift": 1.0, "use_dynamic_shifting": false})");
        return d.string();
    }();
    return dir;
}

TEST(InpaintFlux, TinySchnellKeepsTheImageLatentsOutsideTheMask) {
    const auto m = load_model(tiny_schnell_folder());
    ASSERT_EQ(m->family_name(), "flux");
    EXPECT_EQ(m->inpaint_channels(), 0);
    GenerateParams p;
    p.prompt = "a red fox";
    p.width = p.height = 16;  // latents 16 x 8 x 8 (the tiny VAE halves)
    p.steps = 3;
    p.sampler = "euler";
    p.scheduler = "";
    p.cfg_scale = 1;
    p.seed = 5;
    p.strength = 1.0f;
    Image init;
    init.width = init.height = 16;
    init.pixels.resize(16 * 16 * 3);
    for (size_t k = 0; k < init.pixels.size(); ++k) init.pixels[k] = (uint8_t)(k * 29 % 253);
    p.init_image = init;
    Image mask;  // the left half repainted
    mask.width = mask.height = 16;
    mask.channels = 1;
    mask.pixels.assign(16 * 16, 0);
    for (int y = 0; y < 16; ++y)
        for (int x = 0; x < 8; ++x) mask.pixels[(size_t)y * 16 + x] = 255;
    p.mask = mask;
    p.inpaint.mask_blur = 0;
    const auto r = generate(*m, p);
    ASSERT_EQ(r.size(), 1u);
    // The same seed's encode of the image (the first draw, as the pipeline does) gives the kept latents exactly.
    auto rng = make_rng(p.rng, (uint64_t)p.seed);
    const Tensor x0 = m->encode_image(init, 16, 16, {}, *rng);
    ASSERT_EQ(r[0].latents.shape(), x0.shape());
    const auto lat = r[0].latents.contiguous().to_vector(), ref = x0.contiguous().to_vector();
    int differ_left = 0;
    for (int64_t c = 0; c < 16; ++c)
        for (int64_t y = 0; y < 8; ++y)
            for (int64_t x = 0; x < 8; ++x) {
                const size_t i = (size_t)((c * 8 + y) * 8 + x);
                if (x >= 4) ASSERT_EQ(lat[i], ref[i]) << c << "," << y << "," << x;
                else differ_left += std::fabs(lat[i] - ref[i]) > 1e-3f;
            }
    EXPECT_GT(differ_left, 400);
    for (float v : r[0].decoded.contiguous().to_vector()) ASSERT_TRUE(std::isfinite(v));
    // Outside the mask the output image is the original (A1111's overlay, blur 0).
    for (int y = 0; y < 16; ++y)
        for (int x = 8; x < 16; ++x)
            for (int ch = 0; ch < 3; ++ch)
                ASSERT_EQ(r[0].image.pixels[((size_t)y * 16 + x) * 3 + ch], init.pixels[((size_t)y * 16 + x) * 3 + ch]);
}

}  // namespace
}  // namespace nuance
