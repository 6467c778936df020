#include "core/tensor.h"
#include "core/quantized_weight.h"
#include "core/op_stats.h"

#include "backends/cpu/vec_math.h"
#include "core/allocator.h"
#include "core/checked.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <immintrin.h>
#include <new>

namespace nuance {

std::string shape_str(const Shape& s) { return str(s); }

bool shape_numel_checked(const Shape& s, int64_t* numel) {
    int64_t extent = 1;  // product of the non-zero dimensions: contiguous_strides() must be able to hold it
    bool zero = false;
    for (int64_t d : s) {
        if (d < 0) return false;
        if (d == 0) zero = true;
        else if (!checked_mul(extent, d, &extent)) return false;
    }
    *numel = zero ? 0 : extent;
    return true;
}

int64_t shape_numel(const Shape& s) {
    int64_t n = 0;
    if (!shape_numel_checked(s, &n)) {
        for (int64_t d : s) NUANCE_CHECK(d >= 0, "negative dimension in shape ", s);
        fail(ErrorCode::InvalidArgument, "shape ", s, " has too many elements");
    }
    return n;
}

bool shape_nbytes_checked(const Shape& s, DType dtype, int64_t* nbytes) {
    int64_t n = 0;
    return shape_numel_checked(s, &n) && checked_mul(n, (int64_t)dtype_size(dtype), nbytes);
}

int64_t shape_nbytes(const Shape& s, DType dtype) {
    int64_t b = 0;
    if (!shape_nbytes_checked(s, dtype, &b)) {
        (void)shape_numel(s);  // the precise complaint for negative or too many elements
        fail(ErrorCode::InvalidArgument, "shape ", s, " of ", dtype_name(dtype), " needs more than 2^63 bytes");
    }
    return b;
}

Shape contiguous_strides(const Shape& shape) {
    Shape st(shape.size());
    int64_t s = 1;
    for (int64_t i = (int64_t)shape.size() - 1; i >= 0; --i) {
        st[i] = s;
        s *= std::max<int64_t>(shape[i], 1);
    }
    return st;
}

int64_t normalize_dim(int64_t d, int64_t ndim) {
    const int64_t r = d < 0 ? d + ndim : d;
    NUANCE_CHECK(r >= 0 && r < ndim, "dimension ", d, " out of range for a tensor of rank ", ndim);
    return r;
}

// ---- Storage ----
std::shared_ptr<Storage> Storage::allocate(size_t bytes) {
    auto s = std::shared_ptr<Storage>(new Storage());
    s->data_ = static_cast<uint8_t*>(cached_alloc(bytes));
    s->size_ = bytes;
    s->owned_ = true;
    return s;
}

std::shared_ptr<Storage> Storage::wrap(void* data, size_t bytes, std::shared_ptr<void> keepalive, bool file_backed) {
    auto s = std::shared_ptr<Storage>(new Storage());
    s->file_backed_ = file_backed;
    s->data_ = static_cast<uint8_t*>(data);
    s->size_ = bytes;
    s->owned_ = false;
    s->keepalive_ = std::move(keepalive);
    return s;
}

std::shared_ptr<Storage> Storage::wrap_device(void* handle, size_t bytes, std::shared_ptr<void> keepalive,
                                              Device device) {
    auto s = wrap(handle, bytes, std::move(keepalive));
    s->device_ = device;
    return s;
}

Storage::~Storage() {
    if (owned_) cached_free(data_, size_);
}

// ---- creation ----
Tensor Tensor::empty(const Shape& shape, DType dtype) {
    Tensor t;
    t.storage_ = Storage::allocate((size_t)shape_nbytes(shape, dtype));
    t.shape_ = shape;
    t.strides_ = contiguous_strides(shape);
    t.dtype_ = dtype;
    return t;
}

Tensor Tensor::empty(const Shape& shape, DType dtype, Device device) {
    if (device.is_cpu()) return empty(shape, dtype);
    DeviceMemory* mem = device_memory(device.type);
    NUANCE_CHECK(mem, "empty: no backend is registered for device ", device.str());
    Tensor t;
    t.storage_ = mem->allocate((size_t)shape_nbytes(shape, dtype), device);
    NUANCE_CHECK_CODE(t.storage_ && t.storage_->device() == device, Internal, "empty: the backend of ",
                      device.str(), " allocated on another device");
    t.shape_ = shape;
    t.strides_ = contiguous_strides(shape);
    t.dtype_ = dtype;
    return t;
}

Tensor Tensor::with_storage(std::shared_ptr<Storage> s) const {
    NUANCE_CHECK(s != nullptr && storage_ != nullptr, "with_storage: undefined tensor or storage");
    NUANCE_CHECK(s->size() >= storage_->size(), "with_storage: a storage of ", s->size(), " bytes for a view of ",
                 storage_->size());
    Tensor t = *this;
    t.storage_ = std::move(s);
    return t;
}

Tensor Tensor::zeros(const Shape& shape, DType dtype) {
    Tensor t = empty(shape, dtype);
    if (t.nbytes()) std::memset(t.raw(), 0, t.nbytes());
    return t;
}

Tensor Tensor::full(const Shape& shape, float value) {
    Tensor t = empty(shape, DType::F32);
    std::fill_n(t.data<float>(), t.numel(), value);
    return t;
}

Tensor Tensor::from_vector(const std::vector<float>& v, const Shape& shape) {
    NUANCE_CHECK((int64_t)v.size() == shape_numel(shape), "from_vector: ", v.size(), " values for shape ", shape);
    Tensor t = empty(shape, DType::F32);
    std::copy(v.begin(), v.end(), t.data<float>());
    return t;
}

Tensor Tensor::from_ids(const std::vector<int64_t>& v, const Shape& shape) {
    NUANCE_CHECK((int64_t)v.size() == shape_numel(shape), "from_ids: ", v.size(), " values for shape ", shape);
    Tensor t = empty(shape, DType::I64);
    std::copy(v.begin(), v.end(), t.data<int64_t>());
    return t;
}

Tensor Tensor::from_bytes(const void* data, const Shape& shape, DType dtype) {
    Tensor t = empty(shape, dtype);
    if (t.nbytes()) std::memcpy(t.raw(), data, t.nbytes());
    return t;
}

Tensor Tensor::from_storage(std::shared_ptr<Storage> s, size_t byte_offset, const Shape& shape, DType dtype) {
    NUANCE_CHECK(s != nullptr, "from_storage: null storage");
    const size_t es = dtype_size(dtype);
    const uint64_t need = (uint64_t)shape_nbytes(shape, dtype);
    NUANCE_CHECK(byte_offset % es == 0, "from_storage: byte offset ", byte_offset, " not aligned to ", dtype_name(dtype));
    NUANCE_CHECK(range_within(byte_offset, need, s->size()), "from_storage: ", need,
                 " bytes at offset ", byte_offset, " exceed a storage of ", s->size(), " bytes");
    Tensor t;
    t.storage_ = std::move(s);
    t.offset_ = (int64_t)(byte_offset / es);
    t.shape_ = shape;
    t.strides_ = contiguous_strides(shape);
    t.dtype_ = dtype;
    return t;
}

Tensor Tensor::arange(int64_t n) {
    Tensor t = empty({n}, DType::F32);
    float* p = t.data<float>();
    for (int64_t i = 0; i < n; ++i) p[i] = (float)i;
    return t;
}

// ---- properties ----
int64_t Tensor::size(int64_t d) const { return shape_[normalize_dim(d, dim())]; }

std::vector<int64_t> Tensor::memory_order() const {
    std::vector<int64_t> order(shape_.size());
    for (size_t i = 0; i < order.size(); ++i) order[i] = (int64_t)i;
    std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) {
        // size-1 dims carry no layout: keep them where they are relative to each other, outermost
        const bool a1 = shape_[a] == 1, b1 = shape_[b] == 1;
        if (a1 != b1) return a1;
        return strides_[a] > strides_[b];
    });
    return order;
}

