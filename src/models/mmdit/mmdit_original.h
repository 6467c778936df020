// Stability AI's original single-file MMDiT layout (sd3_medium.safetensors, sd3.5_medium/large.safetensors, as
// ComfyUI and sd-scripts keep them: keys under model.diffusion_model.) <-> the diffusers SD3Transformer2DModel names
// the module tree uses. The map mirrors diffusers' convert_sd3_transformer_checkpoint_to_diffusers (and its inverse):
//   pos_embed                          <-> pos_embed.pos_embed            x_embedder.proj <-> pos_embed.proj
//   t_embedder.mlp.{0,2}               <-> time_text_embed.timestep_embedder.linear_{1,2}
//   y_embedder.mlp.{0,2}               <-> time_text_embed.text_embedder.linear_{1,2}
//   final_layer.linear                 <-> proj_out
//   final_layer.adaLN_modulation.1     <-> norm_out.linear, halves SWAPPED (original (shift, scale))
//   joint_blocks.N.x_block.attn.qkv    <-> transformer_blocks.N.attn.to_q / to_k / to_v (rows split in 3)
//   joint_blocks.N.context_block.attn.qkv <-> attn.add_q_proj / add_k_proj / add_v_proj
//   x_block.attn.proj / context_block.attn.proj <-> attn.to_out.0 / attn.to_add_out
//   x_block.attn.ln_q/ln_k, context_block.attn.ln_q/ln_k <-> attn.norm_q/norm_k, attn.norm_added_q/norm_added_k
//   x_block.attn2.{qkv,proj,ln_q,ln_k} <-> attn2.{to_q/to_k/to_v, to_out.0, norm_q, norm_k}   (SD3.5-Medium)
//   x_block.adaLN_modulation.1 / context_block.adaLN_modulation.1 <-> norm1.linear / norm1_context.linear
//     (the LAST block's context modulation is (shift, scale), swapped into diffusers' (scale, shift))
//   x_block.mlp.fc1/fc2, context_block.mlp.fc1/fc2 <-> ff.net.0.proj / ff.net.2, ff_context.net.0.proj / ff_context.net.2
// Tensors keep their dtype (F16 / BF16 / mixed files are upcast at load); renames and row splits are views, the
// swapped halves and fused qkv are copies.
#pragma once
#include <map>
#include <string>

#include "core/tensor.h"

namespace nuance {

constexpr const char* kMMDiTOriginalPrefix = "model.diffusion_model.";

// True when `t` holds the original MMDiT under model.diffusion_model. (a joint_blocks.0 or x_embedder tensor).
bool is_original_mmdit(const std::map<std::string, Tensor>& t);

// The model.diffusion_model.* tensors of an original checkpoint in diffusers names (other prefixes, such as
// text_encoders.* and first_stage_model.*, are ignored). Errors (Unsupported / InvalidArgument) name the original
// tensor: an unknown model.diffusion_model.* key, a missing block index, a fused qkv whose rows do not split in 3.
std::map<std::string, Tensor> mmdit_from_original(const std::map<std::string, Tensor>& t);

// The original key (with the prefix) that holds diffusers tensor `key` (a fused qkv for to_q/to_k/to_v); `key`
// itself when it has no original counterpart. For messages about files in the original layout.
std::string mmdit_original_name(const std::string& key);

// The inverse: diffusers names -> original keys (with the model.diffusion_model. prefix), for writing files in
// the layout people download (tests, make-random).
std::map<std::string, Tensor> mmdit_to_original(const std::map<std::string, Tensor>& diffusers);

}  // namespace nuance
