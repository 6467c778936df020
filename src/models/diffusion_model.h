// The family-neutral diffusion model: what the pipeline, `nuance info`, bench, the server, the C API, evaluation and
// training talk to. A family (src/models/<family>/, registered in models/model_registry.cpp, see model_family.h and
// docs/adding-a-model.md) implements it over its own modules: SD1.x/2.x/XL (models/sd/), and SD3, Flux.1, DiT.
//
// The pipeline (pipelines/generate.cpp) only ever does, per image:
//   cond   = m.encode({prompt})           uncond = m.encode({negative, negative = true})   (CFG kinds only)
//   m.match_for_batch({&uncond, &cond}, ...);  batch = m.batch_conditioning({&uncond, &cond})
//   x      = sampler(Denoiser(model_fn, m.objective()), noise, schedule from m.objective())
//            where model_fn(x_in, t) = m.predict(x_in, t, batch, step) (+ CFG combination by guidance kind)
//   image  = m.decode(x)    (img2img: x0 = m.encode_image(init))
// so a family decides its own conditioning tensors, packing (Flux 2x2 patches, RoPE ids), time ids (SDXL),
// guidance input (Flux-dev), learned-sigma split (DiT) and latent format, and nothing above models/ names it.
#pragma once
#include <array>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "core/dtype.h"
#include "core/rng.h"
#include "core/tensor.h"
#include "io/image.h"
#include "models/vae/vae_tiling.h"
#include "samplers/denoiser.h"
#include "samplers/schedule.h"

namespace nuance {

class Module;
class ControlNetModel;  // models/controlnet/controlnet.h
struct ControlStack;    // models/controlnet/control_stack.h
class EmbeddingLibrary;  // text/embedding_library.h

enum class PromptSyntax {
    A1111,    // (word:1.2), [word], BREAK, chunks of 75 tokens (A1111 / sd.cpp behaviour)
    Literal,  // the text as the reference tokenizer sees it: no syntax, truncated to 75 tokens (diffusers)
};

// How the guidance scale is used.
enum class GuidanceKind {
    ClassifierFree,    // two passes, uncond (negative prompt) + cond, out = u + s (c - u)  (SD1/2/XL, SD3)
    Distilled,         // one pass; the scale is a model input (Flux-dev "distilled CFG")
    None,              // one pass; no guidance at all (Flux-schnell, unconditional models)
    ClassConditional,  // CFG where the unconditional input is the null class (DiT: class 1000)
};
const char* guidance_kind_name(GuidanceKind k);  // "cfg", "distilled", "none", "class_cfg"

// The space the sampler works in. latents = (z - shift_factor) * scaling_factor, z = the VAE's latent.
// SD1/2: 4 ch, 0.18215/0; SDXL: 4 ch, 0.13025/0; SD3: 16 ch, 1.5305/0.0609; Flux: 16 ch, 0.3611/0.1159.
struct LatentFormat {
    int64_t channels = 4;
    int64_t downscale = 8;  // image pixels per latent pixel (1 for pixel-space models)
    float scaling_factor = 0.18215f;
    float shift_factor = 0.0f;
    bool pixel_space = false;  // no VAE: the sampler's x is the image itself in [-1, 1]
    // Cheap RGB approximation for live previews: one row (R, G, B) per latent channel; empty = no preview.
    std::vector<std::array<float, 3>> rgb_factors;
};

// Flow-matching schedule parameters (diffusers FlowMatchEulerDiscreteScheduler).
struct FlowShift {
    double shift = 3.0;     // static shift (SD3 / SD3.5: 3.0); ignored when dynamic
    bool dynamic = false;   // Flux-dev: shift from the image sequence length (samplers/schedule.h flux_mu)
    int64_t base_seq_len = 256, max_seq_len = 4096;
    double base_shift = 0.5, max_shift = 1.15;
    int64_t tokens_per_side = 2;  // latent pixels per token side (Flux packs 2x2): seq_len = (h/p) * (w/p)
    bool linspace_sigmas = false;  // Flux pipelines pass sigmas = linspace(1, 1/N, N) before the shift
};

// The training objective: what predict() returns and which noise levels it was trained on.
struct Objective {
    Prediction prediction = Prediction::Epsilon;  // Epsilon / V / Sample: VP models; Flow: flow matching
    NoiseScheduleConfig noise;                    // VP models: the training noise schedule
    std::optional<Spacing> spacing;               // VP models: a scheduler config's timestep_spacing
    std::optional<int> steps_offset;
    bool sdxl_tables = false;                     // "ays" means the SDXL align-your-steps table
    FlowShift flow;                               // flow models
    double flow_timestep_scale = 1000.0;          // flow models: predict() gets t = sigma * this
    bool is_flow() const { return prediction == Prediction::Flow; }
};

// Skip-layer guidance (SD3.5: diffusers' skip_guidance_layers, sd.cpp's --skip-layers): on the sampling steps i with
// start*N < i < stop*N, one more pass of the conditional row with these transformer blocks left out, and
// out += (cond - cond_skipped) * scale. Unset fields take the model's defaults (SD3Model::resolve_slg).
struct SkipLayerGuidance {
    std::optional<std::vector<int64_t>> layers;  // block indices; an empty list turns it off
    std::optional<float> scale;                  // 0 turns it off
    double start = 0.01, stop = 0.2;             // fractions of the steps
    bool given() const { return layers.has_value() || scale.has_value(); }
};

// What the user asked for one side of the guidance: a prompt (or the negative prompt) or a class label.
struct ConditioningRequest {
    std::string text;
    bool negative = false;  // the unconditional side of CFG (negative prompt / null class)
    PromptSyntax syntax = PromptSyntax::A1111;
    int clip_skip = 0;           // 0 = the model's default
    int64_t class_label = -1;    // class-conditional models; -1 = none given
    SkipLayerGuidance slg;       // families with a transformer to thin out (SD3); others refuse it when given
    // Textual-inversion embeddings the text may name (text/embedding_library.h); SD1.x/SD2.x/SDXL use them.
    std::shared_ptr<const EmbeddingLibrary> embeddings;
};

// The encoded conditioning: opaque to the pipeline, a few named tensors of the family's choice, each with the batch
// as dim 0. SD: "context" [1, 77k, D] (+ "pooled" [1, 1280] for SDXL); SD3: "context" [1, 77+256, 4096] +
// "pooled" [1, 2048]; Flux: "context" (T5) + "pooled" (CLIP-L); DiT: "class_labels" [1].
struct Conditioning {
    std::map<std::string, Tensor> tensors;

