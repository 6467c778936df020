#include "io/safetensors.h"

#include "io/atomic_file.h"

#include "backends/cpu/ggml_quants.h"
#include "core/checked.h"
#include "core/quantized_weight.h"

#include <algorithm>
#include <cmath>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <nlohmann/json.hpp>
#include <set>
#include <unistd.h>

namespace nuance {

namespace {
constexpr uint64_t kMaxHeader = 100000000;  // the format caps the header at 100 MB (safetensors' MAX_HEADER_SIZE)
constexpr size_t kMaxTensors = 1u << 20;      // real checkpoints hold at most tens of thousands
constexpr size_t kMaxDims = 8;

// The format (and the reference reader's Metadata::validate) requires the tensors, sorted by offset, to tile the
// data section exactly: no overlaps (two names aliasing the same bytes), no holes and no trailing bytes (which
// would let a file be something else as well, a polyglot). The header may list them in any order.
template <class Span>
void check_data_layout(std::vector<Span>& spans, uint64_t data_size, const std::string& path) {
    std::sort(spans.begin(), spans.end(),
              [](const Span& a, const Span& b) { return a.begin != b.begin ? a.begin < b.begin : a.end < b.end; });
    uint64_t expect = 0;
    const Span* prev = nullptr;
    for (const Span& s : spans) {
        if (s.begin < expect)
            fail(ErrorCode::Io, "safetensors file '", path, "': tensors '", *prev->name, "' (data_offsets [",
                 prev->begin, ", ", prev->end, "]) and '", *s.name, "' ([", s.begin, ", ", s.end, "]) overlap");
        if (s.begin > expect)
            fail(ErrorCode::Io, "safetensors file '", path, "': bytes [", expect, ", ", s.begin,
                 ") of the data section belong to no tensor (a hole before '", *s.name, "')");
        expect = s.end;
        prev = &s;
    }
    if (expect != data_size)
        fail(ErrorCode::Io, "safetensors file '", path, "': the tensors end at byte ", expect,
             " of the data section but it holds ", data_size, " bytes (trailing data)");
}

// n = numel bytes of FP8 (E4M3FN when e4m3, else E5M2) -> an owned F16 tensor. Exact; parallel for big tensors.
Tensor fp8_to_f16(const uint8_t* src, const Shape& shape, bool e4m3) {
    Tensor t = Tensor::empty(shape, DType::F16);
    uint16_t* d = t.data<uint16_t>();
    const int64_t n = t.numel();
    uint16_t table[256];
    for (int i = 0; i < 256; ++i) table[i] = e4m3 ? f8e4m3fn_to_f16((uint8_t)i) : f8e5m2_to_f16((uint8_t)i);
#pragma omp parallel for schedule(static) if (n > (1 << 20))
    for (int64_t i = 0; i < n; ++i) d[i] = table[src[i]];
    return t;
}
}  // namespace

DType parse_safetensors_dtype(const std::string& s) {
    if (s == "F32") return DType::F32;
    if (s == "F16") return DType::F16;
    if (s == "BF16") return DType::BF16;
    if (s == "F64") return DType::F64;
    if (s == "I64") return DType::I64;
    if (s == "I32") return DType::I32;
    if (s == "I16") return DType::I16;
    if (s == "I8") return DType::I8;
    if (s == "U8") return DType::U8;
    if (s == "BOOL") return DType::Bool;
    fail(ErrorCode::Unsupported, "unsupported safetensors dtype '", s, "'");
}

bool is_safetensors_file(const std::string& path) {
    const std::string b = read_file_prefix(path, 9);  // never blocks on a FIFO
    if (b.size() < 9) return false;
    uint64_t len = 0;
    for (int i = 7; i >= 0; --i) len = (len << 8) | (uint8_t)b[i];
    return len >= 2 && len <= kMaxHeader && b[8] == '{';
}

WeightFile load_safetensors(const std::string& path, Fp8Load fp8_load) {
    return load_safetensors(map_file(path), path, fp8_load);
}

WeightFile load_safetensors(std::shared_ptr<Storage> storage, const std::string& path, Fp8Load fp8_load) {
    NUANCE_CHECK_CODE(storage != nullptr, Io, "safetensors file '", path, "': no data");
    const uint64_t fsize = storage->size();
    const uint8_t* base = storage->data();
    NUANCE_CHECK_CODE(fsize >= 8, Io, "safetensors file '", path, "' is truncated: ", fsize, " bytes");
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; --i) hlen = (hlen << 8) | base[i];
    NUANCE_CHECK_CODE(hlen <= kMaxHeader, Io, "safetensors file '", path, "': header length ", hlen,
                      " is implausible (the format allows at most ", kMaxHeader, ")");
    NUANCE_CHECK_CODE(hlen <= fsize - 8, Io, "safetensors file '", path, "' is truncated: header of ", hlen,
                      " bytes but the file has ", fsize, " bytes");
    // Duplicate tensor names are forbidden by the format; nlohmann would silently keep the last one.
    std::set<std::string> seen;
    std::string duplicate;
    const nlohmann::json::parser_callback_t cb = [&](int depth, nlohmann::json::parse_event_t ev,
                                                     nlohmann::json& parsed) {
        if (ev == nlohmann::json::parse_event_t::key && depth == 1 && duplicate.empty() && parsed.is_string() &&
            !seen.insert(parsed.get<std::string>()).second)
            duplicate = parsed.get<std::string>();
        return true;
    };
    nlohmann::json header;
    try {
        header = nlohmann::json::parse(base + 8, base + 8 + hlen, cb);
    } catch (const std::exception& e) {
        fail(ErrorCode::Io, "safetensors file '", path, "': header is not valid JSON (", e.what(), ")");
    }
    NUANCE_CHECK_CODE(header.is_object(), Io, "safetensors file '", path, "': header is not a JSON object");
    NUANCE_CHECK_CODE(duplicate.empty(), Io, "safetensors file '", path, "': tensor name '", duplicate,
                      "' appears twice in the header");
    NUANCE_CHECK_CODE(header.size() <= kMaxTensors + 1, Io, "safetensors file '", path, "': header lists ",
                      header.size(), " entries (at most ", kMaxTensors, " tensors are supported)");
    const uint64_t data_start = 8 + hlen;
    const uint64_t data_size = fsize - data_start;

