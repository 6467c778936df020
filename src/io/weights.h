// Opening weight files whatever their format, and hashing them the way A1111 does.
#pragma once
#include <string>
#include <vector>

#include "io/weight_file.h"

namespace nuance {

enum class WeightFormat { Safetensors, TorchZip, ShardIndex, Gguf, Unknown };
WeightFormat detect_weight_format(const std::string& path);  // by content, not extension

// One file: safetensors, GGUF (io/gguf.h: quantized tensors dequantized to F32), torch .ckpt/.pt (zip, safe unpickler), or a sharded `*.safetensors.index.json` (its shards
// are loaded and merged). Errors name the file.
WeightFile load_weights(const std::string& path);

// First entry in `dir` among `names` that exists in any form (e.g. diffusion_pytorch_model.safetensors, ...bin);
// "" if none. A folder, FIFO or broken symlink under a weight file's name is returned too, so that loading it
// reports what it is instead of silently falling back to the next name.
std::string find_first_file(const std::string& dir, const std::vector<std::string>& names);

bool is_directory(const std::string& path);
bool file_exists(const std::string& path);  // a regular file (symlinks followed)
bool path_exists(const std::string& path);  // anything, even a dangling symlink
std::string base_name(const std::string& path);  // "a/b/c.safetensors" -> "c.safetensors"
std::string stem(const std::string& path);       // "a/b/c.safetensors" -> "c"

// SHA-256 of a whole file, lower-case hex. A1111's "Model hash" is its first 10 characters.
std::string file_sha256(const std::string& path);

}  // namespace nuance
