// Template part of dnnl_cache.h.
#pragma once
#include <memory>
#include <unordered_map>

namespace nuance::cpu {

template <class Prim>
Prim& cached_primitive(const std::string& key, const std::function<Prim()>& make) {
    thread_local std::unordered_map<std::string, std::unique_ptr<Prim>> cache;
    auto it = cache.find(key);
    if (it != cache.end()) return *it->second;
    if (cache.size() > 4096) cache.clear();  // shapes that never repeat (e.g. growing batches) must not pile up
    auto p = std::make_unique<Prim>(make());
    Prim& ref = *p;
    cache.emplace(key, std::move(p));
    return ref;
}

}  // namespace nuance::cpu