    struct Span {
        uint64_t begin, end;
        const std::string* name;
    };
    std::vector<Span> spans;
    spans.reserve(header.size());
    WeightFile wf;
    wf.path = path;
    for (auto it = header.begin(); it != header.end(); ++it) {
        const std::string& name = it.key();
        const auto& v = it.value();
        if (name == "__metadata__") {
            if (v.is_object())
                for (auto m = v.begin(); m != v.end(); ++m)
                    if (m.value().is_string()) wf.metadata[m.key()] = m.value().get<std::string>();
            continue;
        }
        auto bad = [&](const std::string& why) {
            fail(ErrorCode::Io, "safetensors file '", path, "': tensor '", name, "': ", why);
        };
        if (!v.is_object() || !v.contains("dtype") || !v.contains("shape") || !v.contains("data_offsets"))
            bad("entry needs dtype, shape and data_offsets");
        if (!v["dtype"].is_string()) bad("dtype is not a string");
        DType dt;
        // FP8 tensors (t5xxl_fp8_e4m3fn, Flux fp8 files) have no DType: sized as bytes here, converted to F16
        // (exactly) below.
        const std::string dts = v["dtype"].get<std::string>();
        const int fp8 = dts == "F8_E4M3" ? 1 : dts == "F8_E5M2" ? 2 : 0;
        try {
            dt = fp8 ? DType::U8 : parse_safetensors_dtype(dts);
        } catch (const Error& e) {
            bad(e.what());
        }
        const auto& js = v["shape"];
        const auto& jo = v["data_offsets"];
        if (!js.is_array() || js.size() > kMaxDims)
            bad(str("shape must be an array of at most ", kMaxDims, " dimensions"));
        if (!jo.is_array() || jo.size() != 2 || !jo[0].is_number_unsigned() || !jo[1].is_number_unsigned())
            bad("data_offsets must be two unsigned integers");
        Shape shape;
        for (const auto& d : js) {
            if (!d.is_number_unsigned()) bad("shape entries must be unsigned integers");
            const uint64_t x = d.get<uint64_t>();
            if (x > (uint64_t)INT64_MAX) bad(str("dimension ", x, " is implausible"));
            shape.push_back((int64_t)x);
        }
        int64_t need = 0;
        if (!shape_nbytes_checked(shape, dt, &need))
            bad(str("shape ", shape, " of ", dts, " overflows (more than 2^63 bytes)"));
        const uint64_t b = jo[0].get<uint64_t>(), e = jo[1].get<uint64_t>();
        if (b > e || e > data_size)
            bad(str("data_offsets [", b, ", ", e, "] outside the data section of ", data_size,
                    " bytes (file truncated or corrupt)"));
        if (e - b != (uint64_t)need)
            bad(str("data_offsets span ", e - b, " bytes but ", dts, shape, " needs ", need));
        spans.push_back({b, e, &name});
        const uint64_t abs_off = data_start + b;  // <= fsize: no overflow
        if (fp8 && fp8_load == Fp8Load::KeepMatrices && shape.size() >= 2 && need > 0) {
            const GgmlType gt = fp8 == 1 ? GgmlType::F8_E4M3 : GgmlType::F8_E5M2;
            wf.tensors[name] = make_quantized_weight((uint32_t)gt, fp8 == 1 ? "F8_E4M3" : "F8_E5M2", 1, 1,
                                                     base + abs_off, (size_t)need, storage, shape,
                                                     storage->file_backed());
        } else if (fp8) {
            wf.tensors[name] = fp8_to_f16(base + abs_off, shape, fp8 == 1);
        } else if (abs_off % dtype_size(dt) == 0) {
            wf.tensors[name] = Tensor::from_storage(storage, (size_t)abs_off, shape, dt);
        } else {  // unaligned in the file: copy once so kernels see aligned memory
            wf.tensors[name] = Tensor::from_bytes(base + abs_off, shape, dt);
        }
    }
    check_data_layout(spans, data_size, path);
    bool scaled = false;
    for (const auto& [k, v] : wf.tensors)
        scaled = scaled || k == "scaled_fp8" || k.ends_with(".scaled_fp8");
    if (scaled) fold_fp8_scales(wf.tensors, path);
    return wf;
}

