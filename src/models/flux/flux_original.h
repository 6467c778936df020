// Black Forest Labs' original Flux.1 layout (flux1-dev.safetensors / flux1-schnell.safetensors: img_in, txt_in,
// time_in, vector_in, guidance_in, double_blocks.N.*, single_blocks.N.*, final_layer.*; the same keys under
// `model.diffusion_model.` as ComfyUI saves them) <-> diffusers' FluxTransformer2DModel names, as diffusers 0.31's
// convert_flux_transformer_checkpoint_to_diffusers maps them (golden case original_flux spells it out):
//   fused qkv rows split in 3 (q, k, v); single blocks' linear1 rows split (D, D, D, mlp); final_layer's adaLN
//   halves swapped (BFL (shift, scale), diffusers (scale, shift)). Every other tensor is a rename.
// Tensors keep their dtype (F32 / F16 / BF16) and stay views of the file where the transform allows (renames and row
// splits); only the swapped final adaLN is copied.
#pragma once
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "core/tensor.h"

namespace nuance {

// True when `t` holds BFL Flux transformer keys (img_in.weight, double_blocks.* or single_blocks.*) bare or under
// "model.diffusion_model."; sets *prefix to the one found.
bool find_flux_bfl_prefix(const std::map<std::string, Tensor>& t, std::string* prefix);

// True when `t` holds diffusers Flux keys (x_embedder.weight and transformer_blocks.* / single_transformer_blocks.*),
// bare or under "transformer." / "model.diffusion_model." (a file saved from a pipeline); sets *prefix.
bool find_flux_diffusers_prefix(const std::map<std::string, Tensor>& t, std::string* prefix);

// BFL keys under `prefix` -> diffusers names. Keys outside the prefix are ignored; keys inside it that the map does
// not know are an error listing them (never a silently dropped weight). Errors name the source (`source`, a file
// name), the key and the shapes: a qkv whose rows do not split in 3, a linear1 that does not fit linear2, a
// guidance_in with only some of its four tensors ("Flux-dev file without guidance_in.out_layer.weight").
// origin (optional): diffusers name -> the BFL key it came from (with the row range of a split), for messages.
std::map<std::string, Tensor> flux_bfl_to_diffusers(const std::map<std::string, Tensor>& t, const std::string& prefix,
                                                    const std::string& source,
                                                    std::map<std::string, std::string>* origin = nullptr);

// The BFL key a diffusers tensor name comes from ("double_blocks.0.img_attn.qkv.weight" for
// "transformer_blocks.0.attn.to_k.weight"), or "" when the name is not a Flux transformer key. For messages.
std::string flux_bfl_key_of(const std::string& diffusers_key);

// The reverse map (diffusers names -> BFL keys, no prefix), sorted by key: writes BFL-layout test files.
std::vector<std::pair<std::string, Tensor>> flux_diffusers_to_bfl(const std::map<std::string, Tensor>& t);

}  // namespace nuance
