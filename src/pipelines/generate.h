// txt2img / img2img for any model family: glue only (encode prompt -> sample -> decode), progress, cancel, written
// against the family-neutral DiffusionModel (models/diffusion_model.h). The guidance kind decides the passes (CFG:
// uncond + cond in one batch; distilled: one pass with the scale as a model input), the objective the Denoiser (VP
// or flow) and the schedule (VP: the sampler's; flow: make_flow_schedule with the model's static or dynamic shift).
#pragma once
#include <atomic>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/rng.h"
#include "io/image.h"
#include "models/controlnet/control_stack.h"
#include "models/diffusion_model.h"
#include "models/vae/vae_tiling.h"
#include "pipelines/hires.h"
#include "pipelines/inpaint_options.h"

namespace nuance {

class TinyAutoencoder;

struct GenerateProgress {
    int step = 0, total = 0;  // sampler steps of the current image
    int image = 0, images = 1;
    double elapsed_s = 0;
    const Tensor* latents = nullptr;  // current x (VE scaling: x0 + sigma * eps), for previews
    double sigma = 0;                 // noise level of *latents
    const Tensor* denoised = nullptr; // the sampler's current estimate of the clean latents (better previews)
    int pass = 0, passes = 1;         // hires fix: pass 0 (first) and 1 (the upscaled second pass) of 2
};

struct GeneratedImage;

struct GenerateParams {
    std::string prompt, negative_prompt;
    int width = 512, height = 512;
    int steps = 20;
    float cfg_scale = 7.0f;    // CFG scale, or the distilled guidance (Flux-dev); ignored by GuidanceKind::None
    std::string sampler = "euler_a";
    std::string scheduler = "normal";
    float eta = -1.0f;         // < 0: the sampler's default (1 for ancestral, 0 for DDIM)
    float guidance_rescale = 0.0f;  // CFG rescale phi (Lin et al. 2023) in [0, 1]; 0 = off
    std::vector<double> sigmas;     // custom sigma schedule (N+1 values, parse_sigma_list); steps must be N
    int64_t seed = 42;         // >= 0 (callers turn "random" into a seed); seed + batch_count - 1 must fit int64
    int batch_count = 1;       // images made one after another with seeds seed, seed+1, ...
    int clip_skip = 0;         // 0: the model's default
    int64_t class_label = -1;  // class-conditional models (DiT): the class; -1 = from the prompt / the model's default
    RngKind rng = RngKind::Cuda;  // A1111's default noise ("GPU"); RngKind::Cpu = ComfyUI / torch CPU
    PromptSyntax syntax = PromptSyntax::A1111;
    SkipLayerGuidance slg;     // SD3.5 skip-layer guidance (models/diffusion_model.h); unset = the model's default
    // Textual-inversion embeddings that the prompt and negative prompt may name by file name (--embedding-dir).
    std::shared_ptr<const EmbeddingLibrary> embeddings;
    // img2img
    std::optional<Image> init_image;
    float strength = 0.75f;
    // ControlNets applied at once (models/controlnet/control_stack.h): each unit's net (from
    // DiffusionModel::load_control_net), its preprocessed image (resized to width x height here), weight, start/end
    // fractions of the steps and control mode. CFG: control on both rows unless the mode says cond-only.
    std::vector<ControlUnit> control;
    // Inpainting / outpainting (pipelines/inpaint.h): with a mask, img2img repaints only where the mask is white
    // (any size: resized to the image; grey, or the alpha channel where the PNG has one); `inpaint` holds the blur,
    // invert, "only masked", fill and outpaint settings. An inpainting (9-channel) UNet without a mask takes A1111's
    // all-white mask over a mid-grey image.
    std::optional<Image> mask;
    InpaintOptions inpaint;
    // VAE decode (and the img2img encode) in overlapping tiles: memory bounded by the tile, not the image.
    VaeTiling vae_tiling;
    // Calls: progress after every step; cancelled() polled between steps (true -> ErrorCode::Cancelled).
    std::function<void(const GenerateProgress&)> on_progress;
    std::function<bool()> cancelled;
    // Called with each image as soon as it is decoded (before the next one starts), e.g. to save it at once.
    // An exception it throws stops the batch and leaves generate().
    std::function<void(const GeneratedImage&)> on_image;
    // Called with a warning that does not stop the run (e.g. a mask with nothing to repaint).
    std::function<void(const std::string&)> on_warning;
    // Drop every packed weight copy (clear_packed_weights, backends/backend.h) before the last image's VAE decode, so
    // the decoder's activations reuse that memory: lower peak RSS for one-shot runs; a later call repacks (about 1 s for SD1.5).
    bool release_weights_before_decode = false;
    // Give back the text encoders' weight memory once the prompt is encoded (DiffusionModel::
    // release_text_encoder_weights: file-mapped pages and packed copies; they come back on the next encode): one-shot
    // runs of large models (a T5 kept as fp8 or GGUF blocks, SDXL's two encoders). With
    // release_weights_before_decode, the denoiser's file pages go before the last decode too.
    bool release_text_encoder_weights = false;
    // Latents to start from instead of seeded noise (unit variance; tests and parity checks).
    Tensor initial_noise;
    // Tiny autoencoder (models/taesd): callers decode previews with it (server/preview.h); with taesd_decode it also
    // decodes the final images instead of the VAE (fast, lower quality). Its latent channels must be the model's.
    std::shared_ptr<const TinyAutoencoder> taesd;
    bool taesd_decode = false;
    // Hires fix (pipelines/hires.h): a second, img2img pass at a larger size.
    HiresParams hires;
    // img2img from these latents [1, C, h, w] (the model's scaled latent space) instead of an encoded init image.
    Tensor init_latents;
    // Latents only: GeneratedImage::image/decoded stay empty (the hires first pass with a latent upscaler).
    bool skip_decode = false;
    // Infotext fields added before ", Version" (e.g. ", Lora hashes: \"name: 0123abcdef01\"", adapters/lora_library.h).
    // <lora:...> tags stay in the prompt (and the infotext, as A1111 keeps them) but are never encoded.
    std::string extra_infotext;
    // Parity checks: every draw (VAE posterior samples, noise) comes from this stream instead of make_rng(rng, seed).
    Rng* rng_override = nullptr;
};

struct GeneratedImage {
    Image image;
    int64_t seed = 0;
    std::string infotext;  // A1111 "parameters" text
    Tensor latents;        // final latents (scaled), [1, C, h, w]
    Tensor decoded;        // decoder output before clamping, [1, 3, H, W]
};

// Validates params against the model (size multiple of the VAE factor, known sampler/schedule, finite floats,
// prompts valid UTF-8 without NUL, seed range...). Throws Error.
void validate_params(const DiffusionModel& m, const GenerateParams& p);

// Fails (ErrorCode::InvalidArgument) naming the stage when the conditioning, a step's latents or the decoded
// image holds NaN/Inf (pipelines/finite_check.h): broken weights never give a silent black image.
std::vector<GeneratedImage> generate(const DiffusionModel& m, const GenerateParams& p);

// A1111's infotext: "<prompt>\nNegative prompt: <neg>\nSteps: 20, Sampler: Euler a, Schedule type: ...".
std::string a1111_infotext(const DiffusionModel& m, const GenerateParams& p, int64_t seed,
                           const std::string& model_hash);

}  // namespace nuance