    bool has(const std::string& name) const;
    const Tensor& at(const std::string& name) const;  // Error (Internal) naming the missing tensor and those present
    Tensor& operator[](const std::string& name) { return tensors[name]; }
};

// Per-step information a family may need besides x, t and the conditioning.
struct StepContext {
    int64_t width = 0, height = 0;  // the output image, pixels
    float guidance = 0.0f;          // GuidanceKind::Distilled: the scale as a model input (Flux-dev 3.5)
    double sigma = 0.0;             // noise level of x_in
    // ControlNet (set by the pipeline when control units are given): the units and their hints; `step` (0-based)
    // of `steps` decides which are active; cfg_rows: the batch rows are [uncond, cond].
    const ControlStack* control = nullptr;
    int step = 0, steps = 0;  // also the family's per-step guidance (SD3 skip layers), as diffusers' i
    bool cfg_rows = false;
    // Inpainting networks (inpaint_channels() > 0): [1, K, h, w] appended to x_in on the channels (SD: mask +
    // masked-image latents, diffusers' order); the family repeats it over the batch. Undefined otherwise.
    Tensor concat;
};

struct ComponentInfo {
    std::string name;  // "text_encoder", "unet", "vae", "transformer", "t5" ...
    int64_t parameters = 0;
};

// The settings a model is meant to be used with (models/model_defaults.h documents the sources).
struct GenerationDefaults {
    int width = 512, height = 512;
    int steps = 20;
    float cfg_scale = 7.0f;  // the guidance scale: CFG, or the distilled guidance input
    std::string sampler = "euler_a";
    std::string scheduler;        // "" = the sampler's own (A1111 "Automatic")
    std::string prompt;           // an example prompt that shows what the model does
    std::string negative_prompt;
};

class DiffusionModel {
public:
    DiffusionModel() = default;
    DiffusionModel(DiffusionModel&&) = default;
    DiffusionModel& operator=(DiffusionModel&&) = default;
    virtual ~DiffusionModel() = default;

    // --- identity
    std::string path;  // what the user passed
    std::string name;  // file stem or folder name (A1111's "Model")
    Precision precision = Precision::FP32;  // resolved (never Auto)
    virtual std::string family_name() const = 0;  // registry name: "sd1", "sdxl", "sd3", "flux", "dit" ...
    virtual std::string variant() const = 0;      // "sd15", "sd2-v", "sdxl", "sd3.5-medium", "flux-dev" ...
    // SHA-256 of the checkpoint file ("" for folders), computed on first use and kept (A1111's "Model hash").
    std::string file_hash() const;
    virtual std::string describe() const = 0;  // `nuance info`: one "key: value" line per fact
    virtual std::string network_name() const { return "model"; }  // in messages: "UNet", "transformer" ...
    // The network modules by component name (for parameter counts, random init, training); const view below.
    virtual std::vector<std::pair<std::string, Module*>> modules() = 0;
    std::vector<ComponentInfo> components() const;

    // --- latent space and objective
    virtual LatentFormat latent_format() const = 0;
    virtual Objective objective() const = 0;
    virtual GuidanceKind guidance() const = 0;
    virtual GenerationDefaults generation_defaults() const = 0;

