// release_file_pages (core/quantized_weight.h) and the models' use of it: a file-mapped tensor's pages leave the
// process (its resident size in /proc/self/smaps falls) and read back with the same bytes; owned memory is never
// touched; one-shot generation that releases the text encoders' and the denoiser's pages makes the same image.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>

#include "../train/data_test_util.h"
#include "backends/backend.h"
#include "backends/cpu/ggml_quants.h"
#include "backends/cpu/quantized_matmul.h"
#include "core/quantized_weight.h"
#include "io/weight_file.h"
#include "models/model_family.h"
#include "models/random_model.h"
#include "ops/ops.h"
#include "pipelines/generate.h"

namespace nuance {
namespace {

// Resident kB of the mapping that holds `p` (/proc/self/smaps), -1 if none does.
int64_t resident_kb_of_mapping(const void* p) {
    std::ifstream f("/proc/self/smaps");
    std::string line;
    bool inside = false;
    const uintptr_t a = reinterpret_cast<uintptr_t>(p);
    while (std::getline(f, line)) {
        unsigned long lo = 0, hi = 0;
        if (std::sscanf(line.c_str(), "%lx-%lx ", &lo, &hi) == 2 && line.find('-') < 16) {
            inside = a >= lo && a < hi;
            continue;
        }
        if (inside && line.rfind("Rss:", 0) == 0) {
            std::istringstream s(line.substr(4));
            int64_t kb = -1;
            s >> kb;
            return kb;
        }
    }
    return -1;
}

uint64_t checksum(const Tensor& t) {
    const uint8_t* d = static_cast<const uint8_t*>(t.raw());
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < t.nbytes(); ++i) h = (h ^ d[i]) * 1099511628211ull;
    return h;
}

TEST(ReleaseFilePages, MappedTensorLeavesTheProcessAndReadsBackTheSame) {
    test::TempDir dir("release_pages");
    const std::string path = dir / "blob.bin";
    constexpr int64_t kBytes = 4 << 20;
    {
        std::ofstream f(path, std::ios::binary);
        for (int64_t i = 0; i < kBytes; ++i) f.put((char)(i * 7 + i / 4096));
    }
    const auto storage = map_file(path);
    ASSERT_TRUE(storage->file_backed());
    const Tensor t = Tensor::from_storage(storage, 0, {kBytes}, DType::U8);
    const uint64_t before = checksum(t);  // touches every page
    const int64_t rss0 = resident_kb_of_mapping(t.raw());
    ASSERT_GE(rss0, 3 * 1024) << "the mapping's pages should be resident after a full read";
    EXPECT_EQ(release_file_pages(t), (size_t)kBytes);  // a whole-file mapping starts on a page
    const int64_t rss1 = resident_kb_of_mapping(t.raw());
    EXPECT_LT(rss1, 256) << "resident kB after the release: " << rss1 << " (before: " << rss0 << ")";
    EXPECT_EQ(checksum(t), before);  // the pages come back from the file with the same bytes

    // Only whole pages inside the tensor go: 9000 bytes from offset 100 cover one full page (4096..8191).
    const Tensor part = Tensor::from_storage(storage, 100, {9000}, DType::U8);
    EXPECT_EQ(release_file_pages(part), 4096u);
    EXPECT_EQ(release_file_pages(Tensor::from_storage(storage, 100, {3000}, DType::U8)), 0u);
    // A quantized handle over the file: its payload's pages.
    QuantizedTensor q;
    q.type = GgmlType::Q8_0;
    q.shape = {1024, 128};
    q.packed = Tensor::from_storage(storage, 0, {1024, 4 * 34}, DType::U8);
    const Tensor handle = quantized_weight_tensor(q, {1024, 128});
    ASSERT_TRUE(quantized_weight_view(handle).has_value());
    EXPECT_EQ(release_file_pages(handle), (size_t)(1024 * 4 * 34) / 4096 * 4096);
    // Memory the process owns, and undefined tensors: nothing.
    EXPECT_EQ(release_file_pages(Tensor::zeros({1 << 20})), 0u);
    EXPECT_EQ(release_file_pages(Tensor()), 0u);
}

// The CLI's one-shot settings (text encoder pages after the prompt, every non-VAE page before the decode) give the
// image of a run that keeps everything, and a second run on the same model (its pages read again) gives it too.
TEST(ReleaseFilePages, OneShotGenerationMakesTheSameImage) {
    test::TempDir dir("release_pages_gen");
    RandomModelOptions ro;
    ro.tiny = true;
    ro.dtype = DType::F32;
    write_random_checkpoint(dir / "tiny.safetensors", ro);
    const auto m = load_model(dir / "tiny.safetensors");
    GenerateParams p;
    p.prompt = "a red fox";
    p.width = p.height = 64;
    p.steps = 2;
    p.seed = 3;
    p.sampler = "euler";
    const std::vector<uint8_t> keep = generate(*m, p).at(0).image.pixels;
    p.release_text_encoder_weights = true;
    p.release_weights_before_decode = true;
    EXPECT_EQ(generate(*m, p).at(0).image.pixels, keep);
    EXPECT_EQ(generate(*m, p).at(0).image.pixels, keep);
    // Explicit calls: the text encoders' release covers no more than every non-VAE module's.
    EXPECT_LE(m->release_text_encoder_weights(), m->release_weights_except_vae());
    // bf16 products pack the weights (the backend's cache): the release drops the text encoders' packed copies, and
    // the next run packs them again.
    ModelLoadOptions bf;
    bf.precision = Precision::BF16;
    const auto mb = load_model(dir / "tiny.safetensors", bf);
    GenerateParams pb = p;
    pb.release_text_encoder_weights = pb.release_weights_before_decode = false;  // keep the packed copies here
    const std::vector<uint8_t> want = generate(*mb, pb).at(0).image.pixels;
    const size_t packed = packed_weights_bytes();
    ASSERT_GT(packed, 0u);
    EXPECT_GT(mb->release_text_encoder_weights(), 0u);
    EXPECT_LT(packed_weights_bytes(), packed);
    EXPECT_EQ(generate(*mb, pb).at(0).image.pixels, want);
    EXPECT_EQ(packed_weights_bytes(), packed);
    p.release_text_encoder_weights = p.release_weights_before_decode = false;
    EXPECT_EQ(generate(*m, p).at(0).image.pixels, keep);
}

// A Q8_0 weight mapped from a file: W8A8 keeps its repacked tiles (Int8PackCache::Auto, where the VNNI kernel runs)
// and gives the file's pages back, so the blocks are not held twice; the product is the in-memory weight's.
TEST(ReleaseFilePages, KeptInt8TilesReleaseTheMappedBlocks) {
    if (!cpu::has_vnni_kernel()) GTEST_SKIP() << "the tiles are the VNNI kernel's; this CPU has no AVX-512 VNNI";
    const bool w8a8 = cpu::q8_w8a8();
    const cpu::Int8PackCache mode = cpu::int8_pack_cache();
    cpu::set_q8_w8a8(true);
    cpu::set_int8_pack_cache(cpu::Int8PackCache::Auto);
    cpu::clear_int8_pack_cache();
    test::TempDir dir("release_pages_int8");
    const std::string path = dir / "q8.bin";
    const int64_t N = 256, K = 1024;
    std::vector<float> wv((size_t)(N * K));
    for (size_t i = 0; i < wv.size(); ++i) wv[i] = (float)((i * 2654435761u) % 1000) / 500.0f - 1.0f;
    const QuantizedTensor q = quantize(Tensor::from_vector(wv, {N, K}), GgmlType::Q8_0);
    {
        std::ofstream f(path, std::ios::binary);
        f.write(static_cast<const char*>(q.packed.raw()), (std::streamsize)q.packed.nbytes());
    }
    const auto storage = map_file(path);
    QuantizedTensor mapped = q;
    mapped.packed = Tensor::from_storage(storage, 0, q.packed.shape(), DType::U8);
    const Tensor w_file = quantized_weight_tensor(mapped, {N, K});
    const Tensor w_mem = quantized_weight_tensor(q, {N, K});
    std::vector<float> xv((size_t)(4 * K));
    for (size_t i = 0; i < xv.size(); ++i) xv[i] = (float)((i * 40503u) % 777) / 388.0f - 1.0f;
    const Tensor x = Tensor::from_vector(xv, {4, K});
    const Tensor y_mem = linear(x, w_mem, Tensor(), Precision::BF16);
    EXPECT_EQ(cpu::int8_pack_cache_bytes(), 0u) << "owned memory: no kept copy";
    checksum(mapped.packed);  // every page resident
    ASSERT_GE(resident_kb_of_mapping(mapped.packed.raw()), (int64_t)(q.packed.nbytes() / 1024) - 8);
    const Tensor y_file = linear(x, w_file, Tensor(), Precision::BF16);
    EXPECT_GT(cpu::int8_pack_cache_bytes(), (size_t)(N * K));
    EXPECT_LT(resident_kb_of_mapping(mapped.packed.raw()), 16) << "the mapped blocks should be given back";
    ASSERT_EQ(y_file.numel(), y_mem.numel());
    EXPECT_EQ(std::memcmp(y_file.raw(), y_mem.raw(), y_mem.nbytes()), 0);
    EXPECT_EQ(std::memcmp(linear(x, w_file, Tensor(), Precision::BF16).raw(), y_mem.raw(), y_mem.nbytes()), 0);
    cpu::clear_int8_pack_cache();
    cpu::set_int8_pack_cache(mode);
    cpu::set_q8_w8a8(w8a8);
}

}  // namespace
}  // namespace nuance
