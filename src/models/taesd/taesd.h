// Tiny autoencoders (madebyollin's TAESD family = diffusers AutoencoderTiny): TAESD (SD1/SD2), TAESDXL (SDXL),
// TAESD3 (SD3) and TAEF1 (Flux). Conv/ReLU only, ~1.2 M parameters per half: a latent decode costs milliseconds,
// so they serve as fast final decodes and as live previews.
//
// Encoder: conv(3,w) Block, [conv s2 (no bias), Block x3] x3, conv(w,C).
// Decoder: 3*tanh(z/3), conv(C,w), ReLU, [Block x3, Upsample nearest x2, conv (no bias)] x3, Block, conv(w,3).
// Block:   relu(conv3-relu-conv3-relu-conv3 (x) + skip(x)), skip = identity (or a 1x1 conv when widths differ).
//
// Latent space: the TAEs are trained on the pipeline's *scaled* latents (the ones the sampler works on:
// SD: vae_latent * scaling_factor; SD3/Flux: (vae_latent - shift_factor) * scaling_factor); their diffusers configs
// say scaling_factor 1, shift_factor 0. So decode() takes the sampler's latents directly, and encode() returns them.
// latent_magnitude / latent_shift only serve the 8-bit latent format (scale_latents / unscale_latents).
//
// Files: the original madebyollin files (taesd_decoder.safetensors/.pth: nn.Sequential keys "{i}.weight",
// "{i}.conv.{0,2,4}.*", the decoder's index 0 being the Clamp; taesd_encoder.*; or a TAESD module's state dict with
// "encoder."/"decoder." prefixes) and diffusers AutoencoderTiny folders or files ("encoder.layers.{i}.*",
// "decoder.layers.{i}.*").
#pragma once
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "nn/layers.h"

namespace nuance {

struct TinyAutoencoderConfig {
    int64_t latent_channels = 4;  // 4: TAESD / TAESDXL; 16: TAESD3 / TAEF1
    int64_t encoder_width = 64, decoder_width = 64;
    std::vector<int64_t> encoder_blocks{1, 3, 3, 3}, decoder_blocks{3, 3, 3, 1};
    float latent_magnitude = 3.0f, latent_shift = 0.5f;
};

// One stage of the nn.Sequential: a conv, a Block, or a parameterless ReLU / Upsample.
struct TaeLayer : Module {
    enum Kind { Conv, Block, Relu, Upsample } kind = Conv;
    Conv2d conv;                 // Conv
    Conv2d c0, c2, c4, skip;     // Block (skip only when in != out)
    bool has_skip = false;
    static TaeLayer make_conv(int64_t in, int64_t out, int64_t stride, bool bias);
    static TaeLayer make_block(int64_t in, int64_t out);
    static TaeLayer make(Kind k);
    Tensor operator()(const Tensor& x) const;
    void visit(ParamVisitor& v) override;
};

// A Sequential whose parameter keys are "<index + offset>.…" (offset 1 for the original decoder, after its Clamp).
struct TaeStack : Module {
    std::vector<TaeLayer> layers;
    int index_offset = 0;
    Tensor operator()(const Tensor& x) const;
    void visit(ParamVisitor& v) override;
};

class TinyAutoencoder {
public:
    explicit TinyAutoencoder(const TinyAutoencoderConfig& cfg);

    // Loads one file or folder, or two (the original encoder and decoder files, any order); `what` names them in
    // errors (e.g. "--taesd"). At least one half must be present; has_encoder()/has_decoder() say which.
    static std::unique_ptr<TinyAutoencoder> load(const std::vector<std::string>& paths, const std::string& what);
    static std::unique_ptr<TinyAutoencoder> load(const std::string& path, const std::string& what) {
        return load(std::vector<std::string>{path}, what);
    }
    // From tensors already read (diffusers or original keys). `source` names them in errors.
    static std::unique_ptr<TinyAutoencoder> from_tensors(const std::map<std::string, Tensor>& tensors,
                                                         const std::string& source);

    const TinyAutoencoderConfig& config() const { return cfg_; }
    bool has_encoder() const { return has_encoder_; }
    bool has_decoder() const { return has_decoder_; }
    const std::string& source() const { return source_; }
    // "TAESD (4-channel latents)" / "TAESD3/TAEF1 (16-channel latents)", for messages.
    std::string describe() const;

    // image [N, 3, H, W] in [-1, 1] -> latents [N, C, H/8, W/8] (the pipeline's scaled latent space).
    Tensor encode(const Tensor& image) const;
    // latents [N, C, h, w] -> image [N, 3, 8h, 8w] in about [-1, 1] (not clamped).
    Tensor decode(const Tensor& latents) const;
    // diffusers scale_latents / unscale_latents: clamp(l / (2 * magnitude) + shift, 0, 1) and its inverse.
    Tensor scale_latents(const Tensor& latents) const;
    Tensor unscale_latents(const Tensor& scaled) const;

    TaeStack encoder, decoder;  // public for loading/tests: keys as in the original files (decoder offset 1)

private:
    TinyAutoencoderConfig cfg_;
    bool has_encoder_ = false, has_decoder_ = false;
    std::string source_;
};

// Fails (naming both) unless the TAE's latent channels are the model's: a 4-channel TAESD on a 16-channel SD3/Flux
// model, or the reverse. `model` is e.g. "sd3 model 'x.safetensors'".
void check_tae_matches(const TinyAutoencoder& tae, int64_t model_channels, const std::string& model);

}  // namespace nuance
