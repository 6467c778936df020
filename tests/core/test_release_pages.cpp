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

#include "../test_util.h"
#include "../train/data_test_util.h"
#include "backends/backend.h"
#include "backends/cpu/ggml_quants.h"
#include "backends/cpu/quantized_matmul.h"
#include "core/allocator.h"
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

struct Int8CacheScope {  // W8A8 on, this tile-cache mode and an empty cache for one test; then as before
    bool w8a8 = cpu::q8_w8a8();
    cpu::Int8PackCache mode = cpu::int8_pack_cache();
    explicit Int8CacheScope(cpu::Int8PackCache m) {
        cpu::set_q8_w8a8(true);
        cpu::set_int8_pack_cache(m);
        cpu::clear_int8_pack_cache();
    }
    ~Int8CacheScope() {
        cpu::clear_int8_pack_cache();
        cpu::set_int8_pack_cache(mode);
        cpu::set_q8_w8a8(w8a8);
    }
};

// A [N, K] Q8_0 weight in memory and the same blocks written to `path` and mapped back.
struct Q8Pair {
    QuantizedTensor mem, mapped;
};
Q8Pair q8_in_memory_and_mapped(const std::string& path, int64_t N, int64_t K) {
    std::vector<float> wv((size_t)(N * K));
    for (size_t i = 0; i < wv.size(); ++i) wv[i] = (float)((i * 2654435761u) % 1000) / 500.0f - 1.0f;
    Q8Pair r;
    r.mem = quantize(Tensor::from_vector(wv, {N, K}), GgmlType::Q8_0);
    {
        std::ofstream f(path, std::ios::binary);
        f.write(static_cast<const char*>(r.mem.packed.raw()), (std::streamsize)r.mem.packed.nbytes());
    }
    r.mapped = r.mem;
    r.mapped.packed = Tensor::from_storage(map_file(path), 0, r.mem.packed.shape(), DType::U8);
    return r;
}

Tensor input_rows(int64_t M, int64_t K) {
    std::vector<float> xv((size_t)(M * K));
    for (size_t i = 0; i < xv.size(); ++i) xv[i] = (float)((i * 40503u) % 777) / 388.0f - 1.0f;
    return Tensor::from_vector(xv, {M, K});
}

// A Q8_0 weight mapped from a file: W8A8 keeps its repacked tiles (Int8PackCache::Auto, where the VNNI kernel runs)
// and gives the file's pages back, so the blocks are not held twice; the product is the in-memory weight's.
TEST(ReleaseFilePages, KeptInt8TilesReleaseTheMappedBlocks) {
    if (!cpu::has_vnni_kernel()) GTEST_SKIP() << "the tiles are the VNNI kernel's; this CPU has no AVX-512 VNNI";
    Int8CacheScope automatic(cpu::Int8PackCache::Auto);
    test::TempDir dir("release_pages_int8");
    const int64_t N = 256, K = 1024;
    const Q8Pair q = q8_in_memory_and_mapped(dir / "q8.bin", N, K);
    const Tensor w_file = quantized_weight_tensor(q.mapped, {N, K});
    const Tensor w_mem = quantized_weight_tensor(q.mem, {N, K});
    const Tensor x = input_rows(4, K);
    const Tensor y_mem = linear(x, w_mem, Tensor(), Precision::BF16);
    EXPECT_EQ(cpu::int8_pack_cache_bytes(), 0u) << "owned memory: no kept copy";
    checksum(q.mapped.packed);  // every page resident
    ASSERT_GE(resident_kb_of_mapping(q.mapped.packed.raw()), (int64_t)(q.mem.packed.nbytes() / 1024) - 8);
    const Tensor y_file = linear(x, w_file, Tensor(), Precision::BF16);
    EXPECT_GT(cpu::int8_pack_cache_bytes(), (size_t)(N * K));
    EXPECT_LT(resident_kb_of_mapping(q.mapped.packed.raw()), 16) << "the mapped blocks should be given back";
    ASSERT_EQ(y_file.numel(), y_mem.numel());
    EXPECT_EQ(std::memcmp(y_file.raw(), y_mem.raw(), y_mem.nbytes()), 0);
    EXPECT_EQ(std::memcmp(linear(x, w_file, Tensor(), Precision::BF16).raw(), y_mem.raw(), y_mem.nbytes()), 0);
}

