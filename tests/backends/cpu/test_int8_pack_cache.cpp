// The repacked W8A8 tiles kept across calls (backends/cpu/quantized_matmul.h: set_int8_pack_cache) and the large
// buffers they live in (core/allocator.h: large_buffer): a kept copy gives bit for bit the product of a fresh one,
// follows its weight's lifetime (a new weight at the same address is packed again), and clear/release drop it.
#include <gtest/gtest.h>

#include <cstring>

#include "quantized_test_util.h"
#include "backends/backend.h"
#include "backends/cpu/ggml_quants.h"
#include "backends/cpu/quantized_matmul.h"
#include "core/allocator.h"
#include "core/quantized_weight.h"
#include "ops/ops.h"

using namespace nuance;
using nuance::test::random_input;
using nuance::test::random_weight;

namespace {

struct CacheMode {  // the cache mode (and W8A8 on) for one test, then as before
    cpu::Int8PackCache was = cpu::int8_pack_cache();
    bool w8a8 = cpu::q8_w8a8();
    explicit CacheMode(cpu::Int8PackCache m) {
        cpu::set_q8_w8a8(true);
        cpu::clear_int8_pack_cache();
        cpu::set_int8_pack_cache(m);
    }
    ~CacheMode() {
        cpu::set_int8_pack_cache(was);
        cpu::clear_int8_pack_cache();
        cpu::set_q8_w8a8(w8a8);
    }
};

bool same_bits(const Tensor& a, const Tensor& b) {
    return a.shape() == b.shape() && a.dtype() == b.dtype() && std::memcmp(a.raw(), b.raw(), a.nbytes()) == 0;
}

Tensor uncached_product(const Tensor& x, const Tensor& w, const Tensor& b) {
    const cpu::Int8PackCache m = cpu::int8_pack_cache();
    cpu::set_int8_pack_cache(cpu::Int8PackCache::Off);
    Tensor y = linear(x, w, b, Precision::BF16);
    cpu::set_int8_pack_cache(m);
    return y;
}

}  // namespace

TEST(Int8PackCache, KeptTilesGiveTheProductOfFreshOnes) {
    if (!cpu::has_vnni_kernel()) GTEST_SKIP() << "the tiles are the VNNI kernel's; this CPU has no AVX-512 VNNI";
    CacheMode on(cpu::Int8PackCache::On);
    for (GgmlType t : {GgmlType::Q8_0, GgmlType::Q4_0, GgmlType::Q4_K, GgmlType::Q6_K}) {
        cpu::clear_int8_pack_cache();
        const int64_t N = 45, K = 512;  // two tiles, the second one padded
        const Tensor w = random_weight(t, {N, K}, 11), x = random_input({7, K}, 12), b = random_input({N}, 13);
        const Tensor want = uncached_product(x, w, b);
        EXPECT_EQ(cpu::int8_pack_cache_bytes(), 0u);
        const Tensor y1 = linear(x, w, b, Precision::BF16);
        const size_t kept = cpu::int8_pack_cache_bytes();
        // At least the int8 quants of the two 32-column tiles and one f32 scale per 32 of them.
        EXPECT_GE(kept, (size_t)(64 * K + 64 * K / 32 * 4)) << ggml_type_info(t).name;
        const Tensor y2 = linear(x, w, b, Precision::BF16);  // from the kept tiles
        EXPECT_EQ(cpu::int8_pack_cache_bytes(), kept) << "a second call must not pack again";
        EXPECT_TRUE(same_bits(y1, want)) << ggml_type_info(t).name;
        EXPECT_TRUE(same_bits(y2, want)) << ggml_type_info(t).name;
        // The backend's release of this weight drops its tiles; clear drops everything.
        EXPECT_EQ(release_packed_weight(w), kept);
        EXPECT_EQ(cpu::int8_pack_cache_bytes(), 0u);
        linear(x, w, b, Precision::BF16);
        EXPECT_EQ(cpu::int8_pack_cache_bytes(), kept);
        cpu::clear_int8_pack_cache();
        EXPECT_EQ(cpu::int8_pack_cache_bytes(), 0u);
    }
}