bool Tensor::is_dense() const {
    int64_t expect = 1;
    const std::vector<int64_t> order = memory_order();
    for (int64_t i = (int64_t)order.size() - 1; i >= 0; --i) {
        const int64_t d = order[i];
        if (shape_[d] == 1) continue;
        if (strides_[d] != expect) return false;
        expect *= shape_[d];
    }
    return true;
}

bool Tensor::is_channels_last() const {
    if (dim() != 4) return false;
    const int64_t C = shape_[1], H = shape_[2], W = shape_[3];
    return (C == 1 || strides_[1] == 1) && (W == 1 || strides_[3] == C) && (H == 1 || strides_[2] == W * C) &&
           (shape_[0] == 1 || strides_[0] == H * W * C);
}

Tensor Tensor::empty_like(const Tensor& like, DType dtype) {
    const Device dev = like.device();
    if (!like.is_dense() || like.is_contiguous()) return empty(like.shape_, dtype, dev);
    Tensor t = empty(like.shape_, dtype, dev);  // the storage; the strides follow `like`
    t.shape_ = like.shape_;
    t.strides_ = like.strides_;
    t.dtype_ = dtype;
    return t;
}

Tensor Tensor::empty_channels_last(const Shape& s, DType dtype) {
    NUANCE_CHECK(s.size() == 4, "empty_channels_last: need [N, C, H, W], got ", s);
    return empty({s[0], s[2], s[3], s[1]}, dtype).permute({0, 3, 1, 2});
}

