// GGUF (llama.cpp / ggml's weight file, versions 2 and 3): header, metadata key/values, tensor infos, aligned data.
//
//   "GGUF" | u32 version | u64 n_tensors | u64 n_kv | n_kv x (string key, u32 type, value)
//   | n_tensors x (string name, u32 n_dims, u64 ne[n_dims], u32 ggml type, u64 offset) | pad to alignment | data
//
// Strings are u64 length + bytes, arrays u32 element type + u64 count + elements; everything little-endian.
// `ne` lists dimensions fastest first (ggml order): the torch shape is `ne` reversed. Tensor offsets are relative to
// the data section, which starts at the first multiple of general.alignment (default 32) after the tensor infos.
// The file is hostile: every count, length, offset and size product is checked against the file size before use,
// and the message names the field.
#pragma once
#include <functional>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "backends/cpu/ggml_quants.h"
#include "io/weight_file.h"

namespace nuance {

enum class GgufValueType : uint32_t { U8 = 0, I8, U16, I16, U32, I32, F32, Bool, String, Array, U64, I64, F64 };
const char* gguf_value_type_name(GgufValueType t);

// One metadata value. Scalars fill one of u (unsigned), i (signed, bool), f (float), s by kind. An array of `count`
// elements of type `elem` fills ints (integers and bools; u64 values above INT64_MAX wrap), floats, strs, or arr
// (arrays of arrays) -- compact, so a hostile multi-million-element array costs 8 bytes per element, not a struct.
struct GgufValue {
    GgufValueType type = GgufValueType::U8;
    uint64_t u = 0;
    int64_t i = 0;
    double f = 0;
    std::string s;
    GgufValueType elem = GgufValueType::U8;
    uint64_t count = 0;
    std::vector<int64_t> ints;
    std::vector<double> floats;
    std::vector<std::string> strs;
    std::vector<GgufValue> arr;

    std::optional<int64_t> as_int() const;  // integer scalars (u64 above INT64_MAX: nullopt)
    std::string to_string(size_t max_items = 8) const;  // "7", "'sd1'", "[3 x i32: 1, 2, 3]"
};

struct GgufTensorInfo {
    std::string name;
    std::vector<uint64_t> ne;  // fastest first, as stored
    Shape shape;               // torch order (ne reversed)
    uint32_t type = 0;         // ggml type id
    uint64_t offset = 0;       // absolute file offset of the data
    uint64_t nbytes = 0;
};

struct GgufFile {
    std::string path;
    uint32_t version = 0;
    uint64_t alignment = 32;
    uint64_t data_offset = 0;  // start of the data section
    std::vector<std::pair<std::string, GgufValue>> kv;  // in file order
    std::vector<GgufTensorInfo> tensors;                 // in file order
    std::shared_ptr<Storage> storage;

    const GgufValue* find(const std::string& key) const;
    // The stored tensor: F32/F16/BF16 as a view of the file with its torch shape; a block type as a packed payload.
    bool is_quantized(const GgufTensorInfo& t) const;
    QuantizedTensor quantized(const GgufTensorInfo& t) const;
    Tensor view(const GgufTensorInfo& t) const;  // F32/F16/BF16/I8/I16/I32/I64/F64 only
};

bool is_gguf_file(const std::string& path);  // by magic
// llama.cpp's general.file_type (llama_ftype): 7 -> "MOSTLY_Q8_0", 15 -> "MOSTLY_Q4_K_M"; "" when unknown.
std::string gguf_file_type_name(int64_t ftype);
GgufFile read_gguf(const std::string& path);
GgufFile read_gguf(std::shared_ptr<Storage> file, const std::string& name);  // bytes in memory (tests, fuzzing)

// A GGUF file as weights: float tensors are views of the file. Block-quantized ones are, with keep_quantized,
// quantized-weight handles (core/quantized_weight.h: the blocks stay in the mmap'd file, Linear/Conv2d compute with
// them) wherever the logical rows are whole blocks, and dequantized to F32 once here otherwise (or always without
// keep_quantized: tools that read the values). load_weights() keeps them quantized. Names are kept as stored: ComfyUI-GGUF
// files hold bare LDM / transformer keys (no "model.diffusion_model."), stable-diffusion.cpp files the full original
// keys of every component. Shapes: `ne` reversed, then comfy.gguf.orig_shape.<name> (ComfyUI-GGUF stores large
// tensors reshaped) where present. Scalar metadata (and short arrays) go to WeightFile::metadata as text.
WeightFile load_gguf(const std::string& path, bool keep_quantized = false);
WeightFile load_gguf(std::shared_ptr<Storage> file, const std::string& name, bool keep_quantized = false);
WeightFile gguf_to_weights(const GgufFile& g, bool keep_quantized = false);

// Writes a GGUF v3 file atomically (io/atomic_file.h): the metadata in the given order (general.alignment, when
// present, must be a u32 power of two and sets the alignment), then every tensor's packed bytes (QuantizedTensor: a
// plain F32/F16/BF16 tensor is a 1-value-block type) in the given order, each at a multiple of the alignment.
void write_gguf(const std::string& path, const std::vector<std::pair<std::string, GgufValue>>& kv,
                const std::vector<std::pair<std::string, QuantizedTensor>>& tensors);
// The same file, streamed: the header from the plan (name, type, torch-order shape per tensor), then tensor i's
// bytes from produce(i), called once per tensor in order and dropped after writing, so that only one tensor's bytes
// are held at a time. produce(i) must return exactly the planned type and shape.
struct GgufTensorPlan {
    std::string name;
    GgmlType type = GgmlType::F32;
    Shape shape;
};
void write_gguf(const std::string& path, const std::vector<std::pair<std::string, GgufValue>>& kv,
                const std::vector<GgufTensorPlan>& plan, const std::function<QuantizedTensor(size_t)>& produce);
GgufValue gguf_string(const std::string& s);
GgufValue gguf_u32(uint32_t v);
GgufValue gguf_i32_array(const std::vector<int64_t>& v);

// llama.cpp's T5 encoder names (enc.blk.N.attn_q.weight, token_embd.weight, ...) -> transformers' T5EncoderModel
// names (encoder.block.N.layer.0.SelfAttention.q.weight, shared.weight, ...), as ComfyUI-GGUF's T5_SD_MAP does;
// ffn_up is wi_1 of a gated (v1.1) FFN and `wi` when the file has no ffn_gate. Decoder (dec.*) keys are dropped.
// Names that are not llama.cpp T5 names are kept.
std::map<std::string, Tensor> t5_gguf_to_transformers_names(const std::map<std::string, Tensor>& t);

}  // namespace nuance
