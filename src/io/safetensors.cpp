#include "io/safetensors.h"

#include "io/atomic_file.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <nlohmann/json.hpp>
#include <unistd.h>

namespace nuance {

namespace {
constexpr uint64_t kMaxHeader = 100ull << 20;  // the format caps the header at 100 MB
}

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
    FILE* f = std::fopen(path.c_str(), "rb");
    if (!f) return false;
    uint8_t buf[9];
    const size_t n = std::fread(buf, 1, 9, f);
    std::fclose(f);
    if (n < 9) return false;
    uint64_t len = 0;
    for (int i = 7; i >= 0; --i) len = (len << 8) | buf[i];
    return len >= 2 && len <= kMaxHeader && buf[8] == '{';
}

WeightFile load_safetensors(const std::string& path) {
    auto storage = map_file(path);
    const size_t fsize = storage->size();
    const uint8_t* base = storage->data();
    NUANCE_CHECK_CODE(fsize >= 8, Io, "safetensors file '", path, "' is truncated: ", fsize, " bytes");
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; --i) hlen = (hlen << 8) | base[i];
    NUANCE_CHECK_CODE(hlen <= kMaxHeader, Io, "safetensors file '", path, "': header length ", hlen, " is implausible");
    NUANCE_CHECK_CODE(hlen <= fsize - 8, Io, "safetensors file '", path, "' is truncated: header of ", hlen,
                      " bytes but the file has ", fsize, " bytes");
    nlohmann::json header;
    try {
        header = nlohmann::json::parse(base + 8, base + 8 + hlen);
    } catch (const std::exception& e) {
        fail(ErrorCode::Io, "safetensors file '", path, "': header is not valid JSON (", e.what(), ")");
    }
    NUANCE_CHECK_CODE(header.is_object(), Io, "safetensors file '", path, "': header is not a JSON object");
    const size_t data_start = 8 + hlen;
    const size_t data_size = fsize - data_start;

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
        try {
            dt = parse_safetensors_dtype(v["dtype"].get<std::string>());
        } catch (const Error& e) {
            bad(e.what());
        }
        const auto& js = v["shape"];
        const auto& jo = v["data_offsets"];
        if (!js.is_array() || js.size() > 16) bad("shape must be an array of at most 16 dimensions");
        if (!jo.is_array() || jo.size() != 2 || !jo[0].is_number_unsigned() || !jo[1].is_number_unsigned())
            bad("data_offsets must be two unsigned integers");
        Shape shape;
        for (const auto& d : js) {
            if (!d.is_number_unsigned()) bad("shape entries must be unsigned integers");
            const uint64_t x = d.get<uint64_t>();
            if (x > (1ull << 40)) bad(str("dimension ", x, " is implausible"));
            shape.push_back((int64_t)x);
        }
        int64_t numel = 0;
        try {
            numel = shape_numel(shape);
        } catch (const Error&) {
            bad(str("shape ", shape, " overflows"));
        }
        const uint64_t b = jo[0].get<uint64_t>(), e = jo[1].get<uint64_t>();
        if (b > e || e > data_size)
            bad(str("data_offsets [", b, ", ", e, "] outside the data section of ", data_size,
                    " bytes (file truncated or corrupt)"));
        const uint64_t need = (uint64_t)numel * dtype_size(dt);
        if (e - b != need) bad(str("data_offsets span ", e - b, " bytes but ", dtype_name(dt), shape, " needs ", need));
        const size_t abs_off = data_start + b;
        if (abs_off % dtype_size(dt) == 0) {
            wf.tensors[name] = Tensor::from_storage(storage, abs_off, shape, dt);
        } else {  // unaligned in the file: copy once so kernels see aligned memory
            wf.tensors[name] = Tensor::from_bytes(base + abs_off, shape, dt);
        }
    }
    return wf;
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