Tensor Tensor::channels_last() const {
    NUANCE_CHECK(dim() == 4, "channels_last: need [N, C, H, W], got ", str());
    if (is_channels_last()) return *this;
    Tensor t = empty({shape_[0], shape_[2], shape_[3], shape_[1]}, dtype_, device()).permute({0, 3, 1, 2});
    t.copy_(*this);
    return t;
}

bool Tensor::is_contiguous() const {
    int64_t s = 1;
    for (int64_t i = dim() - 1; i >= 0; --i) {
        if (shape_[i] != 1 && strides_[i] != s) return false;
        s *= shape_[i];
    }
    return true;
}

void Tensor::check_access(size_t elem_size) const {
    NUANCE_ASSERT(defined(), "access to an undefined tensor");
    NUANCE_ASSERT(elem_size == dtype_size(dtype_), "data<T>() size mismatch for ", dtype_name(dtype_));
}

std::string Tensor::str() const { return std::string(dtype_name(dtype_)) + shape_str(shape_); }

// ---- element access helpers ----
namespace {
inline double load_as_double(const uint8_t* p, DType t) {
    switch (t) {
        case DType::F32: { float v; std::memcpy(&v, p, 4); return v; }
        case DType::F16: { uint16_t v; std::memcpy(&v, p, 2); return f16_to_f32(v); }
        case DType::BF16: { uint16_t v; std::memcpy(&v, p, 2); return bf16_to_f32(v); }
        case DType::F64: { double v; std::memcpy(&v, p, 8); return v; }
        case DType::I64: { int64_t v; std::memcpy(&v, p, 8); return (double)v; }
        case DType::I32: { int32_t v; std::memcpy(&v, p, 4); return v; }
        case DType::I16: { int16_t v; std::memcpy(&v, p, 2); return v; }
        case DType::I8: return (double)*reinterpret_cast<const int8_t*>(p);
        case DType::U8: case DType::Bool: return *p;
    }
    return 0;
}

inline void store_from_double(uint8_t* p, DType t, double v) {
    switch (t) {
        case DType::F32: { float f = (float)v; std::memcpy(p, &f, 4); return; }
        case DType::F16: { uint16_t h = f32_to_f16((float)v); std::memcpy(p, &h, 2); return; }
        case DType::BF16: { uint16_t h = f32_to_bf16((float)v); std::memcpy(p, &h, 2); return; }
        case DType::F64: std::memcpy(p, &v, 8); return;
        case DType::I64: { int64_t i = (int64_t)v; std::memcpy(p, &i, 8); return; }
        case DType::I32: { int32_t i = (int32_t)v; std::memcpy(p, &i, 4); return; }
        case DType::I16: { int16_t i = (int16_t)v; std::memcpy(p, &i, 2); return; }
        case DType::I8: *reinterpret_cast<int8_t*>(p) = (int8_t)v; return;
        case DType::U8: *p = (uint8_t)v; return;
        case DType::Bool: *p = v != 0; return;
    }
}

// Calls f(src_elem_offset, linear_index) for every element of a strided tensor, in row-major order.
template <class F>
void for_each_offset(const Shape& shape, const Shape& strides, int64_t base, F&& f) {
    const int64_t nd = (int64_t)shape.size();
    const int64_t n = shape_numel(shape);
    if (n == 0) return;
    if (nd == 0) { f(base, 0); return; }
    std::vector<int64_t> idx(nd, 0);
    int64_t off = base;
    const int64_t inner = shape[nd - 1], inner_stride = strides[nd - 1];
    for (int64_t lin = 0; lin < n; lin += inner) {
        for (int64_t j = 0; j < inner; ++j) f(off + j * inner_stride, lin + j);
        for (int64_t d = nd - 2; d >= 0; --d) {
            if (++idx[d] < shape[d]) { off += strides[d]; break; }
            off -= strides[d] * (shape[d] - 1);
            idx[d] = 0;
        }
    }
}
}  // namespace