TEST(Int8PackCache, FollowsTheWeightsLifetime) {
    if (!cpu::has_vnni_kernel()) GTEST_SKIP() << "the tiles are the VNNI kernel's; this CPU has no AVX-512 VNNI";
    CacheMode on(cpu::Int8PackCache::On);
    const Tensor x = random_input({5, 256}, 1), b = random_input({40}, 2);
    // Weights made and dropped one after the other: the allocator hands the same address out again, and each
    // product must be its own weight's, never the tiles of the one before.
    for (uint64_t seed = 1; seed <= 6; ++seed) {
        const Tensor w = random_weight(GgmlType::Q8_0, {40, 256}, seed * 101);
        const Tensor want = uncached_product(x, w, b);
        EXPECT_TRUE(same_bits(linear(x, w, b, Precision::BF16), want)) << "seed " << seed;
        EXPECT_TRUE(same_bits(linear(x, w, b, Precision::BF16), want)) << "seed " << seed;
    }
    // A narrowed handle (some rows of a weight) is its own entry, and gives those rows' product.
    const Tensor w = random_weight(GgmlType::Q8_0, {64, 256}, 77);
    const Tensor full = linear(x, w, Tensor(), Precision::BF16);
    const Tensor part = linear(x, w.narrow(0, 32, 32), Tensor(), Precision::BF16);
    for (int64_t m = 0; m < 5; ++m)
        for (int64_t n = 0; n < 32; ++n)
            EXPECT_EQ(part.data<float>()[m * 32 + n], full.data<float>()[m * 64 + 32 + n]);
}

TEST(Int8PackCache, AutoKeepsOnlyFileMappedQ8AndOffKeepsNothing) {
    if (!cpu::has_vnni_kernel()) GTEST_SKIP() << "the tiles are the VNNI kernel's; this CPU has no AVX-512 VNNI";
    const Tensor x = random_input({3, 128}, 3);
    {
        CacheMode automatic(cpu::Int8PackCache::Auto);
        // Weights in memory the process owns: a kept copy would double them, so Auto packs per call.
        linear(x, random_weight(GgmlType::Q8_0, {32, 128}, 4), Tensor(), Precision::BF16);
        linear(x, random_weight(GgmlType::Q4_0, {32, 128}, 5), Tensor(), Precision::BF16);
        EXPECT_EQ(cpu::int8_pack_cache_bytes(), 0u);
    }
    {
        CacheMode off(cpu::Int8PackCache::Off);
        const Tensor w = random_weight(GgmlType::Q8_0, {32, 128}, 6);
        linear(x, w, Tensor(), Precision::BF16);
        EXPECT_EQ(cpu::int8_pack_cache_bytes(), 0u);
    }
    // Setting Off drops what was kept.
    CacheMode on(cpu::Int8PackCache::On);
    const Tensor w = random_weight(GgmlType::Q8_0, {32, 128}, 7);
    linear(x, w, Tensor(), Precision::BF16);
    EXPECT_GT(cpu::int8_pack_cache_bytes(), 0u);
    cpu::set_int8_pack_cache(cpu::Int8PackCache::Off);
    EXPECT_EQ(cpu::int8_pack_cache_bytes(), 0u);
}

TEST(LargeBuffer, ZeroFilledWritableAndEmptyForZeroBytes) {
    EXPECT_EQ(large_buffer(0).get(), nullptr);
    constexpr size_t kBytes = (size_t(5) << 20) + 123;  // huge-page advice, and a tail that is not a whole page
    auto p = large_buffer(kBytes);
    ASSERT_NE(p.get(), nullptr);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(p.get()) % 4096, 0u);
    size_t nonzero = 0;
    for (size_t i = 0; i < kBytes; i += 997) nonzero += p.get()[i] != 0;
    EXPECT_EQ(nonzero, 0u);
    std::memset(p.get(), 0x5a, kBytes);
    EXPECT_EQ(p.get()[kBytes - 1], 0x5a);
}
