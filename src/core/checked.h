// Overflow-checked size arithmetic for every count, size, offset and product that comes from a file or a request
// (design.md §3: a length field is hostile until compared with the file size). The bool forms let each caller
// phrase its own error (naming its file and field); the throwing forms are for callers happy with a generic one.
#pragma once
#include <cstdint>
#include <type_traits>

#include "core/error.h"
#include "core/tensor.h"

namespace nuance {

// out = a * b / a + b; false (and out unspecified) when the exact result does not fit in T.
template <class T>
[[nodiscard]] constexpr bool checked_mul(T a, T b, T* out) {
    static_assert(std::is_integral_v<T>);
    return !__builtin_mul_overflow(a, b, out);
}
template <class T>
[[nodiscard]] constexpr bool checked_add(T a, T b, T* out) {
    static_assert(std::is_integral_v<T>);
    return !__builtin_add_overflow(a, b, out);
}

// [offset, offset + len) lies inside [0, size): the overflow-free way to test a window against a buffer.
[[nodiscard]] constexpr bool range_within(uint64_t offset, uint64_t len, uint64_t size) {
    return offset <= size && len <= size - offset;
}

// Throwing forms: InvalidArgument "<what>: a * b overflows".
template <class T>
T mul_or_throw(T a, T b, const char* what) {
    T r{};
    if (!checked_mul(a, b, &r)) fail(ErrorCode::InvalidArgument, what, ": ", a, " * ", b, " overflows");
    return r;
}
template <class T>
T add_or_throw(T a, T b, const char* what) {
    T r{};
    if (!checked_add(a, b, &r)) fail(ErrorCode::InvalidArgument, what, ": ", a, " + ", b, " overflows");
    return r;
}

// Shapes from files. numel: false for a negative dimension, or when the product of the non-zero dimensions (the
// largest contiguous stride, so a zero dimension cannot hide an overflow) does not fit in int64. nbytes: also
// numel * dtype_size(dtype) must fit in int64. Tensor::empty / from_storage / from_bytes use these, so a wrapped
// product can never size an allocation.
[[nodiscard]] bool shape_numel_checked(const Shape& s, int64_t* numel);
[[nodiscard]] bool shape_nbytes_checked(const Shape& s, DType dtype, int64_t* nbytes);
int64_t shape_nbytes(const Shape& s, DType dtype);  // throws InvalidArgument naming the shape and dtype

}  // namespace nuance
