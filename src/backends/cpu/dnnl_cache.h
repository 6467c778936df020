// Caches around oneDNN (issue 5: "primitives created once, weights reordered once").
// - Primitives: building a primitive descriptor costs tens of microseconds and an attention layer runs hundreds of
//   small products, so each thread keeps the primitives it built, keyed by a string of every descriptor field.
// - Packed weights: convolutions and products run fastest with weights in a blocked layout of oneDNN's choosing.
//   A weight tensor is reordered into that layout the first time it is used and the packed copy is kept for as long
//   as the tensor's storage lives (weak reference: a freed or reloaded weight is repacked, never served stale).
//   Weights edited in place (e.g. a LoRA merged into a loaded model) need `clear_packed_weights()`. Kept copies stay
//   within core/allocator.h's packed_weights_budget(); a weight that does not fit is packed per call instead.
#pragma once
#include <functional>
#include <memory>
#include <string>

#include <oneapi/dnnl/dnnl.hpp>

#include "core/tensor.h"

namespace nuance::cpu {

// Appends a descriptor's data type, dims and strides (or blocking) to a cache key.
void key_add(std::string& key, const dnnl::memory::desc& md);
void key_add(std::string& key, const std::vector<int64_t>& v);

// Thread-local primitive cache: returns the primitive stored under `key`, building it with `make` the first time.
template <class Prim>
Prim& cached_primitive(const std::string& key, const std::function<Prim()>& make);

// A matmul primitive and its descriptor, cached per thread by its memory descriptors (bias_md empty: no bias;
// weights may be format `any`, then pd.weights_desc() is the layout to pack them in).
struct MatmulPrimitive {
    dnnl::matmul::primitive_desc pd;
    dnnl::matmul prim;
};
MatmulPrimitive& cached_matmul(const dnnl::memory::desc& a_md, const dnnl::memory::desc& b_md,
                               const dnnl::memory::desc& bias_md, const dnnl::memory::desc& c_md);

// The weight tensor `w` (any float dtype) as described by `plain` (its plain layout in the compute dtype) but in
// layout `want`: converted and reordered once, kept while w's storage lives (one packed copy per weight: a new
// layout replaces the old). Wraps `w` itself when no conversion is needed. A weight mmap'd from a file gives its
// pages back once packed (re-read from the page cache if ever needed again). The packed copy sits in huge pages
// (core/allocator.h: large_buffer); `keep` holds it for the caller while the primitive runs, even if the cache
// drops it meanwhile (clear_packed_weights from another thread).
struct PackedWeight {
    dnnl::memory mem;
    std::shared_ptr<const void> keep;  // empty when mem wraps w itself
};
PackedWeight packed_weights(const Tensor& w, const dnnl::memory::desc& plain, const dnnl::memory::desc& want);
// A copy of `w` transformed by the caller (e.g. Winograd-transformed kernels), kept like a packed weight, under w and
// `kind`, within the same budget: `fill` writes it in layout `plain`, then oneDNN reorders it into `want` (or fill
// writes `want` itself when the two are equal). Over the budget: this call's copy only.
PackedWeight derived_weights(const Tensor& w, const char* kind, const dnnl::memory::desc& plain,
                             const dnnl::memory::desc& want, const std::function<void(void*)>& fill);
void clear_packed_weights();
size_t release_packed_weight(const Tensor& w);  // the cached packed copy of `w` (0 when there is none)
size_t packed_weights_bytes();
// Frees the packed copies of weights that are gone (a model dropped); otherwise that happens at the next packing.
// Returns the bytes freed.
size_t prune_packed_weights();
// Bytes of the weights that did not fit core/allocator.h's packed_weights_budget() and are packed on every call
// (0 while every packed copy is kept).
size_t packed_weights_over_budget_bytes();

}  // namespace nuance::cpu

#include "backends/cpu/dnnl_cache_impl.h"
