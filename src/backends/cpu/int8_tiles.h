// The W8A8 kernel's weight tiles (quantized_matmul.cpp: vnni_rows_tile): a quantized weight's blocks repacked into
// tiles of 32 output columns for vpdpbusd, and the cache that keeps them across calls (quantized_matmul.h:
// set_int8_pack_cache, within core/allocator.h's packed_weights_budget).
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>

#include "core/quantized_weight.h"

namespace nuance::cpu {

constexpr int64_t kTileN = 32;                    // output columns per packed tile (two 16-lane vectors)
constexpr int64_t kTileBlockBytes = kTileN * 32;  // one 32-block of K for one tile: 8 groups x 2 vectors x 64 bytes

struct PackedInt8 {
    int64_t N = 0, K = 0, KB = 0, tiles = 0;
    int zero = 0;          // value = d * (u - zero) + m (ggml_quants.h: int8_block)
    bool has_min = false;  // Q4_1 / Q5_1 / Q2_K / Q4_K / Q5_K
    int groups = 1;        // scale groups per 32-block: 1, or 2 for the 16-value groups of Q2_K / Q3_K / Q6_K
    // q, d and m in one large_buffer (huge pages where the system gives them): q first, then d, then m.
    std::shared_ptr<uint8_t> mem;
    size_t bytes = 0;
    uint8_t* q = nullptr;  // [tiles][KB][8 groups of 4 k][2 halves][16 lanes][4] unsigned quants u
    float* d = nullptr;    // [tiles][KB][groups][32]: d per column (0 for the padded columns of the last tile)
    float* m = nullptr;    // [tiles][KB][groups][32]: m per column (has_min only)
};

// The weight repacked: `kept` tiles live in a large_buffer (huge pages) and outlive the call; otherwise in the caching
// allocator's blocks.
PackedInt8 pack_int8(const QuantizedWeightView& w, bool kept);

// The weight's tiles: from the cache, or packed now (and kept when the cache mode and the budget say so).
std::shared_ptr<const PackedInt8> packed_int8(const QuantizedWeightView& w);

}  // namespace nuance::cpu
