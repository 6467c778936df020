// Original single-file Stable Diffusion checkpoints (CompVis / A1111 / SGM key layout: what people download as
// v1-5-pruned-emaonly.safetensors, v2-1_768-ema-pruned.ckpt, sd_xl_base_1.0.safetensors) <-> the diffusers /
// transformers key layout the model classes use.
//
// The mapping is computed from the key names and counts present in the file (number of levels, resnets per level,
// which levels have attentions, transformer depth per block), the way diffusers' single_file_utils does it, so
// full-size SD1.x / SD2.x / SDXL files and tiny test files go through the same code. Tensors keep their dtype and
// are views of the input wherever the transform allows (renames, reshapes, row splits); transposes are copied.
#pragma once
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "core/tensor.h"

namespace nuance {

// Diffusers-layout tensors per component.
struct ComponentWeights {
    std::map<std::string, Tensor> unet, vae, text_encoder, text_encoder_2;
    std::string family;  // "sd1", "sd2", "sdxl", "sdxl_refiner", "unknown"
};

// True when the checkpoint holds model.diffusion_model.* keys (the original layout).
bool is_original_layout(const std::map<std::string, Tensor>& t);

// Splits an original-layout checkpoint into its components, in diffusers / transformers names:
//   model.diffusion_model.*                     -> unet (UNet2DConditionModel)
//   first_stage_model.*                          -> vae (AutoencoderKL; mid attention 1x1 convs become [C, C])
//   cond_stage_model.transformer[.text_model].*  -> text_encoder (SD1: CLIP-L, already HF names)
//   cond_stage_model.model.*                     -> text_encoder (SD2: OpenCLIP ViT-H, all 24 layers kept)
//   conditioner.embedders.0.transformer.*        -> text_encoder (SDXL: CLIP-L)
//   conditioner.embedders.{0,1}.model.*          -> text_encoder_2 (SDXL: OpenCLIP bigG; refiner: embedders.0)
// Other keys (model_ema.*, lvlb buffers betas / alphas_cumprod..., position_ids, logit_scale, VAE loss.*) are
// dropped. Errors: no model.diffusion_model.* key at all (the message lists the prefixes found), or a UNet / VAE
// whose structure is inconsistent (a missing block index, an unrecognised module) -- never a silently wrong model.
ComponentWeights split_original(const std::map<std::string, Tensor>& t);

// The reverse map: components in diffusers names -> original single-file keys for cw.family ("unknown" writes the
// SD1 text-encoder layout). Output is sorted by key. Used by `nuance make-random` to write original-layout files.
std::vector<std::pair<std::string, Tensor>> to_original(const ComponentWeights& cw);

}  // namespace nuance
