// Shared helpers of the libFuzzer targets (fuzz/README.md).
//
// The contract every target checks: hostile bytes may make a parser throw nuance::Error, and nothing else. A crash,
// a sanitizer report, a hang, an allocation over libFuzzer's -malloc_limit_mb, or any other exception escaping
// (std::bad_alloc, nlohmann::json::type_error, ...) is a finding.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>

#include "core/error.h"
#include "core/tensor.h"

namespace nuance::fuzz {

// The input in a Storage of exactly `size` bytes (its own heap block, so ASan sees any read past the end).
inline std::shared_ptr<Storage> exact_storage(const uint8_t* data, size_t size) {
    std::shared_ptr<uint8_t[]> buf(new uint8_t[size ? size : 1]);
    if (size) std::memcpy(buf.get(), data, size);
    uint8_t* p = buf.get();
    return Storage::wrap(p, size, std::shared_ptr<void>(buf, p));
}

// Reads the first and the last byte a tensor view can reach (offset + sum of (size-1)*stride), so a view that a
// loader let point outside its storage is an ASan report rather than a silent success.
inline uint8_t touch(const Tensor& t) {
    if (!t.defined() || t.numel() == 0) return 0;
    int64_t last = 0;
    for (size_t d = 0; d < t.shape().size(); ++d) last += (t.shape()[d] - 1) * t.strides()[d];
    const size_t es = dtype_size(t.dtype());
    const volatile uint8_t* first = static_cast<const uint8_t*>(t.raw());
    const volatile uint8_t* end = first + (size_t)last * es + (es - 1);
    return (uint8_t)(first[0] ^ *end);
}

// Runs `f` on hostile input: nuance::Error is an accepted outcome, anything else propagates (a finding).
template <class F>
void expect_ok_or_error(F&& f) {
    try {
        f();
    } catch (const Error&) {
    }
}

}  // namespace nuance::fuzz