// Bulk f16 -> f32 with the F16C instruction (exact, like the scalar conversion), in parallel for big tensors.
void f16_to_f32_n(const uint16_t* s, float* d, int64_t n) {
    const int64_t blocks = n / 8;
#pragma omp parallel for schedule(static) if (n > (1 << 18))
    for (int64_t b = 0; b < blocks; ++b) {
        const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(s + b * 8));
        _mm256_storeu_ps(d + b * 8, _mm256_cvtph_ps(h));
    }
    for (int64_t i = blocks * 8; i < n; ++i) d[i] = f16_to_f32(s[i]);
}

void Tensor::copy_(const Tensor& src) {
    OpTimer op_timer("copy");
    NUANCE_CHECK(src.shape_ == shape_, "copy_: shape ", src.shape_, " into ", shape_);
    // A quantized weight's handle (core/quantized_weight.h) views packed blocks, not values: never read them as U8.
    NUANCE_CHECK(!is_quantized_storage(src) && !is_quantized_storage(*this), "tensor ",
                 quantized_weight_str(is_quantized_storage(src) ? src : *this),
                 " is a quantized weight (ggml blocks): it cannot be copied or converted; dequantize it first");
    if (!device().is_cpu() || !src.device().is_cpu()) [[unlikely]] {
        const Device dev = device().is_cpu() ? src.device() : device();
        NUANCE_CHECK((device().is_cpu() || device() == dev) && (src.device().is_cpu() || src.device() == dev),
                     "copy_: from ", src.device().str(), " to ", device().str(), " (copy through the host)");
        DeviceMemory* mem = device_memory(dev.type);
        NUANCE_CHECK(mem, "copy_: no backend is registered for device ", dev.str());
        mem->copy(*this, src);
        return;
    }
    const size_t ses = dtype_size(src.dtype_), des = dtype_size(dtype_);
    const uint8_t* sb = src.storage_->data();
    uint8_t* db = storage_->data();
    // Fast paths: the same dense layout (contiguous, channels-last, ...): one flat pass.
    if ((src.is_contiguous() && is_contiguous()) || (src.strides_ == strides_ && is_dense())) {
        const int64_t n = numel();
        const uint8_t* sp = sb + src.offset_ * ses;
        uint8_t* dp = db + offset_ * des;
        if (src.dtype_ == dtype_) { std::memcpy(dp, sp, (size_t)n * des); return; }
        if (dtype_ == DType::F32 && src.dtype_ == DType::F16) {
            f16_to_f32_n(reinterpret_cast<const uint16_t*>(sp), reinterpret_cast<float*>(dp), n);
            return;
        }
        if (dtype_ == DType::BF16 && src.dtype_ == DType::F32) {
            const float* s = reinterpret_cast<const float*>(sp);
            uint16_t* d = reinterpret_cast<uint16_t*>(dp);
            const int64_t chunk = 1 << 16;
#pragma omp parallel for schedule(static) if (n > chunk)
            for (int64_t c = 0; c < (n + chunk - 1) / chunk; ++c)
                cpu::f32_to_bf16_n(s + c * chunk, d + c * chunk, std::min(chunk, n - c * chunk));
            return;
        }
        if (dtype_ == DType::F32 && src.dtype_ == DType::BF16) {
            const uint16_t* s = reinterpret_cast<const uint16_t*>(sp);
            float* d = reinterpret_cast<float*>(dp);
#pragma omp parallel for schedule(static) if (n > (1 << 18))
            for (int64_t i = 0; i < n; ++i) d[i] = bf16_to_f32(s[i]);
            return;
        }
        if (dtype_ == DType::BF16 && src.dtype_ == DType::F16) {  // f16 weight files packed for bf16 products
            const uint16_t* s = reinterpret_cast<const uint16_t*>(sp);
            uint16_t* d = reinterpret_cast<uint16_t*>(dp);
            const int64_t chunk = 1 << 14;
#pragma omp parallel for schedule(static) if (n > chunk)
            for (int64_t c = 0; c < (n + chunk - 1) / chunk; ++c) {
                float tmp[1 << 14];
                const int64_t len = std::min(chunk, n - c * chunk);
                f16_to_f32_n(s + c * chunk, tmp, len);
                cpu::f32_to_bf16_n(tmp, d + c * chunk, len);
            }
            return;
        }
    }
    // Strided (slices, transposes, channels-last <-> NCHW), the same dtype or a conversion the products use (f32 <->
    // bf16, f16 -> f32): walk the destination in its memory order, rows of its innermost dimension.
    enum class Conv { Same, F32ToBF16, BF16ToF32, F16ToF32, None };
    const Conv conv = src.dtype_ == dtype_ && (des == 4 || des == 2)              ? Conv::Same
                      : src.dtype_ == DType::F32 && dtype_ == DType::BF16 ? Conv::F32ToBF16
                      : src.dtype_ == DType::BF16 && dtype_ == DType::F32 ? Conv::BF16ToF32
                      : src.dtype_ == DType::F16 && dtype_ == DType::F32  ? Conv::F16ToF32
                                                                          : Conv::None;
    if (conv != Conv::None && dim() > 0) {
        const std::vector<int64_t> order = memory_order();
        const Tensor d = permute(order), s = src.permute(order);
        const int64_t nd = d.dim(), inner = d.shape_[nd - 1], rows = numel() / std::max<int64_t>(inner, 1);
        const int64_t s_in = s.strides_[nd - 1], d_in = d.strides_[nd - 1];
#pragma omp parallel for schedule(static) if (numel() > (1 << 16))
        for (int64_t r = 0; r < rows; ++r) {
            int64_t so = s.offset_, dof = d.offset_, rem = r;
            for (int64_t k = nd - 2; k >= 0; --k) {
                const int64_t i = rem % d.shape_[k];
                rem /= d.shape_[k];
                so += i * s.strides_[k];
                dof += i * d.strides_[k];
            }
            const void* sv = sb + so * (int64_t)ses;
            void* dv = db + dof * (int64_t)des;
            switch (conv) {
            case Conv::Same:
                if (des == 4) {
                    const float* sp = static_cast<const float*>(sv);
                    float* dp = static_cast<float*>(dv);
                    for (int64_t j = 0; j < inner; ++j) dp[j * d_in] = sp[j * s_in];
                } else {
                    const uint16_t* sp = static_cast<const uint16_t*>(sv);
                    uint16_t* dp = static_cast<uint16_t*>(dv);
                    for (int64_t j = 0; j < inner; ++j) dp[j * d_in] = sp[j * s_in];
                }
                break;
            case Conv::F32ToBF16: {
                const float* sp = static_cast<const float*>(sv);
                uint16_t* dp = static_cast<uint16_t*>(dv);
                if (s_in == 1 && d_in == 1) cpu::f32_to_bf16_n(sp, dp, inner);
                else
                    for (int64_t j = 0; j < inner; ++j) dp[j * d_in] = f32_to_bf16(sp[j * s_in]);
                break;
            }
            case Conv::BF16ToF32: {
                const uint16_t* sp = static_cast<const uint16_t*>(sv);
                float* dp = static_cast<float*>(dv);
                for (int64_t j = 0; j < inner; ++j) dp[j * d_in] = bf16_to_f32(sp[j * s_in]);
                break;
            }
            case Conv::F16ToF32: {
                const uint16_t* sp = static_cast<const uint16_t*>(sv);
                float* dp = static_cast<float*>(dv);
                if (s_in == 1 && d_in == 1) f16_to_f32_n(sp, dp, inner);
                else
                    for (int64_t j = 0; j < inner; ++j) dp[j * d_in] = f16_to_f32(sp[j * s_in]);
                break;
            }
            case Conv::None: break;
            }
        }
        return;
    }
    // General path: gather source in row-major order, scatter into destination.
    std::vector<int64_t> src_offsets((size_t)numel());
    for_each_offset(src.shape_, src.strides_, src.offset_, [&](int64_t o, int64_t i) { src_offsets[i] = o; });
    const bool same = src.dtype_ == dtype_;
    for_each_offset(shape_, strides_, offset_, [&](int64_t o, int64_t i) {
        const uint8_t* sp = sb + src_offsets[i] * ses;
        uint8_t* dp = db + o * des;
        if (same) std::memcpy(dp, sp, des);
        else store_from_double(dp, dtype_, load_as_double(sp, src.dtype_));
    });
}

