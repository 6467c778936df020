// Noise streams against torch's own output (tests/data/golden/rng), plus engine known-answer tests,
// stream invariants and the error paths. Calls fill_randn on raw buffers so it does not need Tensor.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/mt19937.h"
#include "core/philox.h"
#include "core/rng.h"

using namespace nuance;
using ::testing::HasSubstr;

namespace {

const std::string kGoldenDir = std::string(NUANCE_TEST_DATA) + "/golden/rng";

std::string read_all(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    if (!f) throw std::runtime_error("cannot open " + path);
    return std::string(std::istreambuf_iterator<char>(f), {});
}

// Minimal safetensors reader for F32 tensors: 8-byte little-endian header length, JSON header, data.
class GoldenFile {
public:
    explicit GoldenFile(const std::string& path) : bytes_(read_all(path)) {
        if (bytes_.size() < 8) throw std::runtime_error(path + ": shorter than 8 bytes");
        uint64_t n = 0;
        for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<uint8_t>(bytes_[i]);
        if (n > bytes_.size() - 8) throw std::runtime_error(path + ": header length past end of file");
        header_ = nlohmann::json::parse(bytes_.begin() + 8, bytes_.begin() + 8 + static_cast<int64_t>(n));
        data_begin_ = 8 + n;
    }
    std::vector<float> f32(const std::string& name) const {
        const auto& e = header_.at(name);
        if (e.at("dtype") != "F32") throw std::runtime_error(name + ": not F32");
        const uint64_t a = e.at("data_offsets")[0], b = e.at("data_offsets")[1];
        uint64_t numel = 1;
        for (const auto& d : e.at("shape")) numel *= d.get<uint64_t>();
        if (a > b || b > bytes_.size() - data_begin_ || b - a != numel * 4)
            throw std::runtime_error(name + ": bad data_offsets");
        std::vector<float> v(numel);
        std::memcpy(v.data(), bytes_.data() + data_begin_ + a, b - a);
        return v;
    }

private:
    std::string bytes_;
    nlohmann::json header_;
    uint64_t data_begin_ = 0;
};

struct GoldenCase {
    std::string name;  // tensor name, or the prefix of name/first, name/second
    uint64_t seed;
    int64_t numel;
    bool successive;
};

std::vector<GoldenCase> golden_cases(const std::string& device) {
    const auto j = nlohmann::json::parse(read_all(kGoldenDir + "/case.json"));
    std::vector<GoldenCase> out;
    for (const auto& c : j.at("cases")) {
        if (c.at("device") != device) continue;
        int64_t n = 1;
        for (const auto& d : c.at("shape")) n *= d.get<int64_t>();
        const std::string name = c.at("name");
        out.push_back({name, c.at("seed").get<uint64_t>(), n, name.size() > 5 && name.ends_with("/then")});
    }
    return out;
}

uint32_t bits(float f) { uint32_t u; std::memcpy(&u, &f, 4); return u; }

std::vector<float> draw(Rng& rng, int64_t n) {
    std::vector<float> v(static_cast<size_t>(n));
    rng.fill_randn(v.data(), n);
    return v;
}

}  // namespace

// ------------------------------------------------------------------------------------- golden: torch

TEST(RngGolden, CpuStreamIsBitExact) {
    const GoldenFile golden(kGoldenDir + "/io.safetensors");
    int tensors = 0;
    for (const auto& c : golden_cases("cpu")) {
        auto rng = make_rng(RngKind::Cpu, c.seed);
        const std::vector<std::string> names =
            c.successive ? std::vector<std::string>{c.name + "/first", c.name + "/second"}
                         : std::vector<std::string>{c.name};
        for (const auto& name : names) {
            SCOPED_TRACE(name);
            const auto ref = golden.f32(name);
            ASSERT_EQ(static_cast<int64_t>(ref.size()), c.numel);
            const auto got = draw(*rng, c.numel);
            int64_t bad = 0, first_bad = -1;
            for (int64_t i = 0; i < c.numel; ++i)
                if (bits(got[i]) != bits(ref[i]) && bad++ == 0) first_bad = i;
            EXPECT_EQ(bad, 0) << "first mismatch at " << first_bad << ": got " << got[first_bad] << ", torch "
                              << ref[first_bad];
            ++tensors;
        }
    }
    EXPECT_EQ(tensors, 50);  // 6 seeds x 8 shapes + first/second
}

TEST(RngGolden, CudaStreamWithin1e6) {
    const GoldenFile golden(kGoldenDir + "/io.safetensors");
    int tensors = 0;
    double worst = 0;
    for (const auto& c : golden_cases("cuda")) {
        auto rng = make_rng(RngKind::Cuda, c.seed);
        const std::vector<std::string> names =
            c.successive ? std::vector<std::string>{c.name + "/first", c.name + "/second"}
                         : std::vector<std::string>{c.name};
        for (const auto& name : names) {
            SCOPED_TRACE(name);
            const auto ref = golden.f32(name);
            ASSERT_EQ(static_cast<int64_t>(ref.size()), c.numel);
            const auto got = draw(*rng, c.numel);
            double max_err = 0;
            for (int64_t i = 0; i < c.numel; ++i) max_err = std::max(max_err, (double)std::fabs(got[i] - ref[i]));
            EXPECT_LE(max_err, 1e-6);
            worst = std::max(worst, max_err);
            ++tensors;
        }
    }
    EXPECT_EQ(tensors, 50);
    RecordProperty("worst_abs_error", str(worst));
}

