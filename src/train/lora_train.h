// `nuance train --model lora`: LoRA fine-tuning of an SD1.x/SD2.x/SDXL-architecture model (train/lora_network.h) on an image
// folder, as kohya's train_network.py does it: the base UNet, text encoder and VAE frozen (no gradients, no
// optimizer state), the latents of the frozen VAE cached per image, the model's own objective (ε or v) at uniform
// timesteps, AdamW on the adapters only (warmup + cosine), optionally adapters on the text encoder too.
// The run folder holds checkpoints/step-NNNNNNN.safetensors (the adapters, AdamW state, data order, options: --resume
// continues bit-exactly, also under mpirun), train_log.jsonl, and the result <out>/<name>.safetensors in kohya's
// format with kohya's ss_* metadata (name = the run folder's name), which `nuance generate --lora`, A1111 and ComfyUI
// load.
#pragma once
#include <map>
#include <string>

#include "train/trainer.h"

namespace nuance {

TrainReport train_lora(const TrainOptions& options, const TrainCallback& on_step = {});

// The name of the exported file: <output>/<last path component of output>.safetensors.
std::string lora_export_path(const std::string& output);

}  // namespace nuance