void Tensor::fill_(float v) {
    if (dtype_ == DType::F32 && is_contiguous() && device().is_cpu()) { std::fill_n(data<float>(), numel(), v); return; }
    copy_(Tensor::full({}, v).expand(shape_).to(dtype_));
}

Tensor Tensor::contiguous() const {
    if (is_contiguous()) return *this;
    Tensor t = empty(shape_, dtype_, device());
    t.copy_(*this);
    return t;
}

Tensor Tensor::clone() const {
    Tensor t = empty(shape_, dtype_, device());
    t.copy_(*this);
    return t;
}

Tensor Tensor::to(DType dtype) const {
    if (dtype == dtype_) return *this;
    Tensor t = empty_like(*this, dtype);  // dense layouts (channels-last) are kept
    t.copy_(*this);
    return t;
}

Tensor Tensor::to(Device device) const {
    if (device == this->device()) return *this;
    Tensor t = empty(shape_, dtype_, device);
    t.copy_(*this);
    return t;
}

std::vector<float> Tensor::to_vector() const {
    if (!device().is_cpu()) return to(Device::cpu()).to_vector();
    Tensor c = to(DType::F32).contiguous();
    const float* p = c.data<float>();
    return std::vector<float>(p, p + c.numel());
}

std::vector<int64_t> Tensor::to_ids() const {
    if (!device().is_cpu()) return to(Device::cpu()).to_ids();
    Tensor c = to(DType::I64).contiguous();
    const int64_t* p = c.data<int64_t>();
    return std::vector<int64_t>(p, p + c.numel());
}