struct BudgetScope {  // a packed-weights budget for one test, then the one before; empty caches around it
    size_t was = packed_weights_budget();
    explicit BudgetScope(size_t bytes) {
        clear_packed_weights();
        set_packed_weights_budget(bytes);
    }
    ~BudgetScope() {
        clear_packed_weights();
        set_packed_weights_budget(was);
    }
};

// f32 values written to a file and mapped back as a [rows, cols] weight.
Tensor mapped_weight(const std::string& path, int64_t rows, int64_t cols, uint32_t seed) {
    std::vector<float> v((size_t)(rows * cols));
    for (size_t i = 0; i < v.size(); ++i) v[i] = (float)(((i + seed) * 2654435761u) % 1999) / 1000.0f - 1.0f;
    {
        std::ofstream f(path, std::ios::binary);
        f.write(reinterpret_cast<const char*>(v.data()), (std::streamsize)(v.size() * sizeof(float)));
    }
    return Tensor::from_storage(map_file(path), 0, {rows, cols}, DType::F32);
}

bool same_bits(const Tensor& a, const Tensor& b) {
    return a.shape() == b.shape() && a.dtype() == b.dtype() && std::memcmp(a.raw(), b.raw(), a.nbytes()) == 0;
}

// The budget for kept packed copies (core/allocator.h): the weights that fit keep their copy and give their file
// pages back; the rest are packed per call from the mapping (their pages stay, nothing is kept) with the same result.
TEST(PackedWeightsBudget, WeightsPastTheBudgetArePackedPerCallWithTheSameProduct) {
    test::TempDir dir("packed_budget");
    const int64_t K = 512, N = 384;
    const Tensor w1 = mapped_weight(dir / "w1.bin", N, K, 1), w2 = mapped_weight(dir / "w2.bin", N, K, 2);
    const Tensor x = input_rows(8, K);
    Tensor y1, y2;
    size_t one = 0;
    {
        BudgetScope unlimited(SIZE_MAX);
        y1 = linear(x, w1, Tensor(), Precision::BF16);
        one = packed_weights_bytes();
        y2 = linear(x, w2, Tensor(), Precision::BF16);
        ASSERT_GT(one, 0u);
        EXPECT_EQ(packed_weights_bytes(), 2 * one);
        EXPECT_EQ(packed_weights_over_budget_bytes(), 0u);
    }
    {
        BudgetScope room_for_one(one + one / 2);
        checksum(w2);  // every page of w2 resident
        EXPECT_TRUE(same_bits(linear(x, w1, Tensor(), Precision::BF16), y1));
        EXPECT_TRUE(same_bits(linear(x, w2, Tensor(), Precision::BF16), y2));
        EXPECT_EQ(packed_weights_bytes(), one);
        EXPECT_EQ(packed_weights_over_budget_bytes(), one);
        EXPECT_LT(resident_kb_of_mapping(w1.raw()), 16) << "the kept weight's file pages are given back";
        EXPECT_GE(resident_kb_of_mapping(w2.raw()), (int64_t)(w2.nbytes() / 1024) - 8) << "the per-call one's stay";
        for (int i = 0; i < 2; ++i) {  // again: the same weights are kept, the same one runs per call
            EXPECT_TRUE(same_bits(linear(x, w2, Tensor(), Precision::BF16), y2));
            EXPECT_TRUE(same_bits(linear(x, w1, Tensor(), Precision::BF16), y1));
        }
        EXPECT_EQ(packed_weights_bytes(), one);
        EXPECT_EQ(packed_weights_over_budget_bytes(), one);
    }
    {
        BudgetScope nothing(0);
        EXPECT_TRUE(same_bits(linear(x, w2, Tensor(), Precision::BF16), y2));
        EXPECT_TRUE(same_bits(linear(x, w1, Tensor(), Precision::BF16), y1));
        EXPECT_EQ(packed_weights_bytes(), 0u);
        EXPECT_EQ(packed_weights_over_budget_bytes(), 2 * one);
    }
    EXPECT_EQ(packed_weights_over_budget_bytes(), 0u) << "clear_packed_weights forgets the per-call weights too";
}