    // --- memory
    // Gives back the memory of weights (the text encoders': modules named text_encoder*; or every module's but the
    // VAE's) while keeping them usable: file-mapped pages leave the process (core/quantized_weight.h:
    // release_file_pages; a later use maps them again from the page cache) and packed copies are dropped (packed
    // again on the next use). Converted copies the modules own stay. Used by one-shot runs: the text encoders once the
    // prompt is encoded (a T5 kept as fp8 / GGUF blocks, SDXL's 1.6 GB of packed bf16 encoders), the denoiser before
    // the VAE decode. Returns the bytes released.
    size_t release_text_encoder_weights() const;
    size_t release_weights_except_vae() const;

    // --- conditioning
    // Checks what only the model can judge (clip skip range ...); Error naming the field and the value.
    virtual void validate_request(const ConditioningRequest&) const {}
    virtual Conditioning encode(const ConditioningRequest& r) const = 0;
    // Makes the rows able to share a batch (SD: pads shorter prompts with empty-prompt chunks, like A1111). `like`
    // is the request whose options (syntax, clip skip) padding uses. Default: nothing.
    virtual void match_for_batch(const std::vector<Conditioning*>& rows, const ConditioningRequest& like) const;
    // One batch from per-row conditionings. Default: every named tensor concatenated along dim 0 (rows must hold the
    // same names with equal trailing shapes).
    virtual Conditioning batch_conditioning(const std::vector<const Conditioning*>& rows) const;

    // --- the network
    // Extra input channels of an inpainting network (SD inpainting UNets: 5 = mask + masked-image latents), which
    // predict() takes from StepContext::concat; 0 for an ordinary model.
    virtual int64_t inpaint_channels() const { return 0; }
    // x_in: [B, C, h, w] latents as the Denoiser scales them; timestep: the model timestep (VP: 0..T-1; flow:
    // sigma * Objective::flow_timestep_scale); cond: B rows (batch_conditioning). Returns the raw prediction
    // (eps / v / velocity ...) with x_in's shape; the family packs/unpacks and adds its own inputs.
    virtual Tensor predict(const Tensor& x_in, double timestep, const Conditioning& cond,
                           const StepContext& step) const = 0;

    // Classifier-free guidance of one step's two predictions (rows uncond, cond of predict's output): default
    // u + scale (c - u). A family whose reference guides differently overrides it (the original DiT guides only the
    // first 3 eps channels).
    virtual Tensor combine_guidance(const Tensor& uncond, const Tensor& cond, float scale) const;
    // One guided step from predict(cat(x_in, x_in), timestep, batch, step)'s rows uncond, cond. Default:
    // combine_guidance(uncond, cond, scale); SD3 adds skip-layer guidance (one more pass of the cond row).
    virtual Tensor guide(const Tensor& x_in, double timestep, const Conditioning& batch, const StepContext& step,
                         const ConditioningRequest& request, const Tensor& uncond, const Tensor& cond,
                         float scale) const;

    // --- pixels <-> latents
    // latents [1, C, h, w] (scaled as latent_format says) -> image tensor [1, 3 (or 1), H, W], about [-1, 1].
    virtual Tensor decode(const Tensor& latents, const VaeTiling& tiling) const = 0;
    // An init image (resized to w x h) -> latents [1, C, h/f, w/f]; `rng` draws the posterior sample.
    virtual Tensor encode_image(const Image& img, int w, int h, const VaeTiling& tiling, Rng& rng) const = 0;
    // An image tensor [1, 3, H, W] in [-1, 1] -> latents, one posterior draw from `rng` (inpainting models: the
    // masked image, whose masked area is exactly 0). Default: Unsupported (only families with inpainting networks
    // need it).
    virtual Tensor encode_pixels(const Tensor& image, const VaeTiling& tiling, Rng& rng) const;

    // --- ControlNet: opens a ControlNet made for this model (Error naming both when it is for another model), and
    // checks one given by a caller. Default: the family takes no ControlNet (Error naming the family and `what`).
    virtual std::shared_ptr<const ControlNetModel> load_control_net(const std::string& path,
                                                                    const std::string& what) const;
    virtual void validate_control_net(const ControlNetModel& net, const std::string& what) const;

    // --- metadata: A1111 infotext fields this family adds (", Clip skip: 2"), "" for none.
    virtual std::string infotext_fields(const ConditioningRequest&) const { return ""; }

    int64_t latent_channels() const { return latent_format().channels; }
    int64_t vae_scale() const { return latent_format().downscale; }
    bool pixel_space() const { return latent_format().pixel_space; }

private:
    struct HashCache {
        std::mutex mu;
        bool done = false;
        std::string value;
    };
    std::shared_ptr<HashCache> hash_ = std::make_shared<HashCache>();
};

// Number of parameters of a module (every Param's element count).
int64_t parameter_count(Module& m);

}  // namespace nuance