void fold_fp8_scales(std::map<std::string, Tensor>& t, const std::string& source) {
    const std::string sw = ".scale_weight", si = ".scale_input";
    std::vector<std::string> drop;
    for (auto& [key, scale] : t) {
        if (key == "scaled_fp8" || key.ends_with(".scaled_fp8") || key.ends_with(si)) drop.push_back(key);
        if (!key.ends_with(sw)) continue;
        drop.push_back(key);
        const std::string wkey = key.substr(0, key.size() - sw.size()) + ".weight";
        auto w = t.find(wkey);
        NUANCE_CHECK(w != t.end(), "'", source, "': '", key, "' scales '", wkey, "', which is not in the file");
        NUANCE_CHECK(scale.numel() == 1 && dtype_is_float(scale.dtype()) && !is_quantized_storage(scale), "'", source,
                     "': '", key, "' must be one float, got ", scale.str());
        const float s = scale.f32().contiguous().data<float>()[0];
        if (const auto v = quantized_weight_view(w->second)) {
            // Kept as FP8 (or blocks): the scale travels with the handle; the products apply it. Every value must
            // stay finite in f16, as the widened path below requires (the type's largest code times the scale).
            const GgmlTypeInfo* ti = ggml_type_info(v->ggml_type);
            const float largest = ti && ti->type == GgmlType::F8_E5M2 ? 57344.0f : 448.0f;
            NUANCE_CHECK(std::isfinite(s) && s != 0.0f && std::fabs(s) * largest <= 65504.0f, "'", source, "': '",
                         wkey, "' times its scale_weight ", s, " is not finite in f16 (corrupt scale?)");
            w->second = quantized_weight_with_scale(w->second, s);
            continue;
        }
        NUANCE_CHECK(dtype_is_float(w->second.dtype()), "'", source, "': '", wkey, "' is ", w->second.str(),
                     ", not a float tensor to scale");
        const Tensor src = w->second.f32().contiguous();
        const bool to_f16 = w->second.dtype() == DType::F16;
        Tensor out = Tensor::empty(src.shape(), to_f16 ? DType::F16 : DType::F32);
        const float* ps = src.data<float>();
        bool finite = std::isfinite(s);
        for (int64_t i = 0; i < src.numel(); ++i) {
            const float x = ps[i] * s;
            finite = finite && std::isfinite(x) && (!to_f16 || std::fabs(x) <= 65504.0f);
            if (to_f16) out.data<uint16_t>()[i] = f32_to_f16(x);
            else out.data<float>()[i] = x;
        }
        NUANCE_CHECK(finite, "'", source, "': '", wkey, "' times its scale_weight ", s,
                     " is not finite in f16 (corrupt scale?)");
        w->second = out;
    }
    for (const auto& k : drop) t.erase(k);
}

void save_safetensors(const std::string& path, const std::vector<std::pair<std::string, Tensor>>& tensors,
                      const std::map<std::string, std::string>& metadata) {
    nlohmann::json header = nlohmann::json::object();
    if (!metadata.empty()) header["__metadata__"] = metadata;
    uint64_t off = 0;
    for (const auto& [name, t] : tensors) {
        NUANCE_CHECK(t.defined(), "save_safetensors: tensor '", name, "' is undefined");
        NUANCE_CHECK(!header.contains(name), "save_safetensors: duplicate tensor name '", name, "'");
        const uint64_t n = t.nbytes();
        header[name] = {{"dtype", dtype_name(t.dtype())}, {"shape", t.shape()}, {"data_offsets", {off, off + n}}};
        off += n;
    }
    std::string hs = header.dump();
    while ((hs.size() + 8) % 8) hs.push_back(' ');
    write_file_atomic(path, [&](FILE* f) {
        uint8_t len[8];
        for (int i = 0; i < 8; ++i) len[i] = (uint8_t)((uint64_t)hs.size() >> (8 * i));
        if (std::fwrite(len, 1, 8, f) != 8 || std::fwrite(hs.data(), 1, hs.size(), f) != hs.size()) return false;
        for (const auto& [name, t] : tensors) {
            const Tensor c = t.contiguous();
            if (std::fwrite(c.raw(), 1, c.nbytes(), f) != c.nbytes()) return false;
        }
        return true;
    });
}

}  // namespace nuance