// Convolutions take the same path: a budget of 0 keeps nothing and gives the packed run's output bit for bit.
TEST(PackedWeightsBudget, ConvolutionsPastTheBudgetGiveTheSameOutput) {
    Tensor x = Tensor::empty({1, 16, 12, 12}, DType::F32), w = Tensor::empty({32, 16, 3, 3}, DType::F32);
    float* px = static_cast<float*>(x.raw());
    for (int64_t i = 0; i < x.numel(); ++i) px[i] = (float)((i * 7919) % 211) / 105.0f - 1.0f;
    float* pw = static_cast<float*>(w.raw());
    for (int64_t i = 0; i < w.numel(); ++i) pw[i] = (float)((i * 104729) % 307) / 1535.0f - 0.1f;
    Conv2dParams p;
    p.padding = {1, 1, 1, 1};
    Tensor kept;
    {
        BudgetScope unlimited(SIZE_MAX);
        kept = conv2d(x, w, Tensor(), p, Precision::BF16);
        EXPECT_GT(packed_weights_bytes(), 0u);
    }
    BudgetScope nothing(0);
    EXPECT_TRUE(same_bits(conv2d(x, w, Tensor(), p, Precision::BF16), kept));
    EXPECT_EQ(packed_weights_bytes(), 0u);
    EXPECT_GT(packed_weights_over_budget_bytes(), 0u);
}

// Q8_0 tiles kept under Int8PackCache::Auto count against the same budget: past it they are made per call and the
// file's pages stay.
TEST(PackedWeightsBudget, KeptInt8TilesStayWithinTheBudget) {
    if (!cpu::has_vnni_kernel()) GTEST_SKIP() << "the tiles are the VNNI kernel's; this CPU has no AVX-512 VNNI";
    Int8CacheScope automatic(cpu::Int8PackCache::Auto);
    test::TempDir dir("packed_budget_int8");
    const int64_t N = 128, K = 512;
    const Q8Pair q = q8_in_memory_and_mapped(dir / "q8.bin", N, K);
    const Tensor w_file = quantized_weight_tensor(q.mapped, {N, K});
    const Tensor x = input_rows(4, K);
    const Tensor y_mem = linear(x, quantized_weight_tensor(q.mem, {N, K}), Tensor(), Precision::BF16);
    {
        BudgetScope nothing(0);
        checksum(q.mapped.packed);
        EXPECT_TRUE(same_bits(linear(x, w_file, Tensor(), Precision::BF16), y_mem));
        EXPECT_EQ(cpu::int8_pack_cache_bytes(), 0u);
        EXPECT_GE(resident_kb_of_mapping(q.mapped.packed.raw()), (int64_t)(q.mem.packed.nbytes() / 1024) - 8);
    }
    {
        BudgetScope room(SIZE_MAX);
        EXPECT_TRUE(same_bits(linear(x, w_file, Tensor(), Precision::BF16), y_mem));
        EXPECT_GT(cpu::int8_pack_cache_bytes(), 0u);
    }
}

// A dropped weight's packed copies (oneDNN's and the int8 tiles) are freed by prune_packed_weights at once; the
// live weights' copies stay.
TEST(PackedWeightsBudget, PruneFreesTheCopiesOfDroppedWeights) {
    BudgetScope unlimited(SIZE_MAX);
    const Tensor x = Tensor::full({4, 256}, 0.25f);
    const Tensor keep = Tensor::full({64, 256}, 0.5f);
    linear(x, keep, Tensor(), Precision::BF16);
    const size_t live = packed_weights_bytes();
    ASSERT_GT(live, 0u);
    {
        const Tensor gone = Tensor::full({128, 256}, 0.125f);
        linear(x, gone, Tensor(), Precision::BF16);
        EXPECT_GT(packed_weights_bytes(), live);
    }
    EXPECT_GT(packed_weights_bytes(), live) << "without a prune, the copy stays until the next packing";
    EXPECT_GT(prune_packed_weights(), 0u);
    EXPECT_EQ(packed_weights_bytes(), live);
    EXPECT_EQ(prune_packed_weights(), 0u);
    if (cpu::has_vnni_kernel()) {  // kept int8 tiles (Int8PackCache::On keeps every type's)
        Int8CacheScope on(cpu::Int8PackCache::On);
        {
            std::vector<float> wv(64 * 256);
            for (size_t i = 0; i < wv.size(); ++i) wv[i] = (float)((i * 7) % 13) / 6.0f - 1.0f;
            const Tensor w = quantized_weight_tensor(quantize(Tensor::from_vector(wv, {64, 256}), GgmlType::Q8_0),
                                                     {64, 256});
            linear(x, w, Tensor(), Precision::BF16);
            EXPECT_GT(cpu::int8_pack_cache_bytes(), 0u);
        }
        EXPECT_GT(prune_packed_weights(), 0u);
        EXPECT_EQ(cpu::int8_pack_cache_bytes(), 0u);
    }
}

