// Training checkpoints and model export: safetensors files written atomically (temp file, fsync, rename: a crash
// or a full disk leaves the previous file intact and no partial one), the run's options and state as JSON
// metadata, and diffusers-layout component folders (config.json + f16 weights) that load_model reads.
#pragma once
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "core/tensor.h"
#include "models/vae/autoencoder_kl.h"
#include "nn/module.h"
#include "train/trainer.h"

namespace nuance {

struct CheckpointFile {
    std::map<std::string, Tensor> tensors;
    nlohmann::json meta;  // the "nuance_train" metadata entry
};

void save_checkpoint_file(const std::string& path, const std::vector<std::pair<std::string, Tensor>>& tensors,
                          const nlohmann::json& meta);
// Errors name the file: not a safetensors file, not a nuance training checkpoint, bad metadata.
CheckpointFile load_checkpoint_file(const std::string& path);
// The step-NNNNNNN.safetensors with the highest step in `dir`; "" when none. Removes the temp files of killed
// writers first (remove_stale_temp_files), as do prune_checkpoints, write_json and write_component.
std::string newest_checkpoint(const std::string& dir);
// Deletes all but the newest `keep` (>= 1) step files of `dir`.
void prune_checkpoints(const std::string& dir, int keep);

nlohmann::json options_json(const TrainOptions& o);
// Writes JSON atomically (temp, fsync, rename), creating the folder.
void write_json(const std::string& path, const nlohmann::json& j);
// <dir>/<weights> (F16) and <dir>/config.json.
void write_component(const std::string& dir, Module& m, const std::string& weights, const nlohmann::json& config);
// A diffusers VAE folder: config.json (with the calibrated scaling_factor) + diffusion_pytorch_model.safetensors.
void export_vae(AutoencoderKL& vae, const std::string& dir, int64_t sample_size);
// A trained VAE from a `nuance train --model vae` run folder (its vae/), or any diffusers VAE folder, F32.
std::unique_ptr<AutoencoderKL> load_trained_vae(const std::string& path);

}  // namespace nuance