// ----------------------------------------------------------------------------- engines: known answers

TEST(Mt19937, MatchesTheReferenceSequence) {
    // The 10000th output of the default-seeded MT19937 is 4123659995 (C++ standard, [rand.predef]).
    Mt19937 mt(5489);
    uint32_t v = 0;
    for (int i = 0; i < 10000; ++i) v = mt();
    EXPECT_EQ(v, 4123659995u);
    // and it agrees with std::mt19937 for any 32-bit seed
    Mt19937 a(42);
    std::mt19937 b(42);
    for (int i = 0; i < 2000; ++i) ASSERT_EQ(a(), b()) << "draw " << i;
}

TEST(Mt19937, SixtyFourBitSeedUsesLowWordLikeTorch) {
    Mt19937 a((uint64_t{1} << 40) + 7), b(7);
    for (int i = 0; i < 1000; ++i) ASSERT_EQ(a(), b());
    Mt19937 c(5), d(5);
    EXPECT_EQ(c.next64(), (uint64_t{d()} << 32) | d());  // first draw is the high half
}

TEST(Philox, Random123KnownAnswers) {
    using A4 = std::array<uint32_t, 4>;
    EXPECT_EQ(philox4x32_10({0, 0, 0, 0}, {0, 0}), (A4{0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8}));
    EXPECT_EQ(philox4x32_10({~0u, ~0u, ~0u, ~0u}, {~0u, ~0u}),
              (A4{0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd}));
    EXPECT_EQ(philox4x32_10({0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344}, {0xa4093822, 0x299f31d0}),
              (A4{0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1}));
}

TEST(Philox, SfuSinCosIsCloseToTheTrueFunctions) {
    double worst = 0;
    for (int i = 0; i < 100000; ++i) {
        const float t = static_cast<float>(i) / 100000.0f;
        float s, c;
        sfu_sincos_revolutions(t, &s, &c);
        worst = std::max({worst, std::fabs(s - std::sin(6.283185307179586 * t)),
                          std::fabs(c - std::cos(6.283185307179586 * t))});
    }
    EXPECT_LT(worst, 4e-7);  // 2^-21.4, the documented __sinf bound
    float s, c;
    sfu_sincos_revolutions(0.25f, &s, &c);
    EXPECT_NEAR(s, 1.0f, 1e-6);
    EXPECT_NEAR(c, 0.0f, 1e-6);
}

// --------------------------------------------------------------------------------- stream invariants

TEST(Rng, SameSeedSameStreamDifferentSeedDifferentStream) {
    for (RngKind kind : {RngKind::Cpu, RngKind::Cuda}) {
        SCOPED_TRACE(rng_kind_name(kind));
        for (int64_t n : {5, 16, 1000}) {
            auto a = make_rng(kind, 1234), b = make_rng(kind, 1234), c = make_rng(kind, 1235);
            const auto va = draw(*a, n), vb = draw(*b, n), vc = draw(*c, n);
            EXPECT_EQ(va, vb);
            int64_t same = 0;
            for (int64_t i = 0; i < n; ++i) same += va[i] == vc[i];
            EXPECT_EQ(same, 0) << "n=" << n;
            EXPECT_NE(draw(*a, n), va) << "a second draw must continue the stream";
        }
    }
}

TEST(Rng, CpuSmallDrawsShareTorchsCachedSecondNormal) {
    // Below 16 elements each value is one normal_distribution<double> draw; Box-Muller makes them in
    // pairs and torch keeps the spare in the generator, so 7 + 1 elements equal one draw of 8.
    TorchCpuRng a(99), b(99);
    auto first = draw(a, 7), second = draw(a, 1), whole = draw(b, 8);
    first.push_back(second[0]);
    EXPECT_EQ(first, whole);
}

TEST(Rng, CudaElementsDependOnlyOnTheirThread) {
    // While n fits in one grid every element is thread i's first value: prefixes agree.
    PhiloxRng a(7), b(7);
    const auto small = draw(a, 100), big = draw(b, 5000);
    EXPECT_EQ(small, std::vector<float>(big.begin(), big.begin() + 100));
}

TEST(Rng, CudaOffsetAdvancesLikeTorch) {
    PhiloxRng rng(3);
    draw(rng, 7);
    EXPECT_EQ(rng.offset(), 4u);
    draw(rng, 300000);  // > 270336 threads: still one curand_normal4 call per thread
    EXPECT_EQ(rng.offset(), 8u);
    draw(rng, 4 * 270336 + 1);  // needs a second call per thread
    EXPECT_EQ(rng.offset(), 16u);
    // a smaller GPU (A100: 108 SMs) has a smaller grid and advances further for the same n
    PhiloxRng a100(3, 108, 2048);
    draw(a100, 4 * 221184 + 1);
    EXPECT_EQ(a100.offset(), 8u);
}