TEST(PackedWeightsBudget, DefaultLeavesAQuarterOrTwoGiBOfMemory) {
    const size_t GiB = size_t(1) << 30;
    EXPECT_EQ(default_packed_weights_budget(24 * GiB), 18 * GiB);
    EXPECT_EQ(default_packed_weights_budget(4 * GiB), 2 * GiB);
    EXPECT_EQ(default_packed_weights_budget(2 * GiB), 0u);
    EXPECT_EQ(default_packed_weights_budget(0), 0u);
    EXPECT_GT(packed_weights_budget(), 0u);
}

TEST(PackedWeightsBudget, EnvironmentTextParsesOrFallsBack) {
    const size_t fb = 12345;
    EXPECT_EQ(parse_packed_budget_mb(nullptr, fb), fb);
    EXPECT_EQ(parse_packed_budget_mb("", fb), fb);
    EXPECT_EQ(parse_packed_budget_mb("0", fb), 0u);
    EXPECT_EQ(parse_packed_budget_mb("512", fb), size_t(512) << 20);
    EXPECT_EQ(parse_packed_budget_mb("unlimited", fb), SIZE_MAX);
    for (const char* bad : {"abc", "12GB", "-5", " 5", "+5", "1.5", "99999999999999999999", "17592186044416"})
        EXPECT_EQ(parse_packed_budget_mb(bad, fb), fb) << bad;
    EXPECT_EQ(parse_packed_budget_mb("17592186044415", fb), (SIZE_MAX >> 20) << 20);
    for (const char* good : {"0", "1", "512", "unlimited"}) EXPECT_TRUE(packed_budget_text_valid(good)) << good;
    for (const char* bad : {"", "abc", "12GB", "-5", "1.5", "99999999999999999999"})
        EXPECT_FALSE(packed_budget_text_valid(bad)) << bad;
    EXPECT_FALSE(packed_budget_text_valid(nullptr));
}

// A set but malformed NUANCE_PACKED_BUDGET_MB is said once (when the budget is first asked for: the first packed
// weight), not silently replaced by the default.
TEST(PackedWeightsBudget, MalformedEnvironmentIsReported) {
    test::TempDir out("budget_env");
    const std::string png = out / "x.png";
    test::CliRun r = test::run_cli("generate -q -p apple --steps 1 -o " + png, "NUANCE_PACKED_BUDGET_MB=12GB ");
    ASSERT_EQ(r.code, 0) << r.out;
    EXPECT_NE(r.out.find("NUANCE_PACKED_BUDGET_MB='12GB' is neither a whole number of MiB nor 'unlimited'"),
              std::string::npos) << r.out;
    EXPECT_EQ(r.out.find("NUANCE_PACKED_BUDGET_MB='12GB'", r.out.find("NUANCE_PACKED_BUDGET_MB='12GB'") + 1),
              std::string::npos) << "said once: " << r.out;
    r = test::run_cli("generate -q -p apple --steps 1 -o " + png, "NUANCE_PACKED_BUDGET_MB=4096 ");
    ASSERT_EQ(r.code, 0) << r.out;
    EXPECT_EQ(r.out.find("NUANCE_PACKED_BUDGET_MB"), std::string::npos) << r.out;
}

}  // namespace
}  // namespace nuance
