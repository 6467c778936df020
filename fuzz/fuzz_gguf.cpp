// GGUF reader (src/io/gguf.cpp, gguf_layout.cpp) and ggml dequantization on hostile bytes: header counts, metadata of
// every value type (nested arrays, string lengths), tensor infos (dims, types, offsets), alignment, orig_shape.
// Every tensor it returns is touched at both ends; a quantized one is also dequantized by the scalar reference and
// the vector kernels, which must agree bit for bit.
#include <cstring>
#include <vector>

#include "backends/cpu/ggml_quants.h"
#include "fuzz_util.h"
#include "io/gguf.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    nuance::fuzz::expect_ok_or_error([&] {
        const nuance::GgufFile g = nuance::read_gguf(nuance::fuzz::exact_storage(data, size), "<fuzz>");
        for (const auto& kv : g.kv) (void)kv.second.to_string();
        for (const auto& t : g.tensors) {
            const nuance::GgmlTypeInfo* ti = nuance::ggml_type_info(t.type);
            if (ti->block == 1 || !ti->dequantizable || t.shape.empty() || t.nbytes > (1u << 20)) continue;
            const nuance::QuantizedTensor q = g.quantized(t);
            const int64_t n = q.row_length();
            if (n == 0 || q.packed.numel() == 0) continue;
            std::vector<float> a((size_t)n), b((size_t)n);
            nuance::dequantize_row_scalar(q.type, q.packed.data<uint8_t>(), a.data(), n);
            nuance::dequantize_row_vector(q.type, q.packed.data<uint8_t>(), b.data(), n);
            if (std::memcmp(a.data(), b.data(), a.size() * 4) != 0) __builtin_trap();
        }
        uint64_t total = 0;
        for (const auto& t : g.tensors) total += t.nbytes;
        if (total > (64u << 20)) return;  // dequantizing a 2 GB claim of a tiny file would only test the allocator
        const nuance::WeightFile wf = nuance::gguf_to_weights(g);
        for (const auto& [name, t] : wf.tensors) (void)nuance::fuzz::touch(t);
    });
    return 0;
}
