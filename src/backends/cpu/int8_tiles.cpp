// The W8A8 kernel's weight tiles and the cache that keeps them (int8_tiles.h).
#include "backends/cpu/int8_tiles.h"

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <string>
#include <tuple>
#include <vector>

#include "backends/cpu/dnnl_cache.h"
#include "backends/cpu/ggml_quants.h"
#include "backends/cpu/quantized_matmul.h"
#include "core/allocator.h"

namespace nuance::cpu {

namespace {
constexpr int64_t QK = 32;  // values per scale block of the activations and per 32-block of the tiles
}  // namespace

// kept: the tiles outlive this call (large_buffer, huge pages); otherwise they come from the caching allocator, which
// hands the same blocks out again call after call (no fresh pages to fault in per product). Every byte is written
// below (the padded columns of the last tile included), so neither needs clearing.
PackedInt8 pack_int8(const QuantizedWeightView& w, bool kept) {
    const GgmlType t = (GgmlType)w.ggml_type;
    const GgmlTypeInfo& ti = ggml_type_info(t);
    PackedInt8 p;
    p.N = w.rows, p.K = w.row_length, p.KB = p.K / QK, p.tiles = (p.N + kTileN - 1) / kTileN;
    p.zero = int8_block_zero(t);
    p.has_min = int8_block_has_min(t);
    const int group = int8_scale_group(t);
    p.groups = (int)(QK / group);
    const int64_t per_block = ti.block / QK;  // 32-blocks per stored block (8 for the K-quants)
    const int64_t gs = p.groups * kTileN;     // scales per (tile, 32-block)
    const size_t q_bytes = (size_t)(p.tiles * p.KB * kTileBlockBytes), scales = (size_t)(p.tiles * p.KB * gs);
    p.bytes = q_bytes + scales * sizeof(float) * (p.has_min ? 2 : 1);
    if (kept) {
        p.mem = large_buffer(p.bytes);
    } else {
        const size_t n = p.bytes;
        p.mem = std::shared_ptr<uint8_t>(static_cast<uint8_t*>(cached_alloc(n)), [n](uint8_t* q) { cached_free(q, n); });
    }
    p.q = p.mem.get();
    p.d = reinterpret_cast<float*>(p.q + q_bytes);  // q_bytes is a multiple of 1,024
    if (p.has_min) p.m = p.d + scales;
    if (t == GgmlType::Q8_0) {  // the common case, without int8_block's per-value work: u = q + 128 = q ^ 0x80
#pragma omp parallel for schedule(static) if (p.N * p.K > (1 << 16))
        for (int64_t tl = 0; tl < p.tiles; ++tl)
            for (int64_t b = 0; b < p.KB; ++b) {
                uint8_t* dst = &p.q[(size_t)((tl * p.KB + b) * kTileBlockBytes)];
                float* d = &p.d[(size_t)((tl * p.KB + b) * kTileN)];
                for (int64_t c = 0; c < kTileN; ++c) {
                    const int64_t n = tl * kTileN + c, half = c / 16, lane = c % 16;
                    if (n >= p.N) {  // padding column: value 0 (d = 0, u = zero)
                        d[c] = 0.0f;
                        for (int64_t g = 0; g < 8; ++g) std::memset(dst + (g * 2 + half) * 64 + lane * 4, 0x80, 4);
                        continue;
                    }
                    const uint8_t* blk = w.data + n * w.row_bytes + b * ti.bytes;
                    uint16_t h;
                    std::memcpy(&h, blk, 2);
                    d[c] = f16_to_f32(h);
                    for (int64_t g = 0; g < 8; ++g) {
                        uint32_t v;
                        std::memcpy(&v, blk + 2 + g * 4, 4);
                        v ^= 0x80808080u;
                        std::memcpy(dst + (g * 2 + half) * 64 + lane * 4, &v, 4);
                    }
                }
            }
        return p;
    }
#pragma omp parallel for schedule(static) if (p.N * p.K > (1 << 16))
    for (int64_t tl = 0; tl < p.tiles; ++tl) {
        std::vector<uint8_t> u((size_t)ti.block);
        std::vector<float> d((size_t)(ti.block / group)), m(d.size());
        for (int64_t c = 0; c < kTileN; ++c) {
            const int64_t n = tl * kTileN + c, half = c / 16, lane = c % 16;
            for (int64_t sb = 0; sb < p.KB / per_block; ++sb) {
                if (n < p.N) int8_block(t, w.data + n * w.row_bytes + sb * ti.bytes, u.data(), d.data(), m.data());
                else {  // padding column: value 0 (d = 0)
                    std::fill(u.begin(), u.end(), (uint8_t)p.zero);
                    std::fill(d.begin(), d.end(), 0.0f);
                    std::fill(m.begin(), m.end(), 0.0f);
                }
                for (int64_t j = 0; j < per_block; ++j) {
                    const int64_t b = sb * per_block + j;
                    uint8_t* dst = &p.q[(size_t)((tl * p.KB + b) * kTileBlockBytes)];
                    for (int64_t g = 0; g < 8; ++g)
                        std::memcpy(dst + (g * 2 + half) * 64 + lane * 4, &u[(size_t)(j * QK + g * 4)], 4);
                    for (int h = 0; h < p.groups; ++h) {
                        const size_t at = (size_t)((tl * p.KB + b) * gs + h * kTileN + c);
                        p.d[at] = d[(size_t)(j * p.groups + h)];
                        if (p.has_min) p.m[at] = m[(size_t)(j * p.groups + h)];
                    }
                }
            }
        }
    }
    return p;
}

namespace {

// ---- the repacked tiles kept across calls (set_int8_pack_cache). Keyed by the blocks' address and shape, valid while
// the storage that keeps those blocks alive lives (quantized blocks are never rewritten in place).
struct PackKey {
    uintptr_t data;
    int64_t rows, row_length;
    uint32_t type;
    bool operator<(const PackKey& o) const {
        return std::tie(data, rows, row_length, type) < std::tie(o.data, o.rows, o.row_length, o.type);
    }
};
struct PackEntry {
    std::weak_ptr<Storage> owner;
    std::shared_ptr<const PackedInt8> packed;
    size_t bytes = 0;
};
struct PackCache {
    std::mutex m;
    std::map<PackKey, PackEntry> entries;
    size_t bytes = 0;
};
PackCache& pack_cache() {
    static PackCache* c = new PackCache();  // outlives every model, even at static destruction
    return *c;
}

// Drops the entries of weights that are gone (c.m held); the bytes freed.
size_t drop_expired(PackCache& c) {
    size_t freed = 0;
    for (auto e = c.entries.begin(); e != c.entries.end();) {
        if (e->second.owner.expired()) {
            freed += e->second.bytes;
            c.bytes -= e->second.bytes;
            e = c.entries.erase(e);
        } else {
            ++e;
        }
    }
    return freed;
}

std::atomic<int>& pack_cache_mode() {
    static std::atomic<int> mode{[] {
        const char* e = std::getenv("NUANCE_INT8_PACK_CACHE");
        const std::string v = e ? e : "";
        return (int)(v == "on" || v == "1" ? Int8PackCache::On
                     : v == "off" || v == "0" ? Int8PackCache::Off
                                               : Int8PackCache::Auto);
    }()};
    return mode;
}

bool keep_pack(const QuantizedWeightView& w) {
    if (w.owner.expired()) return false;  // a view built by hand: nothing tells when its blocks go away
    switch ((Int8PackCache)pack_cache_mode().load()) {
        case Int8PackCache::Off: return false;
        case Int8PackCache::On: return true;
        case Int8PackCache::Auto: break;
    }
    // Q8_0's tiles are 36 bytes per 32 values against the file's 34: kept, and the file's pages are given back,
    // while the kept copies fit the budget for packed weights (core/allocator.h); past it, tiles are made per call.
    if ((GgmlType)w.ggml_type != GgmlType::Q8_0 || !w.file_backed) return false;
    const size_t tiles = (size_t)w.rows * (size_t)((w.row_length + 31) / 32) * 36;
    const size_t budget = packed_weights_budget(), held = int8_pack_cache_bytes() + packed_weights_bytes();
    return budget >= held && budget - held >= tiles;
}

PackKey pack_key(const QuantizedWeightView& w) {
    return PackKey{reinterpret_cast<uintptr_t>(w.data), w.rows, w.row_length, w.ggml_type};
}

}  // namespace

// The weight's tiles: from the cache, or packed now (and kept when keep_pack says so).
std::shared_ptr<const PackedInt8> packed_int8(const QuantizedWeightView& w) {
    if (!keep_pack(w)) return std::make_shared<const PackedInt8>(pack_int8(w, false));
    PackCache& c = pack_cache();
    const PackKey key = pack_key(w);
    {
        std::lock_guard<std::mutex> lock(c.m);
        auto it = c.entries.find(key);
        if (it != c.entries.end()) {
            if (!it->second.owner.expired()) return it->second.packed;
            c.bytes -= it->second.bytes;
            c.entries.erase(it);
        }
        drop_expired(c);
    }
    auto p = std::make_shared<const PackedInt8>(pack_int8(w, true));  // outside the lock: it runs on every thread
    release_file_pages(w);
    std::lock_guard<std::mutex> lock(c.m);
    auto [it, added] = c.entries.emplace(key, PackEntry{w.owner, p, p->bytes});
    if (added) c.bytes += it->second.bytes;
    return it->second.packed;
}


void set_int8_pack_cache(Int8PackCache mode) {
    pack_cache_mode() = (int)mode;
    if (mode == Int8PackCache::Off) clear_int8_pack_cache();
}
Int8PackCache int8_pack_cache() { return (Int8PackCache)pack_cache_mode().load(); }

size_t int8_pack_cache_bytes() {
    PackCache& c = pack_cache();
    std::lock_guard<std::mutex> lock(c.m);
    return c.bytes;
}

size_t prune_int8_pack_cache() {
    PackCache& c = pack_cache();
    std::lock_guard<std::mutex> lock(c.m);
    return drop_expired(c);
}

void clear_int8_pack_cache() {
    PackCache& c = pack_cache();
    std::lock_guard<std::mutex> lock(c.m);
    c.entries.clear();
    c.bytes = 0;
}

size_t release_int8_pack(const Tensor& w) {
    const auto v = quantized_weight_view(w);
    if (!v) return 0;
    PackCache& c = pack_cache();
    std::lock_guard<std::mutex> lock(c.m);
    size_t n = 0;
    // Every entry over these blocks (the handle, or narrowed views of some of its rows).
    const uintptr_t begin = reinterpret_cast<uintptr_t>(v->data), end = begin + (uintptr_t)(v->rows * v->row_bytes);
    for (auto e = c.entries.begin(); e != c.entries.end();) {
        if (e->first.data >= begin && e->first.data < end) {
            n += e->second.bytes;
            c.bytes -= e->second.bytes;
            e = c.entries.erase(e);
        } else {
            ++e;
        }
    }
    return n;
}

}  // namespace nuance::cpu
