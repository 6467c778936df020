// Tensor: a reference-counted, strided view of typed memory (owned, or mmap'd from a weight file).
// Shapes are outermost-first ({N, C, H, W}), sizes int64_t, row-major (design.md §2).
#pragma once
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

#include "core/device.h"
#include "core/dtype.h"
#include "core/error.h"

namespace nuance {

using Shape = std::vector<int64_t>;
std::string shape_str(const Shape& s);  // "[2, 4, 16, 24]"
int64_t shape_numel(const Shape& s);    // checked against overflow

// Raw bytes: 64-byte aligned heap memory, or a window into memory someone else owns (mmap).
class Storage {
public:
    static std::shared_ptr<Storage> allocate(size_t bytes);
    // file_backed: a read-only private mapping of a file, whose pages may be dropped and re-read at will.
    static std::shared_ptr<Storage> wrap(void* data, size_t bytes, std::shared_ptr<void> keepalive,
                                         bool file_backed = false);
    // Memory of another device (`handle`: the device pointer), kept alive by `keepalive`: made by that device's
    // backend (DeviceMemory::allocate). The host never dereferences it.
    static std::shared_ptr<Storage> wrap_device(void* handle, size_t bytes, std::shared_ptr<void> keepalive,
                                                Device device);
    ~Storage();
    uint8_t* data() const { return data_; }
    size_t size() const { return size_; }
    bool owned() const { return owned_; }
    bool file_backed() const { return file_backed_; }
    Device device() const { return device_; }
    const std::shared_ptr<void>& keepalive() const { return keepalive_; }
    Storage(const Storage&) = delete;
    Storage& operator=(const Storage&) = delete;

private:
    Storage() = default;
    uint8_t* data_ = nullptr;
    size_t size_ = 0;
    bool owned_ = false;
    bool file_backed_ = false;
    Device device_;
    std::shared_ptr<void> keepalive_;
};

class Tensor {
public:
    Tensor() = default;  // undefined tensor: defined() == false

    // Creation. empty() leaves memory uninitialised.
    static Tensor empty(const Shape& shape, DType dtype = DType::F32);
    static Tensor empty(const Shape& shape, DType dtype, Device device);  // through the device's backend
    static Tensor zeros(const Shape& shape, DType dtype = DType::F32);
    static Tensor full(const Shape& shape, float value);
    static Tensor scalar(float value) { return full({}, value); }
    static Tensor from_vector(const std::vector<float>& v, const Shape& shape);
    static Tensor from_ids(const std::vector<int64_t>& v, const Shape& shape);
    static Tensor from_bytes(const void* data, const Shape& shape, DType dtype);  // copies
    static Tensor from_storage(std::shared_ptr<Storage> s, size_t byte_offset, const Shape& shape, DType dtype);
    static Tensor arange(int64_t n);  // F32 0..n-1
    // Same shape and, when `like` is dense, the same memory layout (channels-last stays channels-last).
    static Tensor empty_like(const Tensor& like, DType dtype);
    static Tensor empty_channels_last(const Shape& nchw, DType dtype = DType::F32);

    bool defined() const { return storage_ != nullptr; }
    const Shape& shape() const { return shape_; }
    const Shape& strides() const { return strides_; }  // in elements
    int64_t dim() const { return (int64_t)shape_.size(); }
    int64_t size(int64_t d) const;  // negative d counts from the end
    int64_t numel() const { return shape_numel(shape_); }
    DType dtype() const { return dtype_; }
    size_t nbytes() const { return (size_t)numel() * dtype_size(dtype_); }
    bool is_contiguous() const;
    // Dense: the elements fill a gap-free block of memory in some dimension order (a permuted contiguous tensor,
    // e.g. channels-last). Elementwise kernels run over such memory flat and give results the same layout.
    bool is_dense() const;
    bool is_channels_last() const;  // rank 4, [N, C, H, W] stored as N, H, W, C
    // Dimension order from outermost to innermost in memory (ties keep the logical order).
    std::vector<int64_t> memory_order() const;
    const std::shared_ptr<Storage>& storage() const { return storage_; }
    Device device() const { return storage_ ? storage_->device() : Device::cpu(); }
    // The same view (offset, shape, strides, dtype) over another storage of at least the bytes it spans: for
    // backends, which re-tag memory between a device and the host view of it.
    Tensor with_storage(std::shared_ptr<Storage> s) const;
    int64_t offset() const { return offset_; }  // in elements

    // Pointer to the first element; T must match dtype (float for F32, uint16_t for F16/BF16, int64_t for I64 ...).
    // Host memory only: on another device both throw (refuse_host_access, naming the op and the device).
    template <class T> T* data() const { check_access(sizeof(T)); return reinterpret_cast<T*>(raw()); }
    void* raw() const {
        if (!storage_->device().is_cpu()) [[unlikely]] refuse_host_access(*this, storage_->device());
        return storage_->data() + (size_t)offset_ * dtype_size(dtype_);
    }

    // Copies / conversions (always return new memory unless noted).
    Tensor contiguous() const;  // returns *this when already contiguous
    Tensor channels_last() const;  // rank 4; returns *this when already channels-last
    Tensor clone() const;
    Tensor to(DType dtype) const;  // returns *this when dtype already matches
    Tensor to(Device device) const;  // returns *this when already there; else a contiguous copy on `device`
    Tensor f32() const { return to(DType::F32); }
    // These three copy to the host first when the tensor is on another device.
    std::vector<float> to_vector() const;  // any float dtype -> f32 values, row-major
    std::vector<int64_t> to_ids() const;   // any integer dtype -> int64 values
    float item() const;                    // numel()==1
    void copy_(const Tensor& src);         // same shape; converts dtype
    void fill_(float v);

    // Views (share memory).
    Tensor view(const Shape& shape) const;     // requires contiguous; one -1 allowed
    Tensor reshape(const Shape& shape) const;  // view if possible else copy
    Tensor permute(const std::vector<int64_t>& dims) const;
    Tensor transpose(int64_t a, int64_t b) const;
    Tensor slice(int64_t dim, int64_t start, int64_t end, int64_t step = 1) const;
    Tensor select(int64_t dim, int64_t index) const;  // removes dim
    Tensor narrow(int64_t dim, int64_t start, int64_t len) const { return slice(dim, start, start + len); }
    Tensor unsqueeze(int64_t dim) const;
    Tensor squeeze(int64_t dim) const;
    Tensor flatten(int64_t start = 0, int64_t end = -1) const;
    Tensor expand(const Shape& shape) const;  // broadcast view (stride 0)
    Tensor operator[](int64_t i) const { return select(0, i); }

    std::string str() const;  // "F32[2, 4, 8, 8]"

private:
    void check_access(size_t elem_size) const;
    std::shared_ptr<Storage> storage_;
    int64_t offset_ = 0;
    Shape shape_, strides_;
    DType dtype_ = DType::F32;
};

Shape contiguous_strides(const Shape& shape);
int64_t normalize_dim(int64_t d, int64_t ndim);  // checks range

}  // namespace nuance
