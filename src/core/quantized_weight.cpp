#include "core/quantized_weight.h"

#include "core/checked.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>

namespace nuance {

namespace {

// The deleter of a quantized payload's keepalive: its type marks the storage as quantized (std::get_deleter finds
// it through the type-erased shared_ptr<void>), and it carries the format. Deleting does nothing itself; the
// payload's owner (`keepalive`, the file mapping) is released with the deleter.
struct QuantizedTag {
    uint32_t ggml_type = 0;
    const char* type_name = "";
    int64_t block = 0, block_bytes = 0;
    std::vector<QuantizedWeightPatch> patches;
    float scale = 1.0f;
    std::shared_ptr<void> keepalive;
    void operator()(void*) const {}
};

// A handle of logical `shape` over `rows` rows of `row_bytes` starting `offset` bytes into `st`.
Tensor handle_over(std::shared_ptr<Storage> st, size_t offset, int64_t rows, int64_t row_bytes, const Shape& shape) {
    Tensor t = Tensor::from_storage(std::move(st), offset, {rows, row_bytes}, DType::U8).narrow(1, 0, 1);  // [rows, 1]
    for (size_t d = 2; d < shape.size(); ++d) t = t.unsqueeze(-1);
    return t.expand(shape);  // dims 1.. get stride 0
}

const QuantizedTag* tag_of(const Tensor& t) {
    if (!t.defined() || t.dtype() != DType::U8) return nullptr;
    return std::get_deleter<QuantizedTag>(t.storage()->keepalive());
}

}  // namespace

Tensor make_quantized_weight(uint32_t ggml_type, const char* type_name, int64_t block, int64_t block_bytes,
                             const uint8_t* data, size_t bytes, std::shared_ptr<void> keepalive, const Shape& shape,
                             bool file_backed) {
    NUANCE_CHECK(block > 0 && block_bytes > 0, "quantized weight ", type_name, ": bad block (", block, " values in ",
                 block_bytes, " bytes)");
    NUANCE_CHECK(shape.size() >= 2, "quantized weight ", type_name, shape_str(shape),
                 ": needs rank >= 2 (rows of blocks)");
    int64_t numel = 0;
    NUANCE_CHECK(shape_numel_checked(shape, &numel) && shape[0] > 0 && numel > 0, "quantized weight ", type_name,
                 shape_str(shape), ": bad shape");
    const int64_t rows = shape[0], K = numel / rows;
    NUANCE_CHECK(K % block == 0, "quantized weight ", type_name, shape_str(shape), ": rows of ", K,
                 " values are not whole blocks of ", block);
    int64_t row_bytes = 0, total = 0;
    NUANCE_CHECK(checked_mul<int64_t>(K / block, block_bytes, &row_bytes) && checked_mul<int64_t>(rows, row_bytes, &total) &&
                     (uint64_t)total == (uint64_t)bytes,
                 "quantized weight ", type_name, shape_str(shape), ": payload of ", bytes, " bytes, expected ", rows,
                 " rows of ", row_bytes, " bytes");
    QuantizedTag tag{ggml_type, type_name, block, block_bytes, {}, 1.0f, std::move(keepalive)};
    std::shared_ptr<void> ka(const_cast<uint8_t*>(data), std::move(tag));
    return handle_over(Storage::wrap(const_cast<uint8_t*>(data), bytes, std::move(ka), file_backed), 0, rows, row_bytes,
                       shape);
}

Tensor quantized_weight_with_patch(const Tensor& t, QuantizedWeightPatch patch) {
    const auto v = quantized_weight_view(t);
    NUANCE_CHECK(v.has_value(), "weight patch: tensor ", t.str(), " is not a quantized weight");
    const std::string what = quantized_weight_str(t);
    NUANCE_CHECK(patch.a.defined() && patch.a.dim() == 2 && patch.a.dtype() == DType::F32 &&
                     patch.a.is_contiguous() && patch.a.size(1) == v->row_length,
                 "weight patch for ", what, ": a must be F32 [r, ", v->row_length, "], got ",
                 patch.a.defined() ? patch.a.str() : std::string("undefined"));
    if (patch.b.defined())
        NUANCE_CHECK(patch.b.dim() == 2 && patch.b.dtype() == DType::F32 && patch.b.is_contiguous() &&
                         patch.b.size(1) == patch.a.size(0),
                     "weight patch for ", what, ": b must be F32 [n, ", patch.a.size(0), "], got ", patch.b.str());
    NUANCE_CHECK(patch.rows() <= v->rows, "weight patch for ", what, ": ", patch.rows(), " rows for a weight of ",
                 v->rows);
    NUANCE_CHECK(std::isfinite(patch.scale), "weight patch for ", what, ": scale ", patch.scale, " is not finite");
    const QuantizedTag& old = *tag_of(t);
    patch.row0 = v->first_row;
    QuantizedTag tag = old;
    tag.patches.push_back(std::move(patch));
    tag.keepalive = t.storage();  // the payload's owner, through the unpatched storage
    uint8_t* base = t.storage()->data();
    std::shared_ptr<void> ka(base, std::move(tag));
    auto st = Storage::wrap(base, t.storage()->size(), std::move(ka), t.storage()->file_backed());
    return handle_over(std::move(st), (size_t)(v->data - base), v->rows, v->row_bytes, t.shape());
}

Tensor quantized_weight_with_scale(const Tensor& t, float scale) {
    const auto v = quantized_weight_view(t);
    NUANCE_CHECK(v.has_value(), "weight scale: tensor ", t.str(), " is not a quantized weight");
    const QuantizedTag& old = *tag_of(t);
    const float s = old.scale * scale;
    NUANCE_CHECK(std::isfinite(scale) && scale != 0.0f && std::isfinite(s) && s != 0.0f, "weight scale for ",
                 quantized_weight_str(t), ": ", scale, " is not a finite, non-zero number");
    QuantizedTag tag = old;
    tag.scale = s;
    tag.keepalive = t.storage();
    uint8_t* base = t.storage()->data();
    std::shared_ptr<void> ka(base, std::move(tag));
    auto st = Storage::wrap(base, t.storage()->size(), std::move(ka), t.storage()->file_backed());
    return handle_over(std::move(st), (size_t)(v->data - base), v->rows, v->row_bytes, t.shape());
}

bool is_quantized_storage(const Tensor& t) { return tag_of(t) != nullptr; }

std::optional<QuantizedWeightView> quantized_weight_view(const Tensor& t) {
    const QuantizedTag* tag = tag_of(t);
    if (!tag || t.dim() < 2) return std::nullopt;
    const int64_t rows = t.size(0);
    if (rows <= 0) return std::nullopt;
    const int64_t K = t.numel() / rows;
    if (K <= 0 || K % tag->block != 0) return std::nullopt;
    const int64_t row_bytes = K / tag->block * tag->block_bytes;
    if (t.strides()[0] != row_bytes && rows > 1) return std::nullopt;
    for (int64_t d = 1; d < t.dim(); ++d)
        if (t.strides()[d] != 0 && t.size(d) != 1) return std::nullopt;
    const uint64_t off = (uint64_t)t.offset();
    if (off % (uint64_t)row_bytes != 0 || !range_within(off, (uint64_t)rows * (uint64_t)row_bytes, t.storage()->size()))
        return std::nullopt;
    QuantizedWeightView v;
    v.ggml_type = tag->ggml_type;
    v.block = tag->block;
    v.block_bytes = tag->block_bytes;
    v.data = t.storage()->data() + off;
    v.rows = rows;
    v.row_length = K;
    v.row_bytes = row_bytes;
    v.first_row = (int64_t)(off / (uint64_t)row_bytes);
    v.owner = t.storage();
    v.file_backed = t.storage()->file_backed();
    v.patches = &tag->patches;
    v.scale = tag->scale;
    return v;
}

Tensor quantized_weight_payload(const Tensor& t) {
    const auto v = quantized_weight_view(t);
    NUANCE_CHECK(v.has_value(), "tensor ", t.str(), " is not a quantized weight");
    return Tensor::from_storage(t.storage(), (size_t)(v->data - t.storage()->data()), {v->rows, v->row_bytes},
                                DType::U8);
}

Tensor quantized_weight_reshape(const Tensor& t, const Shape& shape) {
    const auto v = quantized_weight_view(t);
    NUANCE_CHECK(v.has_value(), "tensor ", t.str(), " is not a quantized weight");
    int64_t n = 0;
    NUANCE_CHECK(shape.size() >= 2 && shape_numel_checked(shape, &n) && n == t.numel() && shape[0] == v->rows,
                 "quantized weight ", quantized_weight_str(t), " cannot be seen as ", shape_str(shape),
                 " (its rows of blocks must stay rows)");
    return handle_over(t.storage(), (size_t)(v->data - t.storage()->data()), v->rows, v->row_bytes, shape);
}

std::string quantized_weight_str(const Tensor& t) {
    const QuantizedTag* tag = tag_of(t);
    if (!tag) return std::string();
    std::string s = std::string(tag->type_name) + shape_str(t.shape());
    if (tag->scale != 1.0f) {
        char b[32];
        std::snprintf(b, sizeof b, "*%g", (double)tag->scale);
        s += b;
    }
    return s;
}

namespace {
// madvise(DONTNEED) on the whole pages inside [data, data + bytes) of a file mapping.
size_t release_mapped_pages(const void* data, size_t bytes) {
    if (bytes == 0) return 0;
    const uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    const uintptr_t begin = ((uintptr_t)data + page - 1) / page * page;
    const uintptr_t end = ((uintptr_t)data + bytes) / page * page;
    if (end <= begin) return 0;
    madvise(reinterpret_cast<void*>(begin), end - begin, MADV_DONTNEED);
    return (size_t)(end - begin);
}
}  // namespace

size_t release_file_pages(const Tensor& t) {
    if (!t.defined()) return 0;
    const Tensor p = quantized_weight_view(t) ? quantized_weight_payload(t) : t;
    if (!p.storage() || !p.storage()->file_backed()) return 0;
    return release_mapped_pages(p.raw(), p.nbytes());
}

size_t release_file_pages(const QuantizedWeightView& v) {
    if (!v.file_backed || v.owner.expired() || v.rows <= 0) return 0;
    return release_mapped_pages(v.data, (size_t)(v.rows * v.row_bytes));
}

}  // namespace nuance
