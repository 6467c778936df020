// Writing a safetensors file from (name, dtype string, shape, raw bytes) in tests: dtypes nuance has no DType for
// (F8_E4M3, F8_E5M2) and hand-made hostile layouts.
#pragma once
#include <cstdint>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace nuance::test {

struct RawTensor {
    std::string name, dtype;
    Shape shape;
    std::string bytes;
};

inline void write_raw_safetensors(const std::string& path, const std::vector<RawTensor>& ts) {
    nlohmann::json h = nlohmann::json::object();
    uint64_t off = 0;
    for (const auto& t : ts) {
        h[t.name] = {{"dtype", t.dtype}, {"shape", t.shape}, {"data_offsets", {off, off + t.bytes.size()}}};
        off += t.bytes.size();
    }
    std::string hs = h.dump();
    while ((hs.size() + 8) % 8) hs.push_back(' ');
    std::ofstream f(path, std::ios::binary);
    for (int i = 0; i < 8; ++i) f.put((char)((uint64_t)hs.size() >> (8 * i)));
    f << hs;
    for (const auto& t : ts) f << t.bytes;
}

}  // namespace nuance::test
