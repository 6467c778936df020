#include "io/gguf.h"

#include <algorithm>
#include <cstring>
#include <set>

#include "core/checked.h"

namespace nuance {

namespace {

constexpr uint64_t kMaxTensors = 1u << 20;     // real files hold at most tens of thousands
constexpr uint64_t kMaxKv = 1u << 20;
constexpr uint64_t kMaxArrayElements = 1ull << 26;  // over all arrays of a file (llama vocabularies: ~256k)
constexpr int kMaxArrayDepth = 4;
constexpr uint32_t kMaxDims = 4;               // GGML_MAX_DIMS
constexpr uint64_t kMaxAlignment = 1u << 20;

// Sequential little-endian reader over the file; every read is bounds-checked and names the field.
class Cursor {
public:
    Cursor(const uint8_t* p, uint64_t size, const std::string& path) : p_(p), size_(size), path_(path) {}
    uint64_t pos() const { return pos_; }
    uint64_t left() const { return size_ - pos_; }
    template <class T>
    T get(const std::string& what) {
        need(sizeof(T), what);
        T v;
        std::memcpy(&v, p_ + pos_, sizeof(T));
        pos_ += sizeof(T);
        return v;
    }
    std::string string(const std::string& what) {
        const uint64_t n = get<uint64_t>(what + " length");
        if (n > left())
            fail(ErrorCode::Io, "GGUF file '", path_, "': ", what, " length ", n, " at byte ", pos_ - 8,
                 " exceeds the ", left(), " bytes left in the file");
        std::string s(reinterpret_cast<const char*>(p_ + pos_), (size_t)n);
        pos_ += n;
        return s;
    }
    void need(uint64_t n, const std::string& what) const {
        if (n > left())
            fail(ErrorCode::Io, "GGUF file '", path_, "': truncated at byte ", pos_, " (", what, " needs ", n,
                 " bytes, ", left(), " left)");
    }
    const std::string& path() const { return path_; }

private:
    const uint8_t* p_;
    uint64_t size_, pos_ = 0;
    const std::string& path_;
};

uint64_t min_value_bytes(GgufValueType t) {
    switch (t) {
        case GgufValueType::U8: case GgufValueType::I8: case GgufValueType::Bool: return 1;
        case GgufValueType::U16: case GgufValueType::I16: return 2;
        case GgufValueType::U32: case GgufValueType::I32: case GgufValueType::F32: return 4;
        case GgufValueType::U64: case GgufValueType::I64: case GgufValueType::F64: case GgufValueType::String: return 8;
        case GgufValueType::Array: return 12;
    }
    return 1;
}

GgufValueType value_type(uint32_t t, Cursor& c, const std::string& key) {
    if (t > (uint32_t)GgufValueType::F64)
        fail(ErrorCode::Io, "GGUF file '", c.path(), "': metadata '", key, "' has unknown value type ", t);
    return (GgufValueType)t;
}

struct Parser {
    Cursor& c;
    uint64_t elements = 0;

    // One scalar of type t into v (v.type already set).
    void scalar(GgufValueType t, GgufValue& v, const std::string& key) {
        switch (t) {
            case GgufValueType::U8: v.u = c.get<uint8_t>(key); break;
            case GgufValueType::I8: v.i = c.get<int8_t>(key); break;
            case GgufValueType::U16: v.u = c.get<uint16_t>(key); break;
            case GgufValueType::I16: v.i = c.get<int16_t>(key); break;
            case GgufValueType::U32: v.u = c.get<uint32_t>(key); break;
            case GgufValueType::I32: v.i = c.get<int32_t>(key); break;
            case GgufValueType::U64: v.u = c.get<uint64_t>(key); break;
            case GgufValueType::I64: v.i = c.get<int64_t>(key); break;
            case GgufValueType::F32: v.f = c.get<float>(key); break;
            case GgufValueType::F64: v.f = c.get<double>(key); break;
            case GgufValueType::Bool: {
                const uint8_t b = c.get<uint8_t>(key);
                if (b > 1)
                    fail(ErrorCode::Io, "GGUF file '", c.path(), "': metadata '", key, "': bool value ", (int)b,
                         " is neither 0 nor 1");
                v.i = b;
                break;
            }
            case GgufValueType::String: v.s = c.string("metadata '" + key + "' string"); break;
            case GgufValueType::Array: break;
        }
    }

