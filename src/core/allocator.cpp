#include "core/allocator.h"

#include <sys/mman.h>

#include <cstdint>
#include <cstdlib>
#include <map>
#include <mutex>
#include <vector>

#include "core/error.h"

namespace nuance {

namespace {

constexpr size_t kSmall = 64 << 10;           // below this, malloc's own bins do well
constexpr size_t kMaxCached = size_t(1) << 31;  // at most 2 GiB of free blocks kept

// Rounds up to 1/8 of the size's power of two so near sizes share a class (waste <= 12.5%).
size_t size_class(size_t n) {
    size_t p = 1;
    while (p * 2 <= n) p *= 2;
    const size_t step = p >= 512 ? p / 8 : 64;
    return (n + step - 1) / step * step;
}

struct Pool {
    std::mutex m;
    std::multimap<size_t, void*> free_blocks;  // class size -> block
    size_t cached = 0, hits = 0, misses = 0;
};

Pool& pool() {
    static Pool* p = new Pool();  // never destroyed: tensors freed during static destruction still find it
    return *p;
}

constexpr size_t kHuge = 2 << 20;  // blocks from here on are mapped on 2 MiB boundaries as transparent huge pages

bool use_huge() {
    static const bool on = [] {
        const char* e = std::getenv("NUANCE_HUGEPAGES");
        return !(e && e[0] == '0');
    }();
    return on;
}

// Whole 2 MiB pages, so the kernel can back the block with huge pages: a first touch of a 256 MiB activation then
// takes 128 page faults instead of 65,536 (page faults are costly in this VM: ~10% of a step before), and the
// products' TLB misses drop too.
size_t huge_size(size_t n) { return (n + kHuge - 1) / kHuge * kHuge; }

void* system_alloc(size_t n) {
    if (n >= kHuge && use_huge()) {
        const size_t len = huge_size(n);
        // over-map by one huge page and trim, for a 2 MiB aligned start
        void* raw = mmap(nullptr, len + kHuge, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (raw == MAP_FAILED) fail(ErrorCode::OutOfMemory, "cannot allocate ", n, " bytes");
        const uintptr_t a = reinterpret_cast<uintptr_t>(raw), start = (a + kHuge - 1) / kHuge * kHuge;
        if (start > a) munmap(raw, start - a);
        if (const size_t tail = a + len + kHuge - (start + len); tail > 0) munmap(reinterpret_cast<void*>(start + len), tail);
        void* p = reinterpret_cast<void*>(start);
        madvise(p, len, MADV_HUGEPAGE);
        return p;
    }
    void* p = std::aligned_alloc(64, (n + 63) / 64 * 64);
    if (!p) fail(ErrorCode::OutOfMemory, "cannot allocate ", n, " bytes");
    return p;
}

void system_free(void* p, size_t n) {
    if (n >= kHuge && use_huge())
        munmap(p, huge_size(n));
    else
        std::free(p);
}

}  // namespace

void* cached_alloc(size_t bytes) {
    if (bytes == 0) return nullptr;
    if (bytes < kSmall) return system_alloc(bytes);
    const size_t n = size_class(bytes);
    Pool& P = pool();
    {
        std::lock_guard<std::mutex> lock(P.m);
        auto it = P.free_blocks.find(n);
        if (it != P.free_blocks.end()) {
            void* p = it->second;
            P.free_blocks.erase(it);
            P.cached -= n;
            ++P.hits;
            return p;
        }
        ++P.misses;
    }
    return system_alloc(n);
}

void cached_free(void* p, size_t bytes) {
    if (!p) return;
    if (bytes < kSmall) { std::free(p); return; }
    const size_t n = size_class(bytes);
    Pool& P = pool();
    {
        std::lock_guard<std::mutex> lock(P.m);
        if (P.cached + n <= kMaxCached) {
            P.free_blocks.emplace(n, p);
            P.cached += n;
            return;
        }
    }
    system_free(p, n);
}

void allocator_trim() {
    Pool& P = pool();
    std::vector<std::pair<size_t, void*>> blocks;
    {
        std::lock_guard<std::mutex> lock(P.m);
        for (auto& [n, p] : P.free_blocks) blocks.emplace_back(n, p);
        P.free_blocks.clear();
        P.cached = 0;
    }
    for (auto& [n, p] : blocks) system_free(p, n);
}

AllocatorStats allocator_stats() {
    Pool& P = pool();
    std::lock_guard<std::mutex> lock(P.m);
    return {P.cached, P.hits, P.misses};
}

}  // namespace nuance
