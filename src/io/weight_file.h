// A checkpoint read from disk, whatever its format (safetensors, torch zip, diffusers folder, GGUF later), and the
// hostile-path-safe way to open the files it comes from.
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

std::shared_ptr<Storage> map_file(const std::string& path);  // read-only mmap of a whole regular file

// Throws unless `path` names a regular file (symlinks followed), with a message that says what it is instead:
// "<what> '<path>' does not exist" (NotFound), "... is a directory", "... is not a regular file (it is a FIFO)",
// "...: too many levels of symbolic links". `what` is e.g. "model file".
void require_regular_file(const std::string& path, const char* what);

// Opens a regular file for reading without ever blocking (a FIFO named as a model would wait for a writer
// forever): O_NONBLOCK, then fstat. Returns the descriptor (the caller closes it); throws like
// require_regular_file.
int open_regular_file(const std::string& path, const char* what);

// Up to `n` bytes from the start of a regular file ("" if it is not one or cannot be read). Never blocks.
std::string read_file_prefix(const std::string& path, size_t n);

// A whole regular file of at most `max_bytes` bytes (checked against its size before reading). Never blocks.
std::string read_small_file(const std::string& path, size_t max_bytes, const char* what);

}  // namespace nuance