float Tensor::item() const {
    NUANCE_CHECK(numel() == 1, "item() on a tensor of shape ", shape_);
    if (!device().is_cpu()) return to(Device::cpu()).item();
    return (float)load_as_double(storage_->data() + (size_t)offset_ * dtype_size(dtype_), dtype_);
}

// ---- views ----
Tensor Tensor::view(const Shape& shape) const {
    NUANCE_CHECK(is_contiguous(), "view of a non-contiguous tensor ", str());
    Shape s = shape;
    int64_t known = 1, infer = -1;
    for (size_t i = 0; i < s.size(); ++i) {
        if (s[i] == -1) {
            NUANCE_CHECK(infer < 0, "view: more than one -1 in ", shape);
            infer = (int64_t)i;
        } else {
            NUANCE_CHECK(s[i] >= 0, "view: bad shape ", shape);
            known *= s[i];
        }
    }
    if (infer >= 0) {
        NUANCE_CHECK(known > 0 && numel() % known == 0, "view: cannot view ", shape_, " as ", shape);
        s[infer] = numel() / known;
    }
    NUANCE_CHECK(shape_numel(s) == numel(), "view: cannot view ", shape_, " as ", shape);
    Tensor t = *this;
    t.shape_ = s;
    t.strides_ = contiguous_strides(s);
    return t;
}

