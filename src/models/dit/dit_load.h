// DiT checkpoints in the layouts people download, mapped onto the diffusers module tree (models/dit/dit.h):
//  - the original facebookresearch file (DiT-XL-2-256x256.pt: a pickled state dict, read by the safe unpickler;
//    or the same tensors in a .safetensors): x_embedder.proj, pos_embed (buffer), t_embedder.mlp.{0,2},
//    y_embedder.embedding_table, blocks.N.{attn.qkv, attn.proj, mlp.fc1, mlp.fc2, adaLN_modulation.1},
//    final_layer.{adaLN_modulation.1, linear};
//  - diffusers DiTTransformer2DModel: a transformer/ folder (config.json + diffusion_pytorch_model.*), a pipeline
//    folder holding one, or a bare state dict file.
#pragma once
#include <map>
#include <memory>
#include <string>

#include "models/dit/dit.h"
#include "nn/module.h"

namespace nuance {

enum class DiTLayout { Diffusers, Original };
const char* dit_layout_name(DiTLayout l);  // "diffusers", "original"

// True when the names are those of the original DiT (x_embedder.proj.weight + blocks.0.adaLN_modulation.1.weight).
bool is_original_dit(const std::map<std::string, Tensor>& tensors);
// True when the names are those of diffusers' DiTTransformer2DModel.
bool is_diffusers_dit(const std::map<std::string, Tensor>& tensors);

// Original names -> diffusers names. The fused qkv is split into to_q/to_k/to_v views (no copy), the single
// t_embedder/y_embedder are shared by every block's norm1.emb (as diffusers' converter copies them). Errors name
// the first missing tensor ("DiT original checkpoint 'f.pt' is missing tensor 'blocks.3.attn.qkv.bias'") and the
// inconsistent shapes. `sample_size` receives the latent size from the pos_embed buffer ([1, T, D], T = (H/p)^2),
// or 0 when the file has none. `origin`, when given, receives the original name of every mapped tensor.
std::map<std::string, Tensor> dit_original_to_diffusers(const std::map<std::string, Tensor>& tensors,
                                                        const std::string& source, int64_t* sample_size,
                                                        std::map<std::string, std::string>* origin = nullptr);

struct DiTLoadOptions {
    int64_t heads = 0;  // > 0: the number of attention heads (for widths that are no DiT preset and no config.json)
    LoadOptions load;   // precision, matrices as stored ... (source is set by the loader)
};

struct LoadedDiT {
    std::unique_ptr<DiTTransformer2DModel> model;
    DiTLayout layout = DiTLayout::Diffusers;
    std::string weights_path;  // the weight file actually read
};

// Config for a state dict in either layout: detected from the shapes, then the layout's conventions (the original
// code's timestep frequencies use shift 0 and its MLP LayerNorm eps 1e-6; diffusers' shift 1 and norm_eps).
DiTConfig dit_config_for(const std::map<std::string, Tensor>& diffusers_tensors, DiTLayout layout, int64_t heads,
                         int64_t sample_size);

// Loads a DiT from a file (.pt/.ckpt/.pth/.safetensors in either layout) or a diffusers folder (the transformer/
// folder itself or a pipeline folder with transformer/). Errors: a file that is neither layout lists what was
// expected and the first keys seen; an incomplete file names the missing tensor; unused tensors are an error
// (a file with more blocks or other parts is not silently half-loaded).
LoadedDiT load_dit(const std::string& path, const DiTLoadOptions& opt = {});

// The same on tensors already read (`source` names them in messages); `config_json` is a diffusers config object or
// null.
LoadedDiT load_dit_tensors(const std::map<std::string, Tensor>& tensors, const std::string& source,
                           const DiTLoadOptions& opt, const nlohmann::json* config_json = nullptr);

}  // namespace nuance
