// Caching allocator for tensor memory (design.md §2: "buffers come from a caching allocator").
// An eager UNet step allocates and frees the same few hundred activation sizes every step; returning them to the OS
// costs an munmap, then page faults and kernel page zeroing on the next step (~15% of a 256² step, measured with
// perf). Large blocks are therefore kept on a free list by size class and handed out again; small blocks go straight
// to the system allocator. The cache is bounded; `allocator_trim()` gives every cached block back (pipelines call it
// between phases, e.g. before the VAE decode, so the peak stays low).
#pragma once
#include <cstddef>

namespace nuance {

void* cached_alloc(size_t bytes);  // 64-byte aligned; throws OutOfMemory
void cached_free(void* p, size_t bytes);
void allocator_trim();

struct AllocatorStats {
    size_t cached_bytes = 0;  // free blocks held now
    size_t hits = 0, misses = 0;
};
AllocatorStats allocator_stats();

}  // namespace nuance
