// ggml's block-quantized weight formats (the tensor types of GGUF files): the type table, and dequantization of whole
// rows to f32, bit for bit as ggml's dequantize_row_* (compiled without FMA contraction) and gguf-py's
// quants.dequantize compute them.
//
// Legend: a row of n values is n / block blocks of `bytes` bytes each; a block holds `block` values (32 for the
// legacy Q4_0..Q8_0 and IQ4_NL types, 256 = QK_K for the K-quants and IQ4_XS) with its scales next to its quants.
//
// Quantized weights are kept as a packed payload + type tag (QuantizedTensor below), not as a Tensor dtype: a block
// type has no per-element size, so every Tensor view / stride / numel*dtype_size rule would be wrong for it, and the
// kernels that use the weights directly (int8 and 4/5/6-bit GEMMs) want exactly ggml's row-of-blocks layout with the
// scale next to its quants. The payload is a U8 Tensor [rows, row_bytes] that views the mmap'd file, so a GEMM can
// walk the rows of blocks in place with no copy and no format change.
#pragma once
#include <cstdint>
#include <string>

#include "core/tensor.h"

namespace nuance {

enum class GgmlType : uint32_t {
    F32 = 0, F16 = 1, Q4_0 = 2, Q4_1 = 3, Q5_0 = 6, Q5_1 = 7, Q8_0 = 8, Q8_1 = 9,
    Q2_K = 10, Q3_K = 11, Q4_K = 12, Q5_K = 13, Q6_K = 14, Q8_K = 15,
    IQ4_NL = 20, IQ4_XS = 23, I8 = 24, I16 = 25, I32 = 26, I64 = 27, F64 = 28, BF16 = 30,
    // nuance's own ids, never read from a GGUF file (the GGUF reader refuses them): FP8 matrices from safetensors
    // (t5xxl_fp8_e4m3fn) kept as their bytes in memory and widened inside the product, one value per byte.
    F8_E4M3 = 0x10001, F8_E5M2 = 0x10002,
};
// True for the nuance-private FP8 ids above.
inline bool is_float8(GgmlType t) { return t == GgmlType::F8_E4M3 || t == GgmlType::F8_E5M2; }

struct GgmlTypeInfo {
    GgmlType type;
    const char* name;  // ggml's spelling: "Q4_K", "F16"
    int64_t block;     // values per block
    int64_t bytes;     // bytes per block
    bool dequantizable;  // dequantize_row knows it
};

// nullptr for a type id this build does not know (the message then names the id).
const GgmlTypeInfo* ggml_type_info(uint32_t id);
const GgmlTypeInfo& ggml_type_info(GgmlType t);
// Case-insensitive "q8_0" / "Q4_K" -> type; throws InvalidArgument naming the string.
GgmlType parse_ggml_type(const std::string& name);

// A row of `n` values (n a multiple of the type's block) from `src` (n / block * bytes bytes) into `dst`.
// Dispatches to the AVX2 kernels where they exist and the CPU has them; the scalar reference otherwise.
void dequantize_row(GgmlType t, const void* src, float* dst, int64_t n);
// The scalar reference (ggml's C code, straight), and the vectorised path alone (falls back to the scalar one for
// types without a vector kernel); tests check that they agree bit for bit.
void dequantize_row_scalar(GgmlType t, const void* src, float* dst, int64_t n);
void dequantize_row_vector(GgmlType t, const void* src, float* dst, int64_t n);
bool has_vector_dequantize(GgmlType t);

// The integer form of one stored block (ggml_type_info(t).block values), for int8 products: value[k] =
// d[g] * (u[k] - zero) + m[g] for k in scale group g = k / int8_scale_group(t), u in 0..255, `zero` a constant of
// the type (Q8_0 128: u = q + 128; IQ4_NL / IQ4_XS 128: u = the non-linear table's value + 128; Q4_0 8; Q5_0 16;
// Q3_K 4; Q6_K 32; 0 for the types with a min: Q4_1, Q5_1, Q2_K, Q4_K, Q5_K). Groups of 32 values for the legacy
// types, Q4_K / Q5_K and IQ4_XS, of 16 for Q2_K, Q3_K and Q6_K; d and m as
// ggml's dequantize computes them (d = d_super * sc, m = -dmin * mn), so the values are its values bit for bit.
// `block` points at the stored block; u gets block values, d and m block / group scales each.
bool has_int8_blocks(GgmlType t);
int int8_block_zero(GgmlType t);
bool int8_block_has_min(GgmlType t);  // m can be non-zero: Q4_1, Q5_1, Q2_K, Q4_K, Q5_K
int int8_scale_group(GgmlType t);
void int8_block(GgmlType t, const uint8_t* block, uint8_t* u, float* d, float* m);

// Block-quantized weights: `packed` is U8 [rows, row_bytes] (usually a view into the mmap'd file), `shape` the
// logical (torch-order) shape whose last dimension is the row length.
struct QuantizedTensor {
    GgmlType type = GgmlType::F32;
    Shape shape;
    Tensor packed;
    int64_t row_length() const { return shape.empty() ? 1 : shape.back(); }
    Tensor dequantize() const;  // F32, contiguous, `shape`
};

// The payload of `q` as a quantized-weight handle (core/quantized_weight.h) of logical shape `logical` (the same
// element count as q.shape): the payload is read as one run of blocks, logical row r = blocks [r * K / block, ...)
// with K = numel / logical[0]. Undefined (no handle) when that does not hold whole blocks (K % block != 0, rank < 2).
Tensor quantized_weight_tensor(const QuantizedTensor& q, const Shape& logical);

}  // namespace nuance

namespace nuance {

// A row of `n` f32 values (n a multiple of the block) into `dst` (n / block * bytes bytes), as gguf-py's
// quants.quantize does (which is bit-exact with ggml's quantize_row_*_ref for Q8_0 and follows it for the others):
// F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, and Q2_K, Q3_K, Q4_K, Q5_K, Q6_K as ggml's reference quantizers
// (gguf-py has none for them). Throws Unsupported for other types.
void quantize_row(GgmlType t, const float* src, void* dst, int64_t n);
// The same bytes from the scalar code only (quantize_row runs Q8_0 and the K-quant / IQ4 scale searches on AVX-512
// where the CPU has it): what the tests compare the vector paths with.
void quantize_row_scalar(GgmlType t, const float* src, void* dst, int64_t n);
bool can_quantize(GgmlType t);

// A whole F32 (or F16/BF16, converted) tensor whose last dimension is a multiple of the block: rows of blocks.
QuantizedTensor quantize(const Tensor& x, GgmlType t);
// The CPU kernel behind CpuBackend::dequantize: F32 [shape] from a host U8 payload of whole rows.
Tensor dequantize_on_host(GgmlType type, const Tensor& packed, const Shape& shape);

}  // namespace nuance
