// SD1.x / SDXL from separate component files, as ComfyUI users keep them: a UNet-only file (ComfyUI-GGUF's .gguf,
// or a bare UNet safetensors from models/unet) plus --clip-l [--clip-g] --vae files.
//
//   UNet-only layouts: original (CompVis/SGM) names without model.diffusion_model. (input_blocks.*, out.2.*: what
//   ComfyUI-GGUF and `nuance quantize` write), or diffusers UNet2DConditionModel names (down_blocks.*, conv_out.*).
//   --clip-l: CLIP-L in transformers names (ComfyUI's clip_l.safetensors: text_model.*), OpenCLIP names, or under
//   cond_stage_model.transformer. / conditioner.embedders.0.transformer. / text_encoders.clip_l.transformer.
//   (a full checkpoint passed as the text encoder's source).
//   --clip-g: OpenCLIP bigG in transformers names (ComfyUI's clip_g.safetensors: text_model.* + text_projection),
//   OpenCLIP names, or under conditioner.embedders.1.model. / text_encoders.clip_g.transformer.
//   --clip-h: SD2's OpenCLIP ViT-H in transformers names (diffusers' text_encoder/model.safetensors: text_model.*),
//   OpenCLIP names (open_clip_pytorch_model's transformer.resblocks.*), or under cond_stage_model.model. (a full SD2
//   checkpoint).
#pragma once
#include <map>
#include <optional>
#include <string>

#include "core/tensor.h"
#include "models/model_family.h"
#include "models/sd/stable_diffusion.h"

namespace nuance {

enum class BareUNetLayout { Original, Diffusers };

// The layout of a UNet-only file's keys, nullopt when `ix` is not one.
std::optional<BareUNetLayout> bare_unet_layout(const TensorIndex& ix);
// Its family: SDXL with label_emb / add_embedding, SD2 at cross-attention width 1024, else SD1 (known: the width is
// 768 or the file is SDXL; unknown widths, e.g. tiny test models, are SD1 with known = false).
SDFamily bare_unet_family(const TensorIndex& ix, bool* known = nullptr);

// The UNet of a UNet-only file in diffusers names.
std::map<std::string, Tensor> bare_unet_tensors(const std::map<std::string, Tensor>& t, BareUNetLayout layout);

enum class SplitClip { L, G, H };  // --clip-l, --clip-g, --clip-h
const char* split_clip_flag(SplitClip which);

// A --clip-l / --clip-g / --clip-h file's text encoder in transformers names; the error names the flag, the file and
// the layouts looked for.
std::map<std::string, Tensor> clip_tensors_from_file(const std::string& path, SplitClip which);

}  // namespace nuance
