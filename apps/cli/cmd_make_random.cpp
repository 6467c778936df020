// nuance make-random: a random-weight checkpoint in the original single-file layout.
#include <chrono>
#include <cstdio>

#include "commands.h"
#include "core/error.h"
#include "models/controlnet/controlnet_random.h"
#include "models/model_family.h"
#include "models/random_families.h"
#include "models/random_model.h"

namespace nuance::cli {

Runner add_make_random(CLI::App& app) {
    struct Args {
        std::string family = "sd15", dtype = "f16", output, controlnet_for, controlnet_layout = "diffusers";
        bool tiny = false, with_text_encoders = false, inpaint = false;
        int64_t depth = 0;
        uint64_t seed = 0;
    };
    auto a = std::make_shared<Args>();
    CLI::App* c = app.add_subcommand("make-random", "Write a random-weight checkpoint in the layout people download (streamed: memory stays small)");
    c->add_option("--family", a->family,
                   "sd15 | sd2 | sdxl | sd35-medium | sd35-large | flux-dev | flux-schnell | dit-xl-2-256 | "
                   "dit-xl-2-512 | clip-l | clip-g | t5xxl | vae16 | vae")
        ->capture_default_str();
    c->add_option("--dtype", a->dtype,
                  "f16 | f32 | bf16 | fp8 (transformer families and text encoders: weight matrices as F8_E4M3, the "
                  "rest bf16, as flux1-dev-fp8 / t5xxl_fp8_e4m3fn)")
        ->capture_default_str();
    c->add_option("-o,--output", a->output, "Output .safetensors")->required();
    c->add_flag("--tiny", a->tiny, "Small widths and depths (tests)");
    c->add_flag("--with-text-encoders", a->with_text_encoders,
                "sd35-*: the all-in-one file (text_encoders.{clip_l,clip_g,t5xxl} + first_stage_model)");
    c->add_option("--depth", a->depth, "Only this many blocks / layers (quick runs; 0 = the real depth)")
        ->capture_default_str();
    c->add_flag("--inpaint", a->inpaint, "An inpainting UNet (9 input channels: latents + mask + masked image)");
    c->add_option("--seed", a->seed, "Seed for the weights")->capture_default_str();
    c->add_option("--controlnet-for", a->controlnet_for,
                  "Write a random ControlNet shaped for this model's UNet instead of a checkpoint");
    c->add_option("--controlnet-layout", a->controlnet_layout,
                  "With --controlnet-for: diffusers | original (control_model.*) | difference")->capture_default_str();
    return [a] {
        if (!a->controlnet_for.empty()) {
            const ControlNetLayout layout = [&] {
                try {
                    return parse_controlnet_layout(a->controlnet_layout);
                } catch (const Error& e) {
                    fail(ErrorCode::InvalidArgument, "usage: --controlnet-layout: ", e.what());
                }
            }();
            const std::unique_ptr<DiffusionModel> m = load_model(a->controlnet_for, {});
            write_random_controlnet(*m, a->output, layout, a->seed);
            std::fprintf(stderr, "wrote %s: random ControlNet (%s layout) for %s\n", a->output.c_str(),
                         a->controlnet_layout.c_str(), a->controlnet_for.c_str());
            return 0;
        }
        RandomModelOptions o;
        o.family = a->family;
        o.tiny = a->tiny;
        o.inpaint = a->inpaint;
        o.seed = a->seed;
        if (a->dtype == "f16") o.dtype = DType::F16;
        else if (a->dtype == "f32") o.dtype = DType::F32;
        else if (a->dtype == "bf16" || a->dtype == "fp8") o.dtype = DType::BF16;
        else fail(ErrorCode::InvalidArgument, "usage: unknown dtype '", a->dtype, "' (valid: f16, f32, bf16, fp8)");
        if (a->dtype == "fp8" && !is_random_family(a->family))
            fail(ErrorCode::InvalidArgument, "usage: --dtype fp8 is for the transformer families and text encoders "
                 "(sd35-*, flux-*, dit-*, clip-l, clip-g, t5xxl), not '", a->family, "'");
        const auto t0 = std::chrono::steady_clock::now();
        int64_t n = 0;
        if (is_random_family(a->family)) {
            RandomFamilyOptions f;
            f.family = a->family;
            f.dtype = o.dtype;
            f.tiny = a->tiny;
            f.with_text_encoders = a->with_text_encoders;
            f.depth = a->depth;
            f.seed = a->seed;
            f.fp8 = a->dtype == "fp8";
            n = write_random_family(a->output, f);
        } else {
            if (a->with_text_encoders || a->depth != 0)
                fail(ErrorCode::InvalidArgument, "usage: --with-text-encoders and --depth are for the transformer ",
                     "families, not '", a->family, "' (its file always holds its text encoders and VAE)");
            n = write_random_checkpoint(a->output, o);
        }
        const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        std::fprintf(stderr, "wrote %s: %s, %lld parameters, %.1fs\n", a->output.c_str(), a->family.c_str(),
                     (long long)n, s);
        return 0;
    };
}

}  // namespace nuance::cli
