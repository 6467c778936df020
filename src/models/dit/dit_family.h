// The DiT registry entry ("dit") and its detection from a TensorIndex (models/model_family.h).
//   original facebookresearch file (.pt / .safetensors): x_embedder.proj.weight + blocks.0.adaLN_modulation.1.weight
//     + y_embedder.embedding_table.weight -> 50 (a transformer alone: the VAE comes with --vae); without the class
//     table (PixArt's y_embedder.y_proj, a cut file) -> 1 only when t_embedder is there too (the loader names what
//     is missing);
//   bare diffusers DiTTransformer2DModel file: pos_embed.proj.weight + transformer_blocks.0.norm1.emb.class_embedder
//     .embedding_table.weight -> 50 (SD3's diffusers transformer shares pos_embed.proj but has no class embedder);
//   diffusers folder: model_index.json's DiTPipeline, or those keys under transformer/ -> 100 with vae/, 50 without.
#pragma once
#include "models/model_family.h"

namespace nuance {

int detect_dit(const TensorIndex& ix);

// Without loading: the native size from the sample size the source states (pos_embed buffer, transformer/config.json).
GenerationDefaults probe_dit_defaults(const ModelSource& src);

ModelSpec dit_model_spec();

}  // namespace nuance