    GgufValue value(GgufValueType t, const std::string& key, int depth) {
        GgufValue v;
        v.type = t;
        if (t != GgufValueType::Array) {
            scalar(t, v, key);
            return v;
        }
        if (depth >= kMaxArrayDepth)
            fail(ErrorCode::Io, "GGUF file '", c.path(), "': metadata '", key, "': arrays nested deeper than ",
                 kMaxArrayDepth);
        v.elem = value_type(c.get<uint32_t>("metadata '" + key + "' array type"), c, key);
        v.count = c.get<uint64_t>("metadata '" + key + "' array count");
        if (v.count > c.left() / min_value_bytes(v.elem))
            fail(ErrorCode::Io, "GGUF file '", c.path(), "': metadata '", key, "': array count ", v.count, " of ",
                 gguf_value_type_name(v.elem), " exceeds the ", c.left(), " bytes left in the file");
        elements += v.count;
        if (elements > kMaxArrayElements)
            fail(ErrorCode::Io, "GGUF file '", c.path(), "': metadata arrays hold more than ", kMaxArrayElements,
                 " elements in all (at '", key, "')");
        for (uint64_t k = 0; k < v.count; ++k) {
            GgufValue e;
            if (v.elem == GgufValueType::Array) {
                v.arr.push_back(value(GgufValueType::Array, key, depth + 1));
                continue;
            }
            scalar(v.elem, e, key);
            switch (v.elem) {
                case GgufValueType::String: v.strs.push_back(std::move(e.s)); break;
                case GgufValueType::F32: case GgufValueType::F64: v.floats.push_back(e.f); break;
                case GgufValueType::U8: case GgufValueType::U16: case GgufValueType::U32: case GgufValueType::U64:
                    v.ints.push_back((int64_t)e.u);
                    break;
                default: v.ints.push_back(e.i); break;
            }
        }
        return v;
    }
};

uint64_t align_up(uint64_t x, uint64_t a) { return (x + a - 1) / a * a; }  // x <= file size, a <= 1 MiB

}  // namespace

const char* gguf_value_type_name(GgufValueType t) {
    static const char* names[] = {"u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool", "string", "array", "u64",
                                  "i64", "f64"};
    return (uint32_t)t <= 12 ? names[(uint32_t)t] : "?";
}

std::optional<int64_t> GgufValue::as_int() const {
    switch (type) {
        case GgufValueType::U8: case GgufValueType::U16: case GgufValueType::U32: case GgufValueType::U64:
            if (u > (uint64_t)INT64_MAX) return std::nullopt;
            return (int64_t)u;
        case GgufValueType::I8: case GgufValueType::I16: case GgufValueType::I32: case GgufValueType::I64:
        case GgufValueType::Bool:
            return i;
        default: return std::nullopt;
    }
}

std::string GgufValue::to_string(size_t max_items) const {
    switch (type) {
        case GgufValueType::U8: case GgufValueType::U16: case GgufValueType::U32: case GgufValueType::U64:
            return std::to_string(u);
        case GgufValueType::I8: case GgufValueType::I16: case GgufValueType::I32: case GgufValueType::I64:
            return std::to_string(i);
        case GgufValueType::Bool: return i ? "true" : "false";
        case GgufValueType::F32: case GgufValueType::F64: return str(f);
        case GgufValueType::String: return "'" + s + "'";
        case GgufValueType::Array: break;
    }
    std::string out = "[" + std::to_string(count) + " x " + gguf_value_type_name(elem);
    for (uint64_t k = 0; k < count && k < max_items; ++k) {
        out += k == 0 ? ": " : ", ";
        if (!strs.empty()) out += "'" + strs[k] + "'";
        else if (!floats.empty()) out += str(floats[k]);
        else if (!arr.empty()) out += arr[k].to_string(max_items);
        else if (elem == GgufValueType::Bool) out += ints[k] ? "true" : "false";
        else if (elem == GgufValueType::U64) out += std::to_string((uint64_t)ints[k]);
        else out += std::to_string(ints[k]);
    }
    if (count > max_items) out += ", ...";
    return out + "]";
}

const GgufValue* GgufFile::find(const std::string& key) const {
    for (const auto& [k, v] : kv)
        if (k == key) return &v;
    return nullptr;
}

bool GgufFile::is_quantized(const GgufTensorInfo& t) const { return ggml_type_info(t.type)->block > 1; }

QuantizedTensor GgufFile::quantized(const GgufTensorInfo& t) const {
    const GgmlTypeInfo* ti = ggml_type_info(t.type);
    QuantizedTensor q;
    q.type = ti->type;
    q.shape = t.shape;
    const int64_t row_bytes = t.shape.empty() ? 0 : t.shape.back() / ti->block * ti->bytes;
    const int64_t rows = row_bytes == 0 ? 0 : (int64_t)t.nbytes / row_bytes;
    q.packed = Tensor::from_storage(storage, t.offset, {rows, row_bytes}, DType::U8);
    return q;
}

Tensor GgufFile::view(const GgufTensorInfo& t) const {
    DType dt;
    switch ((GgmlType)t.type) {
        case GgmlType::F32: dt = DType::F32; break;
        case GgmlType::F16: dt = DType::F16; break;
        case GgmlType::BF16: dt = DType::BF16; break;
        case GgmlType::F64: dt = DType::F64; break;
        case GgmlType::I8: dt = DType::I8; break;
        case GgmlType::I16: dt = DType::I16; break;
        case GgmlType::I32: dt = DType::I32; break;
        case GgmlType::I64: dt = DType::I64; break;
        default:
            fail(ErrorCode::Unsupported, "GGUF file '", path, "': tensor '", t.name, "' of type ",
                 ggml_type_info(t.type)->name, " is block-quantized (no plain view)");
    }
    // A view where the offset suits the element size (alignment 1 or 2 can leave it unaligned): a copy otherwise.
    if (t.offset % dtype_size(dt) == 0) return Tensor::from_storage(storage, t.offset, t.shape, dt);
    return Tensor::from_bytes(storage->data() + t.offset, t.shape, dt);
}

std::string gguf_file_type_name(int64_t ftype) {
    static const std::pair<int64_t, const char*> names[] = {
        {0, "ALL_F32"},        {1, "MOSTLY_F16"},     {2, "MOSTLY_Q4_0"},    {3, "MOSTLY_Q4_1"},
        {7, "MOSTLY_Q8_0"},    {8, "MOSTLY_Q5_0"},    {9, "MOSTLY_Q5_1"},    {10, "MOSTLY_Q2_K"},
        {11, "MOSTLY_Q3_K_S"}, {12, "MOSTLY_Q3_K_M"}, {13, "MOSTLY_Q3_K_L"}, {14, "MOSTLY_Q4_K_S"},
        {15, "MOSTLY_Q4_K_M"}, {16, "MOSTLY_Q5_K_S"}, {17, "MOSTLY_Q5_K_M"}, {18, "MOSTLY_Q6_K"},
        {25, "MOSTLY_IQ4_NL"}, {30, "MOSTLY_IQ4_XS"}, {32, "MOSTLY_BF16"},
    };
    for (const auto& [k, n] : names)
        if (k == ftype) return n;
    return "";
}

bool is_gguf_file(const std::string& path) { return read_file_prefix(path, 4) == "GGUF"; }

GgufFile read_gguf(const std::string& path) {
    require_regular_file(path, "GGUF file");
    return read_gguf(map_file(path), path);
}

GgufFile read_gguf(std::shared_ptr<Storage> file, const std::string& name) {
    NUANCE_CHECK(file != nullptr, "read_gguf: null storage");
    GgufFile g;
    g.path = name;
    g.storage = file;
    Cursor c(file->data(), file->size(), g.path);
    const std::string& path = g.path;
    c.need(4, "magic");
    if (std::memcmp(file->data(), "GGUF", 4) != 0) fail(ErrorCode::Io, "'", path, "' is not a GGUF file (bad magic)");
    c.get<uint32_t>("magic");
    g.version = c.get<uint32_t>("version");
    if (g.version == 1)
        fail(ErrorCode::Unsupported, "GGUF file '", path, "': version 1 (32-bit counts) is not supported; "
             "convert it with a current llama.cpp/gguf-py");
    if (g.version != 2 && g.version != 3)
        fail(ErrorCode::Unsupported, "GGUF file '", path, "': unsupported version ", g.version,
             g.version > 0xffffff ? " (a big-endian file?)" : "", "; versions 2 and 3 are read");
    const uint64_t n_tensors = c.get<uint64_t>("tensor count");
    const uint64_t n_kv = c.get<uint64_t>("metadata count");
    if (n_tensors > kMaxTensors || n_tensors > c.left() / 24)
        fail(ErrorCode::Io, "GGUF file '", path, "': tensor count ", n_tensors, " is impossible for a file of ",
             file->size(), " bytes");
    if (n_kv > kMaxKv || n_kv > c.left() / 13)
        fail(ErrorCode::Io, "GGUF file '", path, "': metadata count ", n_kv, " is impossible for a file of ",
             file->size(), " bytes");

    Parser p{c};
    std::set<std::string> keys;
    for (uint64_t k = 0; k < n_kv; ++k) {
        std::string key = c.string("metadata key " + std::to_string(k));
        const GgufValueType t = value_type(c.get<uint32_t>("metadata '" + key + "' type"), c, key);
        if (!keys.insert(key).second) fail(ErrorCode::Io, "GGUF file '", path, "': duplicate metadata key '", key, "'");
        GgufValue v = p.value(t, key, 0);
        g.kv.emplace_back(std::move(key), std::move(v));
    }
    if (const GgufValue* a = g.find("general.alignment")) {
        const std::optional<int64_t> al = a->as_int();
        if (a->type != GgufValueType::U32 || !al || *al <= 0 || (*al & (*al - 1)) != 0 || *al > (int64_t)kMaxAlignment)
            fail(ErrorCode::Io, "GGUF file '", path, "': general.alignment ", a->to_string(),
                 " must be a u32 power of two up to ", kMaxAlignment);
        g.alignment = (uint64_t)*al;
    }

    std::set<std::string> names;
    for (uint64_t k = 0; k < n_tensors; ++k) {
        GgufTensorInfo t;
        t.name = c.string("tensor " + std::to_string(k) + " name");
        const std::string what = "tensor '" + t.name + "'";
        if (!names.insert(t.name).second) fail(ErrorCode::Io, "GGUF file '", path, "': duplicate ", what);
        const uint32_t n_dims = c.get<uint32_t>(what + " n_dims");
        if (n_dims > kMaxDims)
            fail(ErrorCode::Io, "GGUF file '", path, "': ", what, " has ", n_dims, " dimensions (at most ",
                 kMaxDims, ")");
        // The product of the non-zero dimensions must fit (a zero dimension must not hide an overflowing stride).
        int64_t nonzero = 1;
        bool empty = false;
        for (uint32_t d = 0; d < n_dims; ++d) {
            const uint64_t ne = c.get<uint64_t>(what + " ne[" + std::to_string(d) + "]");
            if (ne > (uint64_t)INT64_MAX || (ne != 0 && !checked_mul(nonzero, (int64_t)ne, &nonzero)))
                fail(ErrorCode::Io, "GGUF file '", path, "': ", what, " dimension ne[", d, "] = ", ne,
                     " makes the element count overflow");
            empty = empty || ne == 0;
            t.ne.push_back(ne);
        }
        const int64_t numel = empty ? 0 : nonzero;
        for (auto it = t.ne.rbegin(); it != t.ne.rend(); ++it) t.shape.push_back((int64_t)*it);
        t.type = c.get<uint32_t>(what + " type");
        const GgmlTypeInfo* ti = ggml_type_info(t.type);
        if (!ti || is_float8(ti->type))  // nuance's FP8 ids are not GGUF types
            fail(ErrorCode::Unsupported, "GGUF file '", path, "': ", what, " has unknown ggml type ", t.type);
        const uint64_t ne0 = t.ne.empty() ? 1 : t.ne[0];
        if (ne0 % (uint64_t)ti->block != 0)
            fail(ErrorCode::Io, "GGUF file '", path, "': ", what, " of type ", ti->name, ": row length ne[0] = ",
                 ne0, " is not a multiple of its block size ", ti->block);
        uint64_t nbytes = 0, row_bytes = 0;
        if (!checked_mul((uint64_t)numel / (uint64_t)ti->block, (uint64_t)ti->bytes, &nbytes))
            fail(ErrorCode::Io, "GGUF file '", path, "': ", what, " byte size overflows");
        // One row's bytes must fit as well: with a zero dimension elsewhere the total is 0 whatever ne[0] claims.
        if (!checked_mul(ne0 / (uint64_t)ti->block, (uint64_t)ti->bytes, &row_bytes) || row_bytes > (uint64_t)INT64_MAX)
            fail(ErrorCode::Io, "GGUF file '", path, "': ", what, " row of ne[0] = ", ne0, " values overflows its ",
                 "byte size");
        t.nbytes = nbytes;
        t.offset = c.get<uint64_t>(what + " offset");
        g.tensors.push_back(std::move(t));
    }
    g.data_offset = align_up(c.pos(), g.alignment);
    if (g.data_offset > file->size() && n_tensors > 0)
        fail(ErrorCode::Io, "GGUF file '", path, "': the data section would start at byte ", g.data_offset,
             " past the end of the file (", file->size(), " bytes)");
    const uint64_t data_size = g.data_offset <= file->size() ? file->size() - g.data_offset : 0;
    std::vector<std::pair<uint64_t, const GgufTensorInfo*>> spans;
    for (auto& t : g.tensors) {
        if (t.offset % g.alignment != 0)
            fail(ErrorCode::Io, "GGUF file '", path, "': tensor '", t.name, "' offset ", t.offset,
                 " is not a multiple of the alignment ", g.alignment);
        if (!range_within(t.offset, t.nbytes, data_size))
            fail(ErrorCode::Io, "GGUF file '", path, "': tensor '", t.name, "' data [", t.offset, ", +", t.nbytes,
                 ") lies outside the data section of ", data_size, " bytes");
        t.offset += g.data_offset;
        spans.emplace_back(t.offset, &t);
    }
    std::sort(spans.begin(), spans.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
    for (size_t k = 1; k < spans.size(); ++k) {
        const GgufTensorInfo* a = spans[k - 1].second;
        if (a->offset + a->nbytes > spans[k].first)
            fail(ErrorCode::Io, "GGUF file '", path, "': tensors '", a->name, "' and '", spans[k].second->name,
                 "' overlap");
    }
    return g;
}

}  // namespace nuance
