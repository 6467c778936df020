#include "backends/cpu/dnnl_cache.h"

#include <map>
#include <mutex>

#include "backends/cpu/dnnl_context.h"
#include "backends/cpu/quantized_matmul.h"
#include "core/allocator.h"
#include "core/quantized_weight.h"

namespace nuance::cpu {

void key_add(std::string& key, const std::vector<int64_t>& v) {
    for (int64_t x : v) {
        key += std::to_string(x);
        key += ',';
    }
    key += ';';
}

void key_add(std::string& key, const dnnl::memory::desc& md) {
    const dnnl_memory_desc_t& d = md.data;
    key += std::to_string((int)d.data_type);
    key += ':';
    key_add(key, std::vector<int64_t>(d.dims, d.dims + d.ndims));
    key += std::to_string((int)d.format_kind);
    if (d.format_kind == dnnl_blocked) {
        const auto& b = d.format_desc.blocking;
        key_add(key, std::vector<int64_t>(b.strides, b.strides + d.ndims));
        key_add(key, std::vector<int64_t>(b.inner_blks, b.inner_blks + b.inner_nblks));
        key_add(key, std::vector<int64_t>(b.inner_idxs, b.inner_idxs + b.inner_nblks));
    }
    key += '|';
}

MatmulPrimitive& cached_matmul(const dnnl::memory::desc& a_md, const dnnl::memory::desc& b_md,
                               const dnnl::memory::desc& bias_md, const dnnl::memory::desc& c_md) {
    std::string key = "matmul";
    key_add(key, a_md);
    key_add(key, b_md);
    key_add(key, bias_md);
    key_add(key, c_md);
    return cached_primitive<MatmulPrimitive>(key, [&] {
        auto& eng = engine();
        dnnl::matmul::primitive_desc pd = bias_md.get_size() != 0
            ? dnnl::matmul::primitive_desc(dnnl::matmul::desc(a_md, b_md, bias_md, c_md), eng)
            : dnnl::matmul::primitive_desc(dnnl::matmul::desc(a_md, b_md, c_md), eng);
        return MatmulPrimitive{pd, dnnl::matmul(pd)};
    });
}

namespace {

struct Packed {
    std::weak_ptr<Storage> source;
    dnnl::memory mem;
    std::shared_ptr<uint8_t> buffer;  // mem's bytes (core/allocator.h: large_buffer)
    size_t bytes = 0;
};

struct PackedCache {
    std::mutex m;
    std::map<std::string, Packed> entries;
    size_t bytes = 0;
    // Weights that did not fit the budget (core/allocator.h: packed_weights_budget) and are packed per call.
    std::map<std::string, std::pair<std::weak_ptr<Storage>, size_t>> over_budget;
};

PackedCache& packed_cache() {
    static PackedCache* c = new PackedCache();  // outlives every model, even at static destruction
    return *c;
}

// Drops the entries of weights that are gone (c.m held); the bytes freed.
size_t drop_expired(PackedCache& c) {
    size_t freed = 0;
    for (auto e = c.entries.begin(); e != c.entries.end();) {
        if (e->second.source.expired()) {
            freed += e->second.bytes;
            c.bytes -= e->second.bytes;
            e = c.entries.erase(e);
        } else {
            ++e;
        }
    }
    for (auto e = c.over_budget.begin(); e != c.over_budget.end();) {
        if (e->second.first.expired()) e = c.over_budget.erase(e);
        else ++e;
    }
    return freed;
}

}  // namespace


namespace {

// The kept (or, over the budget, this call's) copy of `w` under `key` in layout `want`; `produce` writes it.
PackedWeight keep_or_make(const Tensor& w, const std::string& key, const dnnl::memory::desc& want,
                          const std::function<void(dnnl::memory&)>& produce) {
    auto& eng = engine();
    PackedCache& c = packed_cache();
    std::lock_guard<std::mutex> lock(c.m);
    const UncachedScope one_off;  // produce()'s temporaries (conversions, plain copies) are not asked for again
    auto it = c.entries.find(key);
    if (it != c.entries.end()) {
        if (!it->second.source.expired() && it->second.mem.get_desc() == want)
            return PackedWeight{it->second.mem, it->second.buffer};
        c.bytes -= it->second.bytes;
        c.entries.erase(it);
    }
    drop_expired(c);  // before adding one
    // Over the budget: this call's copy only, from the caching allocator; the weight's file pages stay mapped (the page
    // cache keeps or re-reads them), so a model larger than memory runs instead of being killed.
    const size_t bytes = want.get_size();
    const size_t budget = packed_weights_budget(), held = c.bytes + int8_pack_cache_bytes();
    const bool keep = budget >= held && budget - held >= bytes;
    if (!keep) {
        std::shared_ptr<uint8_t> tmp(static_cast<uint8_t*>(cached_alloc(bytes)),
                                     [bytes](uint8_t* q) { cached_free(q, bytes); });
        dnnl::memory dst(want, eng, tmp.get());
        produce(dst);
        c.over_budget[key] = {w.storage(), bytes};
        return PackedWeight{dst, tmp};
    }
    c.over_budget.erase(key);
    std::shared_ptr<uint8_t> buffer = large_buffer(bytes);  // huge pages: fewer faults, fewer TLB misses
    dnnl::memory dst(want, eng, buffer.get());
    produce(dst);
    release_file_pages(w);
    Packed p{w.storage(), dst, buffer, bytes};
    c.bytes += p.bytes;
    c.entries.emplace(key, p);
    return PackedWeight{dst, buffer};
}

std::string weight_key(const Tensor& w) { return std::to_string(reinterpret_cast<uintptr_t>(w.raw())); }

}  // namespace

PackedWeight packed_weights(const Tensor& w, const dnnl::memory::desc& plain, const dnnl::memory::desc& want) {
    auto& eng = engine();
    const DType need = plain.data_type() == dnnl::memory::data_type::bf16 ? DType::BF16 : DType::F32;
    NUANCE_CHECK(w.is_contiguous(), "packed_weights: weight ", w.str(), " must be contiguous");
    if (w.dtype() == need && plain == want) return PackedWeight{dnnl::memory(plain, eng, w.raw()), nullptr};
    return keep_or_make(w, weight_key(w), want, [&](dnnl::memory& dst) {
        // oneDNN's reorder converts f32 <-> bf16 itself (training's f32 master weights into bf16 blocks, in one
        // pass); other dtypes (f16 files) are converted first.
        const bool direct = w.dtype() == need || w.dtype() == DType::F32 || w.dtype() == DType::BF16;
        const Tensor src_t = direct ? w : w.to(need);
        dnnl::memory::desc src_md = plain;  // the same plain layout in the source's dtype (oneDNN 2.x's C struct)
        src_md.data.data_type = src_t.dtype() == DType::BF16 ? dnnl_bf16 : dnnl_f32;
        dnnl::memory src(src_md, eng, src_t.raw());
        dnnl::reorder(src, dst).execute(stream(), src, dst);
        stream().wait();
    });
}

PackedWeight derived_weights(const Tensor& w, const char* kind, const dnnl::memory::desc& plain,
                             const dnnl::memory::desc& want, const std::function<void(void*)>& fill) {
    auto& eng = engine();
    return keep_or_make(w, weight_key(w) + "/" + kind, want, [&](dnnl::memory& dst) {
        if (plain == want) {
            fill(dst.get_data_handle());
            return;
        }
        const size_t bytes = plain.get_size();
        std::shared_ptr<uint8_t> tmp(static_cast<uint8_t*>(cached_alloc(bytes)),
                                     [bytes](uint8_t* q) { cached_free(q, bytes); });
        fill(tmp.get());
        dnnl::memory src(plain, eng, tmp.get());
        dnnl::reorder(src, dst).execute(stream(), src, dst);
        stream().wait();
    });
}

void clear_packed_weights() {
    PackedCache& c = packed_cache();
    std::lock_guard<std::mutex> lock(c.m);
    c.entries.clear();
    c.over_budget.clear();
    c.bytes = 0;
}

size_t prune_packed_weights() {
    PackedCache& c = packed_cache();
    std::lock_guard<std::mutex> lock(c.m);
    return drop_expired(c);
}

size_t packed_weights_over_budget_bytes() {
    PackedCache& c = packed_cache();
    std::lock_guard<std::mutex> lock(c.m);
    size_t n = 0;
    for (const auto& [k, e] : c.over_budget)
        if (!e.first.expired()) n += e.second;
    return n;
}

size_t release_packed_weight(const Tensor& w) {
    if (!w.defined() || !w.storage()) return 0;
    PackedCache& c = packed_cache();
    std::lock_guard<std::mutex> lock(c.m);
    const std::string key = weight_key(w), derived = key + "/";
    size_t n = 0;
    for (auto it = c.entries.lower_bound(key); it != c.entries.end();) {  // the packed copy, then the derived ones
        if (it->first != key && it->first.compare(0, derived.size(), derived) != 0) break;
        n += it->second.bytes;
        c.bytes -= it->second.bytes;
        it = c.entries.erase(it);
    }
    return n;
}

size_t packed_weights_bytes() {
    PackedCache& c = packed_cache();
    std::lock_guard<std::mutex> lock(c.m);
    return c.bytes;
}

}  // namespace nuance::cpu