TEST(Rng, LargeDrawsLookStandardNormal) {
    for (RngKind kind : {RngKind::Cpu, RngKind::Cuda}) {
        SCOPED_TRACE(rng_kind_name(kind));
        auto rng = make_rng(kind, 2024);
        const int64_t n = 1 << 20;  // > one H200 grid, so the CUDA stream also uses its other three lanes
        const auto v = draw(*rng, n);
        double sum = 0, sum2 = 0;
        for (float x : v) {
            ASSERT_TRUE(std::isfinite(x));
            sum += x;
            sum2 += static_cast<double>(x) * x;
        }
        const double mean = sum / n, var = sum2 / n - mean * mean;
        EXPECT_NEAR(mean, 0.0, 5e-3);
        EXPECT_NEAR(var, 1.0, 1e-2);
    }
}

TEST(Rng, EmptyDrawLeavesTheStreamAlone) {
    for (RngKind kind : {RngKind::Cpu, RngKind::Cuda}) {
        auto a = make_rng(kind, 11), b = make_rng(kind, 11);
        a->fill_randn(nullptr, 0);
        EXPECT_EQ(draw(*a, 20), draw(*b, 20)) << rng_kind_name(kind);
    }
}

// --------------------------------------------------------------------------------------- error paths

TEST(RngKindNames, ParseAcceptsNamesAndAliases) {
    EXPECT_EQ(parse_rng_kind("cpu"), RngKind::Cpu);
    EXPECT_EQ(parse_rng_kind("torch"), RngKind::Cpu);
    EXPECT_EQ(parse_rng_kind("CPU"), RngKind::Cpu);
    EXPECT_EQ(parse_rng_kind("cuda"), RngKind::Cuda);
    EXPECT_EQ(parse_rng_kind("philox"), RngKind::Cuda);
    EXPECT_EQ(parse_rng_kind("GPU"), RngKind::Cuda);
    EXPECT_EQ(parse_rng_kind("nv"), RngKind::Cuda);
    for (RngKind k : {RngKind::Cpu, RngKind::Cuda}) EXPECT_EQ(parse_rng_kind(rng_kind_name(k)), k);
    EXPECT_STREQ(rng_kind_name(RngKind::Cpu), "cpu");
    EXPECT_STREQ(rng_kind_name(RngKind::Cuda), "cuda");
}

TEST(RngKindNames, UnknownNameListsTheValidOnes) {
    for (const std::string bad : {"mt", "", "cuda "}) {
        try {
            parse_rng_kind(bad);
            FAIL() << "expected an error for '" << bad << "'";
        } catch (const Error& e) {
            EXPECT_EQ(e.code(), ErrorCode::InvalidArgument);
            EXPECT_THAT(e.what(), HasSubstr("unknown rng '" + bad + "'"));
            EXPECT_THAT(e.what(), HasSubstr("cpu"));
            EXPECT_THAT(e.what(), HasSubstr("cuda"));
            EXPECT_THAT(e.what(), HasSubstr("philox"));
        }
    }
}

TEST(Rng, BadArgumentsAreErrors) {
    for (RngKind kind : {RngKind::Cpu, RngKind::Cuda}) {
        auto rng = make_rng(kind, 1);
        float buf[4];
        try {
            rng->fill_randn(buf, -1);
            FAIL() << "negative count accepted";
        } catch (const Error& e) {
            EXPECT_EQ(e.code(), ErrorCode::InvalidArgument);
            EXPECT_THAT(e.what(), HasSubstr("got -1"));
        }
        EXPECT_THROW(rng->fill_randn(nullptr, 4), Error);
    }
    try {
        make_rng(static_cast<RngKind>(7), 0);
        FAIL() << "invalid kind accepted";
    } catch (const Error& e) {
        EXPECT_THAT(e.what(), HasSubstr("invalid RngKind value 7"));
    }
    EXPECT_THROW(PhiloxRng(0, 0, 2048), Error);
    // a single torch launch is limited to 2^31 bytes; beyond that torch's offsets differ
    PhiloxRng rng(1);
    try {
        rng.fill_randn(nullptr, int64_t{1} << 30);
        FAIL() << "oversized cuda draw accepted";
    } catch (const Error& e) {
        EXPECT_EQ(e.code(), ErrorCode::Unsupported);
        EXPECT_THAT(e.what(), HasSubstr("536870912"));
    }
}

TEST(Rng, RandnTensorIsOneFillRandnCall) {
    auto a = make_rng(RngKind::Cpu, 42), b = make_rng(RngKind::Cpu, 42);
    const Tensor t = a->randn({1, 4, 9, 7});
    EXPECT_EQ(t.dtype(), DType::F32);
    EXPECT_EQ(t.shape(), (Shape{1, 4, 9, 7}));
    EXPECT_TRUE(t.is_contiguous());
    EXPECT_EQ(t.to_vector(), draw(*b, 252));
}