Tensor Tensor::reshape(const Shape& shape) const { return contiguous().view(shape); }

Tensor Tensor::permute(const std::vector<int64_t>& dims) const {
    NUANCE_CHECK((int64_t)dims.size() == dim(), "permute: ", dims.size(), " dims for a tensor of rank ", dim());
    Tensor t = *this;
    std::vector<bool> seen(dim(), false);
    for (size_t i = 0; i < dims.size(); ++i) {
        const int64_t d = normalize_dim(dims[i], dim());
        NUANCE_CHECK(!seen[d], "permute: repeated dim ", d);
        seen[d] = true;
        t.shape_[i] = shape_[d];
        t.strides_[i] = strides_[d];
    }
    return t;
}

Tensor Tensor::transpose(int64_t a, int64_t b) const {
    a = normalize_dim(a, dim());
    b = normalize_dim(b, dim());
    Tensor t = *this;
    std::swap(t.shape_[a], t.shape_[b]);
    std::swap(t.strides_[a], t.strides_[b]);
    return t;
}

Tensor Tensor::slice(int64_t d, int64_t start, int64_t end, int64_t step) const {
    d = normalize_dim(d, dim());
    const int64_t n = shape_[d];
    if (start < 0) start += n;
    if (end < 0) end += n;
    start = std::clamp<int64_t>(start, 0, n);
    end = std::clamp<int64_t>(end, start, n);
    NUANCE_CHECK(step > 0, "slice: step must be positive");
    Tensor t = *this;
    t.offset_ += start * strides_[d];
    t.shape_[d] = (end - start + step - 1) / step;
    t.strides_[d] = strides_[d] * step;
    return t;
}

Tensor Tensor::select(int64_t d, int64_t index) const {
    d = normalize_dim(d, dim());
    const int64_t n = shape_[d];
    if (index < 0) index += n;
    NUANCE_CHECK(index >= 0 && index < n, "select: index ", index, " out of range for dim ", d, " of ", shape_);
    Tensor t = *this;
    t.offset_ += index * strides_[d];
    t.shape_.erase(t.shape_.begin() + d);
    t.strides_.erase(t.strides_.begin() + d);
    return t;
}

Tensor Tensor::unsqueeze(int64_t d) const {
    d = normalize_dim(d, dim() + 1);
    Tensor t = *this;
    const int64_t st = d < dim() ? strides_[d] * shape_[d] : 1;
    t.shape_.insert(t.shape_.begin() + d, 1);
    t.strides_.insert(t.strides_.begin() + d, st);
    return t;
}

Tensor Tensor::squeeze(int64_t d) const {
    d = normalize_dim(d, dim());
    NUANCE_CHECK(shape_[d] == 1, "squeeze: dim ", d, " of ", shape_, " is not 1");
    Tensor t = *this;
    t.shape_.erase(t.shape_.begin() + d);
    t.strides_.erase(t.strides_.begin() + d);
    return t;
}

Tensor Tensor::flatten(int64_t start, int64_t end) const {
    if (dim() == 0) return reshape({1});
    start = normalize_dim(start, dim());
    end = normalize_dim(end, dim());
    Shape s(shape_.begin(), shape_.begin() + start);
    int64_t m = 1;
    for (int64_t i = start; i <= end; ++i) m *= shape_[i];
    s.push_back(m);
    s.insert(s.end(), shape_.begin() + end + 1, shape_.end());
    return reshape(s);
}

Tensor Tensor::expand(const Shape& shape) const {
    NUANCE_CHECK((int64_t)shape.size() >= dim(), "expand: ", shape_, " to ", shape);
    Tensor t = *this;
    const int64_t lead = (int64_t)shape.size() - dim();
    t.shape_ = shape;
    t.strides_.assign(shape.size(), 0);
    for (int64_t i = 0; i < (int64_t)shape.size(); ++i) {
        if (i < lead) continue;
        const int64_t src = shape_[i - lead];
        if (src == shape[i]) {
            t.strides_[i] = strides_[i - lead];
        } else {
            NUANCE_CHECK(src == 1, "expand: cannot broadcast ", shape_, " to ", shape);
        }
    }
    return t;
}

}  // namespace nuance
