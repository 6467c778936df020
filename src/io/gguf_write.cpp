// GGUF v3 writer (the layout is in io/gguf.h).
#include <cstring>

#include "core/checked.h"
#include "io/atomic_file.h"
#include "io/gguf.h"

namespace nuance {

namespace {

void put(std::string& b, const void* p, size_t n) { b.append(static_cast<const char*>(p), n); }
template <class T>
void put(std::string& b, T v) {
    put(b, &v, sizeof(T));
}
void put_str(std::string& b, const std::string& s) {
    put<uint64_t>(b, s.size());
    b += s;
}

void put_scalar(std::string& b, GgufValueType t, const GgufValue& v) {
    switch (t) {
        case GgufValueType::U8: put<uint8_t>(b, (uint8_t)v.u); break;
        case GgufValueType::I8: put<int8_t>(b, (int8_t)v.i); break;
        case GgufValueType::U16: put<uint16_t>(b, (uint16_t)v.u); break;
        case GgufValueType::I16: put<int16_t>(b, (int16_t)v.i); break;
        case GgufValueType::U32: put<uint32_t>(b, (uint32_t)v.u); break;
        case GgufValueType::I32: put<int32_t>(b, (int32_t)v.i); break;
        case GgufValueType::U64: put<uint64_t>(b, v.u); break;
        case GgufValueType::I64: put<int64_t>(b, v.i); break;
        case GgufValueType::F32: put<float>(b, (float)v.f); break;
        case GgufValueType::F64: put<double>(b, v.f); break;
        case GgufValueType::Bool: put<uint8_t>(b, v.i ? 1 : 0); break;
        case GgufValueType::String: put_str(b, v.s); break;
        case GgufValueType::Array: break;
    }
}

void put_value(std::string& b, const GgufValue& v) {
    if (v.type != GgufValueType::Array) return put_scalar(b, v.type, v);
    put<uint32_t>(b, (uint32_t)v.elem);
    put<uint64_t>(b, v.count);
    for (uint64_t k = 0; k < v.count; ++k) {
        GgufValue e;
        switch (v.elem) {
            case GgufValueType::String: e.s = v.strs.at(k); break;
            case GgufValueType::F32: case GgufValueType::F64: e.f = v.floats.at(k); break;
            case GgufValueType::Array: put_value(b, v.arr.at(k)); continue;
            default: e.u = (uint64_t)v.ints.at(k); e.i = v.ints.at(k); break;
        }
        put_scalar(b, v.elem, e);
    }
}

}  // namespace

GgufValue gguf_string(const std::string& s) {
    GgufValue v;
    v.type = GgufValueType::String;
    v.s = s;
    return v;
}

GgufValue gguf_u32(uint32_t x) {
    GgufValue v;
    v.type = GgufValueType::U32;
    v.u = x;
    return v;
}

GgufValue gguf_i32_array(const std::vector<int64_t>& x) {
    GgufValue v;
    v.type = GgufValueType::Array;
    v.elem = GgufValueType::I32;
    v.count = x.size();
    v.ints = x;
    return v;
}

void write_gguf(const std::string& path, const std::vector<std::pair<std::string, GgufValue>>& kv,
                const std::vector<std::pair<std::string, QuantizedTensor>>& tensors) {
    std::vector<GgufTensorPlan> plan;
    for (const auto& [name, q] : tensors) {
        NUANCE_CHECK(q.packed.defined() && q.packed.dtype() == DType::U8 && q.packed.is_contiguous(),
                     "write_gguf '", path, "': tensor '", name, "' has no packed bytes");
        plan.push_back({name, q.type, q.shape});
    }
    write_gguf(path, kv, plan, [&](size_t i) { return tensors[i].second; });
}

void write_gguf(const std::string& path, const std::vector<std::pair<std::string, GgufValue>>& kv,
                const std::vector<GgufTensorPlan>& plan, const std::function<QuantizedTensor(size_t)>& produce) {
    uint64_t alignment = 32;
    for (const auto& [k, v] : kv)
        if (k == "general.alignment") {
            NUANCE_CHECK(v.type == GgufValueType::U32 && v.u > 0 && (v.u & (v.u - 1)) == 0 && v.u <= (1u << 20),
                         "write_gguf '", path, "': general.alignment ", v.to_string(), " must be a u32 power of two");
            alignment = v.u;
        }
    std::string head = "GGUF";
    put<uint32_t>(head, 3);
    put<uint64_t>(head, plan.size());
    put<uint64_t>(head, kv.size());
    for (const auto& [k, v] : kv) {
        put_str(head, k);
        put<uint32_t>(head, (uint32_t)v.type);
        put_value(head, v);
    }
    uint64_t offset = 0;
    std::vector<uint64_t> offsets, sizes;
    for (const GgufTensorPlan& t : plan) {
        const GgmlTypeInfo& ti = ggml_type_info(t.type);
        NUANCE_CHECK(t.shape.size() <= 4, "write_gguf '", path, "': tensor '", t.name, "' ", shape_str(t.shape),
                     " has more than 4 dimensions");
        int64_t numel = 0;
        NUANCE_CHECK(shape_numel_checked(t.shape, &numel), "write_gguf '", path, "': tensor '", t.name, "' ",
                     shape_str(t.shape), ": the element count overflows");
        const int64_t row = t.shape.empty() ? 1 : t.shape.back();
        NUANCE_CHECK(row % ti.block == 0, "write_gguf '", path, "': tensor '", t.name, "' ", shape_str(t.shape),
                     ": rows of ", row, " values are not whole ", ti.name, " blocks of ", ti.block);
        put_str(head, t.name);
        put<uint32_t>(head, (uint32_t)t.shape.size());
        for (auto it = t.shape.rbegin(); it != t.shape.rend(); ++it) put<uint64_t>(head, (uint64_t)*it);
        put<uint32_t>(head, (uint32_t)t.type);
        offset = (offset + alignment - 1) / alignment * alignment;
        put<uint64_t>(head, offset);
        offsets.push_back(offset);
        sizes.push_back((uint64_t)(numel / ti.block * ti.bytes));
        offset = add_or_throw<uint64_t>(offset, sizes.back(), "write_gguf: data size");
    }
    head.resize((head.size() + alignment - 1) / alignment * alignment, '\0');
    write_file_atomic(path, [&](FILE* f) {
        if (std::fwrite(head.data(), 1, head.size(), f) != head.size()) return false;
        uint64_t at = 0;
        static const char zeros[64 << 10] = {};
        for (size_t i = 0; i < plan.size(); ++i) {
            for (uint64_t pad = offsets[i] - at; pad > 0;) {
                const size_t n = (size_t)std::min<uint64_t>(pad, sizeof(zeros));
                if (std::fwrite(zeros, 1, n, f) != n) return false;
                pad -= n;
            }
            const QuantizedTensor q = produce(i);
            NUANCE_CHECK(q.type == plan[i].type && q.shape == plan[i].shape && q.packed.defined() &&
                             q.packed.dtype() == DType::U8 && q.packed.is_contiguous() &&
                             (uint64_t)q.packed.nbytes() == sizes[i],
                         "write_gguf '", path, "': tensor '", plan[i].name, "' holds ",
                         q.packed.defined() ? q.packed.nbytes() : 0, " bytes of ", ggml_type_info(q.type).name, " ",
                         shape_str(q.shape), ", not the planned ", sizes[i], " of ", ggml_type_info(plan[i].type).name,
                         " ", shape_str(plan[i].shape));
            if (sizes[i] && std::fwrite(q.packed.raw(), 1, sizes[i], f) != sizes[i]) return false;
            at = offsets[i] + sizes[i];
        }
        return true;
    });
}

}  // namespace nuance
