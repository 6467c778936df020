#include "models/random_writer.h"

#include "core/fp8.h"

#include <cmath>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <set>

#include "core/error.h"
#include "core/fp8.h"
#include "core/rng.h"
#include "io/atomic_file.h"

namespace nuance {

namespace {

bool ends_with(const std::string& s, const std::string& e) {
    return s.size() >= e.size() && s.compare(s.size() - e.size(), e.size(), e) == 0;
}

// The last dotted component before ".weight" ("layer_norm" in "...layer_norm.weight").
std::string module_leaf(const std::string& key) {
    const size_t end = key.rfind('.');
    if (end == std::string::npos) return key;
    const size_t start = key.rfind('.', end - 1);
    return key.substr(start == std::string::npos ? 0 : start + 1, end - (start == std::string::npos ? 0 : start + 1));
}

uint64_t mix(uint64_t x) {  // splitmix64's finaliser
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

uint64_t tensor_seed(uint64_t seed, const std::string& key) {
    uint64_t h = 0xcbf29ce484222325ull;  // FNV-1a of the key
    for (unsigned char c : key) h = (h ^ c) * 0x100000001b3ull;
    return mix(seed ^ mix(h));
}

void encode(const float* src, int64_t n, DType dt, std::vector<uint8_t>& out) {
    out.resize((size_t)n * dtype_size(dt));
    if (dt == DType::F32) {
        std::memcpy(out.data(), src, out.size());
    } else {
        uint16_t* o = reinterpret_cast<uint16_t*>(out.data());
        for (int64_t i = 0; i < n; ++i) o[i] = dt == DType::F16 ? f32_to_f16(src[i]) : f32_to_bf16(src[i]);
    }
}

}  // namespace

RandomInit random_init_of(const std::string& key, const Shape& shape) {
    if (shape.size() >= 2) return RandomInit::FanIn;
    if (ends_with(key, ".scale")) return RandomInit::Ones;
    if (ends_with(key, ".weight")) {
        const std::string leaf = module_leaf(key);
        if (leaf.find("norm") != std::string::npos || leaf.rfind("ln_", 0) == 0) return RandomInit::Ones;
    }
    return RandomInit::Small;
}

int64_t write_random_safetensors(const std::string& path, const std::vector<RandomTensor>& tensors, DType dtype,
                                 uint64_t seed, const std::map<std::string, std::string>& metadata, bool fp8_matrices) {
    auto is_fp8 = [&](const RandomTensor& t) {
        return fp8_matrices && !t.value.defined() && t.shape.size() >= 2 && ends_with(t.key, ".weight");
    };
    NUANCE_CHECK(dtype == DType::F32 || dtype == DType::F16 || dtype == DType::BF16, "make-random '", path,
                 "': dtype ", dtype_name(dtype), " (valid: F32, F16, BF16)");
    NUANCE_CHECK(!tensors.empty(), "make-random '", path, "': no tensors to write");
    nlohmann::json header = nlohmann::json::object();
    if (!metadata.empty()) header["__metadata__"] = metadata;
    std::set<std::string> seen;
    uint64_t off = 0;
    int64_t total = 0;
    const uint64_t esize = dtype_size(dtype);
    for (const RandomTensor& t : tensors) {
        NUANCE_CHECK(!t.key.empty() && t.key != "__metadata__", "make-random '", path, "': bad tensor name '", t.key,
                     "'");
        NUANCE_CHECK(seen.insert(t.key).second, "make-random '", path, "': duplicate tensor name '", t.key, "'");
        int64_t n = 1;
        for (int64_t d : t.shape) {
            NUANCE_CHECK(d >= 1, "make-random '", path, "': tensor '", t.key, "' has shape ", t.shape);
            NUANCE_CHECK(!__builtin_mul_overflow(n, d, &n), "make-random '", path, "': tensor '", t.key, "' shape ",
                         t.shape, " overflows");
        }
        if (t.value.defined())
            NUANCE_CHECK_CODE(t.value.shape() == t.shape, Internal, "make-random: tensor '", t.key, "' is ",
                              t.value.shape(), ", listed as ", t.shape);
        uint64_t bytes = 0, end = 0;
        NUANCE_CHECK(!__builtin_mul_overflow((uint64_t)n, is_fp8(t) ? 1 : esize, &bytes) && !__builtin_add_overflow(off, bytes, &end) &&
                         !__builtin_add_overflow(total, n, &total),
                     "make-random '", path, "': tensor '", t.key, "' puts the file past 2^64 bytes");
        header[t.key] = {{"dtype", is_fp8(t) ? "F8_E4M3" : dtype_name(dtype)}, {"shape", t.shape},
                         {"data_offsets", {off, end}}};
        off = end;
    }
    std::string hs = header.dump();
    while ((hs.size() + 8) % 8) hs.push_back(' ');
    constexpr int64_t kChunk = int64_t(1) << 22;  // 4 Mi values (16 MiB of floats) at a time
    write_file_atomic(path, [&](FILE* f) {
        uint8_t len[8];
        for (int i = 0; i < 8; ++i) len[i] = (uint8_t)((uint64_t)hs.size() >> (8 * i));
        if (std::fwrite(len, 1, 8, f) != 8 || std::fwrite(hs.data(), 1, hs.size(), f) != hs.size()) return false;
        std::vector<float> buf;
        std::vector<uint8_t> bytes;
        for (const RandomTensor& t : tensors) {
            int64_t n = 1;
            for (int64_t d : t.shape) n *= d;
            if (t.value.defined()) {
                const Tensor c = t.value.to(DType::F32).contiguous();
                encode(c.data<float>(), n, dtype, bytes);
                if (std::fwrite(bytes.data(), 1, bytes.size(), f) != bytes.size()) return false;
                continue;
            }
            const RandomInit init = random_init_of(t.key, t.shape);
            const float scale = init == RandomInit::FanIn ? 1.0f / std::sqrt((float)(n / t.shape[0])) : 0.02f;
            const auto rng = make_rng(RngKind::Cpu, tensor_seed(seed, t.key));
            for (int64_t done = 0; done < n; done += kChunk) {
                const int64_t m = std::min(kChunk, n - done);
                buf.resize((size_t)m);
                if (init == RandomInit::Ones) {
                    std::fill(buf.begin(), buf.end(), 1.0f);
                } else {
                    rng->fill_randn(buf.data(), m);
                    for (float& v : buf) v *= scale;
                }
                if (is_fp8(t)) {
                    bytes.resize((size_t)m);
                    for (int64_t i = 0; i < m; ++i) bytes[(size_t)i] = f32_to_f8e4m3fn(buf[(size_t)i]);
                } else {
                    encode(buf.data(), m, dtype, bytes);
                }
                if (std::fwrite(bytes.data(), 1, bytes.size(), f) != bytes.size()) return false;
            }
        }
        return true;
    });
    return total;
}

}  // namespace nuance
