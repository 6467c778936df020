// make-random's transformer families and the split component files, written streaming (models/random_writer.h) in
// the layouts people download:
//   sd35-medium, sd35-large   Stability's single file (model.diffusion_model.* as in sd3.5_medium.safetensors); with
//                             text encoders: the all-in-one file (+ text_encoders.{clip_l,clip_g,t5xxl}.transformer.*
//                             + first_stage_model.*, as sd3.5_large.safetensors ships)
//   flux-dev, flux-schnell    Black Forest Labs' flux1-dev / flux1-schnell.safetensors (double_blocks.*, ...)
//   dit-xl-2-256, -512        the original DiT-XL-2-{256,512}x256.pt state dict keys (in a safetensors file)
//   clip-l, clip-g, t5xxl     ComfyUI's split text encoder files (transformers names: clip_l.safetensors, ...)
//   vae16, vae                the 16-channel SD3/Flux VAE (ae.safetensors, original names) and the 4-channel SD VAE
//                             (sd-vae-ft-ema, DiT's: diffusers names)
// `tiny` gives the same structure at test sizes (the shapes the family tests use). Memory: the transformers and text
// encoders are drawn tensor by tensor in chunks; only the VAEs (<= 84 M parameters) are built whole.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "models/random_writer.h"

namespace nuance {

struct RandomFamilyOptions {
    std::string family;
    DType dtype = DType::BF16;
    bool tiny = false;
    bool with_text_encoders = false;  // sd35-*: the all-in-one file
    int64_t depth = 0;                // > 0: only this many blocks / layers (quick runs); 0 = the real depth
    uint64_t seed = 0;
    bool fp8 = false;  // weight matrices as F8_E4M3 (flux1-dev-fp8, t5xxl_fp8_e4m3fn); the VAE and the rest in dtype
};

// Names make-random knows besides sd15 / sd2 / sdxl.
const std::vector<std::string>& random_family_names();
bool is_random_family(const std::string& name);

// The (key, shape) list of a family's file, in write order (VAE tensors come with their values). Throws
// InvalidArgument for an unknown family (listing the known ones) or an option the family does not take.
std::vector<RandomTensor> random_family_tensors(const RandomFamilyOptions& o);

// Writes the file; returns the number of parameters.
int64_t write_random_family(const std::string& path, const RandomFamilyOptions& o);

}  // namespace nuance
