// Quantized weights as tensors: a weight whose file stores it in a ggml block format (Q8_0, Q4_K, ...) stays in that
// format in memory and travels through the weight maps, key maps and module loading as an ordinary Tensor handle,
// so that Linear / Conv2d hand it to the backend, which computes with the blocks directly (issue 14, item 3).
//
// The handle: a U8 tensor with the weight's logical (torch) shape [N, ...] whose dim-0 stride is the bytes of one
// logical row (K = numel / N values = K / block blocks) and whose other strides are 0, over a storage that wraps the
// packed payload (usually the mmap'd file) and is tagged as quantized. It never materialises N * K bytes: every view
// that keeps dim 0 (narrow/slice of whole rows, unsqueeze) stays a valid handle of those rows, and any attempt to
// copy or convert it (contiguous(), to(F32), clone()) fails naming it instead of reading the packed bytes as values.
// The ggml type is the GGUF type id (a GgmlType value, backends/cpu/ggml_quants.h); core does not interpret it.
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include "core/tensor.h"

namespace nuance {

// A weight patch applied at run time to the products with a quantized weight (a LoRA on a quantized model: the
// blocks are never rewritten; stable-diffusion.cpp does the same). Low rank: y[:, rows] += scale * (x · aᵀ) · bᵀ with
// a [r, K], b [n, r]; dense (b undefined): y[:, rows] += scale * x · aᵀ with a [n, K]. `rows` are the payload rows
// row0 .. row0 + n - 1 (the rows of the handle the patch was attached to). a, b: F32, contiguous, owned.
struct QuantizedWeightPatch {
    Tensor a, b;
    float scale = 1.0f;
    int64_t row0 = 0;
    int64_t rows() const { return b.defined() ? b.size(0) : a.size(0); }
};

// What a backend needs to compute with a quantized weight: `rows` logical rows of `row_length` values each, row r at
// data + r * row_bytes, every row `row_length / block` blocks of `block_bytes` bytes; `first_row` is the payload row
// of row 0 (a handle narrowed to some rows), `patches` the run-time patches on the payload (never null).
struct QuantizedWeightView {
    uint32_t ggml_type = 0;
    int64_t block = 0, block_bytes = 0;
    const uint8_t* data = nullptr;
    int64_t rows = 0, row_length = 0, row_bytes = 0;
    int64_t first_row = 0;
    const std::vector<QuantizedWeightPatch>* patches = nullptr;
    // Every value of the weight is its blocks' value times `scale` (ComfyUI's scaled FP8 files: a per-tensor
    // scale_weight); 1 for every other file. The patches are not scaled.
    float scale = 1.0f;
    // The storage that keeps `data` alive (weak: a backend may cache work derived from the blocks, such as a repacked
    // copy, while it lives; blocks are never rewritten in place). Expired or empty for a view built by hand.
    std::weak_ptr<Storage> owner;
    // The blocks are a read-only mapping of a file (release_file_pages can drop their pages).
    bool file_backed = false;
};

// A handle over `bytes` bytes at `data` (kept alive by `keepalive`) of blocks of type `ggml_type`, seen as `shape`
// (rank >= 2; numel / shape[0] a multiple of `block`; rows * row_bytes == bytes). Throws InvalidArgument otherwise.
// `type_name` (ggml's spelling, a string literal) is kept for messages. file_backed: the bytes are a read-only mapping
// of a file (release_file_pages may drop them).
Tensor make_quantized_weight(uint32_t ggml_type, const char* type_name, int64_t block, int64_t block_bytes,
                             const uint8_t* data, size_t bytes, std::shared_ptr<void> keepalive, const Shape& shape,
                             bool file_backed = false);

// The handle `t` whose values are multiplied by `scale` (finite, non-zero) on top of its own scale: a new handle over
// the same blocks and patches (t itself is unchanged). Throws InvalidArgument naming the weight otherwise.
Tensor quantized_weight_with_scale(const Tensor& t, float scale);

// True when `t` is over a quantized payload (a handle, or a view of one that is no longer a valid handle).
bool is_quantized_storage(const Tensor& t);
// The rows of a valid handle; nullopt for any other tensor (a view that broke the row layout included).
std::optional<QuantizedWeightView> quantized_weight_view(const Tensor& t);
// The handle's payload as a U8 [rows, row_bytes] tensor (for dequantization); throws when `t` is not a handle.
Tensor quantized_weight_payload(const Tensor& t);
// The same rows seen as `shape` (shape[0] == rows, same element count): a Linear's [O, C] for a stored 1x1 conv's
// [O, C, 1, 1] and back. Throws InvalidArgument naming both shapes otherwise.
Tensor quantized_weight_reshape(const Tensor& t, const Shape& shape);
// The handle `t` with one more run-time patch on its rows (patch.row0 is set here: t's first row; the patch's row
// count must not exceed t's rows, a's columns must be t's row length, b's columns a's rows). A new handle over the
// same blocks: `t` itself (and every copy of it) is unchanged, so dropping the new handle undoes the patch.
Tensor quantized_weight_with_patch(const Tensor& t, QuantizedWeightPatch patch);
// Drops the pages of a file-mapped tensor (a plain view of the mmap'd file, or a quantized handle's payload) from
// this process: they stay in the page cache and a later read maps them again, with the same bytes. Only whole pages
// inside the tensor go. Returns the bytes released (0 for memory the process owns). Advisory: errors are ignored.
size_t release_file_pages(const Tensor& t);
// The same for the blocks of a view (0 unless file_backed and its owner still lives).
size_t release_file_pages(const QuantizedWeightView& v);
// "Q8_0[320, 320, 3, 3]" for messages, "F8_E4M3[64, 64]*0.25" with a scale ("" when not quantized).
std::string quantized_weight_str(const Tensor& t);

}  // namespace nuance
