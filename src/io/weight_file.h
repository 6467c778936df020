// A checkpoint read from disk, whatever its format (safetensors, torch zip, diffusers folder, GGUF later).
#pragma once
#include <map>
#include <memory>
#include <string>

#include "core/tensor.h"

namespace nuance {

// Tensors by name: views into mmap'd or owned memory, any dtype, possibly strided.
struct WeightFile {
    std::string path;
    std::map<std::string, Tensor> tensors;
    std::map<std::string, std::string> metadata;
};

std::shared_ptr<Storage> map_file(const std::string& path);  // read-only mmap of a whole file

}  // namespace nuance
