// Caching allocator for tensor memory (design.md §2: "buffers come from a caching allocator").
// An eager UNet step allocates and frees the same few hundred activation sizes every step; returning them to the OS
// costs an munmap, then page faults and kernel page zeroing on the next step (~15% of a 256² step, measured with
// perf). Large blocks are therefore kept on a free list by size class and handed out again; small blocks go straight
// to the system allocator. The cache is bounded; `allocator_trim()` gives every cached block back (pipelines call it
// between phases, e.g. before the VAE decode, so the peak stays low).
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>

namespace nuance {

void* cached_alloc(size_t bytes);  // 64-byte aligned; throws OutOfMemory
void cached_free(void* p, size_t bytes);
void allocator_trim();
// Gives back the cached blocks that were not used since the previous call, and starts a new period: called once per
// denoising step, the cache holds one step's working set, not the one-off blocks of the first step (weight packing's
// temporaries) or of an earlier phase (measured, SD1.5 512² bf16: 0.9-1.4 GB of such blocks at the end of the steps).
// Returns the bytes given back.
size_t allocator_trim_stale();
// While one lives on a thread, the blocks that thread frees go back to the system instead of the cache: for one-off
// temporaries such as weight packing's conversions, which no later step asks for again (SD1.5 at 512² bf16: a few
// hundred MB of them, held through the first step, where the process's peak RSS was).
class UncachedScope {
public:
    UncachedScope();
    ~UncachedScope();
    UncachedScope(const UncachedScope&) = delete;
    UncachedScope& operator=(const UncachedScope&) = delete;
};

// Memory for long-lived large buffers (packed weight copies): anonymous pages that the kernel may back with 2 MB
// transparent huge pages (madvise MADV_HUGEPAGE where the system's THP mode is "madvise"). Filling a gigabyte of
// packed weights in 4 KB pages costs ~300k page faults (measured: 2.5 s of system time for SD1.5's Q8_0 tiles on a
// VM); in huge pages a few hundred, and the products stream the weights with fewer TLB misses. Page-aligned; the
// pointer is freed (munmap) when the last copy of the returned shared_ptr goes. Throws OutOfMemory.
std::shared_ptr<uint8_t> large_buffer(size_t bytes);

// Budget for kept packed weight copies (oneDNN's blocked layouts, W8A8 int8 tiles), in bytes. A weight is packed
// once and kept while its tensor lives, and its file pages are given back: one copy in memory. A model larger than
// the budget (Flux-dev's 24 GB of bf16 on a 24 GB machine) keeps the copies that fit and runs the rest packed per
// call from the file's mapping (the page cache re-reads them as needed) instead of being killed for memory.
// NUANCE_PACKED_BUDGET_MB sets it (0: keep nothing; "unlimited"); default: physical memory (or the cgroup's
// memory.max when lower) less max(2 GiB, a quarter of it).
size_t packed_weights_budget();
void set_packed_weights_budget(size_t bytes);  // SIZE_MAX: unlimited
size_t default_packed_weights_budget(size_t memory_bytes);  // the rule above, for a machine of this much memory
// NUANCE_PACKED_BUDGET_MB's text: a whole number of MiB, or "unlimited" (SIZE_MAX); anything else (unset, empty,
// signs, units, overflow) gives `fallback` (and a set but invalid value is reported once, as a warning on stderr).
size_t parse_packed_budget_mb(const char* text, size_t fallback);
bool packed_budget_text_valid(const char* text);  // parse_packed_budget_mb would not fall back


struct AllocatorStats {
    size_t cached_bytes = 0;  // free blocks held now
    size_t hits = 0, misses = 0;
};
AllocatorStats allocator_stats();

}  // namespace nuance
