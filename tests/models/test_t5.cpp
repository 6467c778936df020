// T5 encoder: the golden reference (tests/data/golden/t5_encoder, transformers T5EncoderModel), the relative position
// buckets against torch's values, and the file layouts people use (prefixes, tied embedding names, FP8, diffusers
// folders with sharded weights), plus hostile files. Every file is built here from the golden weights.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "../raw_safetensors.h"
#include "../test_util.h"
#include "core/dtype.h"
#include "core/error.h"
#include "io/safetensors.h"
#include "io/weights.h"
#include "eval/golden/t5_golden.h"
#include "models/t5/t5_loader.h"
#include "backends/backend.h"
#include "core/quantized_weight.h"
#include "ops/elementwise.h"

using namespace nuance;
using nuance::test::error_of;
using ::testing::HasSubstr;
namespace fs = std::filesystem;

namespace {

const std::string kCase = std::string(NUANCE_TEST_DATA) + "/golden/t5_encoder";

struct TempDir {
    std::string path;
    TempDir() {
        path = (fs::path(NUANCE_SCRATCH_DIR) / ("nuance_t5_" + std::to_string(::getpid()) + "_" +
                                             std::to_string(counter()++)))
                   .string();
        fs::create_directories(path);
    }
    ~TempDir() {
        std::error_code ec;
        fs::remove_all(path, ec);
    }
    static int& counter() {
        static int c = 0;
        return c;
    }
};

nlohmann::json golden_config() {
    std::ifstream f(kCase + "/case.json");
    return nlohmann::json::parse(f)["models"]["t5"]["config"];
}

Tensor golden_ids() { return load_safetensors(kCase + "/io.safetensors").tensors.at("input_ids"); }
Tensor golden_last() { return load_safetensors(kCase + "/io.safetensors").tensors.at("last_hidden_state"); }

using test::RawTensor;
using test::write_raw_safetensors;

}  // namespace

TEST(T5EncoderGolden, MatchesTransformers) {
    const auto lines = check_golden_t5_encoder(kCase);
    EXPECT_EQ(lines.size(), 5u);  // last_hidden_state, _masked, hidden_states.0..2
    for (const auto& l : lines) EXPECT_TRUE(l.pass) << l.name << " max_abs " << l.max_abs << " " << l.reason;
}

TEST(T5Encoder, RelativePositionBucketsAsTorch) {
    // torch: T5Attention._relative_position_bucket(tensor(rel), bidirectional=True, num_buckets, max_distance)
    const std::vector<int64_t> rel = {-1000, -300, -128, -127, -64, -63, -33, -32, -31, -17, -16, -15,
                                      -9,    -8,   -7,   -1,   0,   1,   7,   8,   9,   15,  16,  17,
                                      31,    32,   33,   63,   64,  65,  127, 128, 129, 300, 1000};
    const std::vector<int64_t> b32 = {15, 15, 15, 15, 14, 13, 12, 12, 11, 10, 10, 9,  8,  8,  7,  1,  0,  17,
                                      23, 24, 24, 25, 26, 26, 27, 28, 28, 29, 30, 30, 31, 31, 31, 31, 31};
    const std::vector<int64_t> b64 = {31, 31, 28, 27, 24, 23, 20, 20, 19, 16, 16, 15, 9,  8,  7,  1,  0,  33,
                                      39, 40, 41, 47, 48, 48, 51, 52, 52, 55, 56, 56, 59, 60, 60, 63, 63};
    for (size_t i = 0; i < rel.size(); ++i) {
        EXPECT_EQ(t5_relative_position_bucket(rel[i], 32, 128), b32[i]) << "rel " << rel[i];
        EXPECT_EQ(t5_relative_position_bucket(rel[i], 64, 256), b64[i]) << "rel " << rel[i];
    }
}

TEST(T5Encoder, DetectsConfigFromShapes) {
    const WeightFile w = load_weights(kCase + "/t5.safetensors");
    const T5Config c = T5Config::detect(w.tensors);
    EXPECT_EQ(c.vocab, 32128);
    EXPECT_EQ(c.d_model, 32);
    EXPECT_EQ(c.d_kv, 8);
    EXPECT_EQ(c.heads, 4);
    EXPECT_EQ(c.d_ff, 64);
    EXPECT_EQ(c.layers, 2);
    EXPECT_EQ(c.buckets, 32);
    EXPECT_EQ(c.ff, T5FeedForward::GatedGelu);
}

TEST(T5Loader, AllInOnePrefixAndEmbedTokensName) {
    TempDir d;
    const WeightFile w = load_weights(kCase + "/t5.safetensors");
    std::vector<std::pair<std::string, Tensor>> out;
    for (const auto& [k, t] : w.tensors)
        out.emplace_back(k == "shared.weight" ? "text_encoders.t5xxl.transformer.encoder.embed_tokens.weight"
                                              : "text_encoders.t5xxl.transformer." + k,
                         t);
    out.emplace_back("text_encoders.clip_l.transformer.text_model.final_layer_norm.weight", Tensor::zeros({4}));
    save_safetensors(d.path + "/sd3_all_in_one.safetensors", out);
    const auto m = load_t5_encoder(d.path + "/sd3_all_in_one.safetensors", Precision::FP32);
    EXPECT_LT(max_abs_diff(m->forward(golden_ids()).last_hidden_state, golden_last()), 1.83e-4);
}

TEST(T5Loader, DiffusersFolderWithShardIndex) {
    TempDir d;
    const std::string te = d.path + "/text_encoder_3";
    fs::create_directories(te);
    std::ofstream(te + "/config.json") << golden_config().dump();
    const WeightFile w = load_weights(kCase + "/t5.safetensors");
    std::vector<std::pair<std::string, Tensor>> s1, s2;
    nlohmann::json index = {{"metadata", {{"total_size", 0}}}, {"weight_map", nlohmann::json::object()}};
    for (const auto& [k, t] : w.tensors) {
        const bool first = k.find("block.1.") == std::string::npos;
        (first ? s1 : s2).emplace_back(k, t);
        index["weight_map"][k] = first ? "model-00001-of-00002.safetensors" : "model-00002-of-00002.safetensors";
    }
    save_safetensors(te + "/model-00001-of-00002.safetensors", s1);
    save_safetensors(te + "/model-00002-of-00002.safetensors", s2);
    std::ofstream(te + "/model.safetensors.index.json") << index.dump();
    const auto m = load_t5_encoder(d.path, Precision::FP32);  // the pipeline root
    EXPECT_LT(max_abs_diff(m->forward(golden_ids()).last_hidden_state, golden_last()), 1.83e-4);

    // A shard path leaving the folder is refused.
    index["weight_map"]["encoder.final_layer_norm.weight"] = "../evil.safetensors";
    std::ofstream(te + "/model.safetensors.index.json") << index.dump();
    EXPECT_THAT(error_of([&] { load_t5_encoder(d.path); }),
                HasSubstr("shard name '../evil.safetensors' must be a plain file name"));

    // A config that disagrees with the weights.
    save_safetensors(te + "/model.safetensors", std::vector<std::pair<std::string, Tensor>>(w.tensors.begin(),
                                                                                           w.tensors.end()));
    nlohmann::json bad = golden_config();
    bad["num_heads"] = 8;
    std::ofstream(te + "/config.json") << bad.dump();
    EXPECT_THAT(error_of([&] { load_t5_encoder(te); }), HasSubstr("T5 config: num_heads = 8 but the weights have 4"));
}

TEST(T5Loader, Fp8WeightsConvertExactly) {
    // A tiny T5 whose matrices are FP8 bytes: loading the F8_E4M3 file must equal loading the same values as F16.
    TempDir d;
    const WeightFile w = load_weights(kCase + "/t5.safetensors");
    std::vector<RawTensor> f8, f16;
    uint32_t seed = 1;
    for (const auto& [k, t] : w.tensors) {
        const Tensor c = t.contiguous();
        if (k.find("SelfAttention.q") != std::string::npos || k.find("DenseReluDense") != std::string::npos) {
            std::string b((size_t)c.numel(), '\0'), h((size_t)c.numel() * 2, '\0');
            for (size_t i = 0; i < b.size(); ++i) {
                seed = seed * 1103515245u + 12345u;
                uint8_t v = (uint8_t)(seed >> 16);
                if ((v & 0x7f) == 0x7f || (v & 0x78) > 0x40) v &= 0xc7;  // no NaN, |x| < 2 keeps activations sane
                b[i] = (char)v;
                const uint16_t x = f8e4m3fn_to_f16(v);
                std::memcpy(&h[2 * i], &x, 2);
            }
            f8.push_back({k, "F8_E4M3", c.shape(), b});
            f16.push_back({k, "F16", c.shape(), h});
        } else {
            const Tensor f = c.to(DType::F32);
            const std::string raw((const char*)f.raw(), f.nbytes());
            f8.push_back({k, "F32", c.shape(), raw});
            f16.push_back({k, "F32", c.shape(), raw});
        }
    }
    write_raw_safetensors(d.path + "/t5xxl_fp8_e4m3fn.safetensors", f8);
    write_raw_safetensors(d.path + "/t5xxl_fp16.safetensors", f16);
    const auto a = load_t5_encoder(d.path + "/t5xxl_fp8_e4m3fn.safetensors");
    const auto b = load_t5_encoder(d.path + "/t5xxl_fp16.safetensors");
    EXPECT_EQ(max_abs_diff(a->forward(golden_ids()).last_hidden_state, b->forward(golden_ids()).last_hidden_state),
              0.0f);
}

TEST(T5Loader, HostileFiles) {
    TempDir d;
    const WeightFile w = load_weights(kCase + "/t5.safetensors");
    auto save_without = [&](const std::string& path, const std::string& drop, const std::string& add = "") {
        std::vector<std::pair<std::string, Tensor>> out;
        for (const auto& [k, t] : w.tensors)
            if (k != drop) out.emplace_back(k, t);
        if (!add.empty()) out.emplace_back(add, Tensor::zeros({32}));
        save_safetensors(path, out);
        return path;
    };
    EXPECT_THAT(error_of([&] { load_t5_encoder(save_without(d.path + "/a.safetensors", "encoder.final_layer_norm.weight")); }),
                HasSubstr("is missing tensor 'encoder.final_layer_norm.weight'"));
    EXPECT_THAT(error_of([&] { load_t5_encoder(save_without(d.path + "/b.safetensors", "shared.weight")); }),
                HasSubstr("no token embedding (expected 'shared.weight' or 'encoder.embed_tokens.weight')"));
    EXPECT_THAT(error_of([&] {
                    load_t5_encoder(save_without(d.path + "/c.safetensors", "", "encoder.block.3.layer.0.layer_norm.weight"));
                }),
                HasSubstr("tensor 'encoder.block.3.layer.0.layer_norm.weight' is not part of a T5 encoder with 2 blocks"));
    EXPECT_THAT(error_of([&] {
                    load_t5_encoder(save_without(d.path + "/e.safetensors",
                                                 "encoder.block.0.layer.0.SelfAttention.q.weight"));
                }),
                HasSubstr("holds no T5 encoder (no tensor named 'encoder.block.0.layer.0.SelfAttention.q.weight'"));
    {
        std::vector<std::pair<std::string, Tensor>> two;
        for (const auto& [k, t] : w.tensors) {
            two.emplace_back("a." + k, t);
            two.emplace_back("b." + k, t);
        }
        save_safetensors(d.path + "/two.safetensors", two);
        EXPECT_THAT(error_of([&] { load_t5_encoder(d.path + "/two.safetensors"); }),
                    HasSubstr("holds 2 T5 encoders (prefixes 'a.' and 'b.')"));
    }
    // FP8 with a span that does not match its shape.
    write_raw_safetensors(d.path + "/f8.safetensors", {{"x", "F8_E4M3", {4, 4}, std::string(15, '\0')}});
    EXPECT_THAT(error_of([&] { load_weights(d.path + "/f8.safetensors"); }),
                HasSubstr("data_offsets span 15 bytes but F8_E4M3[4, 4] needs 16"));
    EXPECT_THAT(error_of([&] { load_t5_encoder(d.path + "/nothing_here"); }), HasSubstr("nothing_here"));

    const auto m = load_t5_encoder(kCase + "/t5.safetensors");
    EXPECT_THAT(error_of([&] { m->forward(Tensor::from_ids({0, 40000}, {1, 2})); }),
                HasSubstr("id 40000 out of range for a vocabulary of 32128"));
    EXPECT_THAT(error_of([&] { m->forward(Tensor::from_ids({0, 1}, {1, 2}), Tensor::from_ids({1, 1, 1}, {1, 3})); }),
                HasSubstr("attention mask [1, 3] does not match ids [1, 2]"));
    EXPECT_THAT(error_of([&] { m->forward(Tensor::zeros({1, 2})); }), HasSubstr("ids must be integers"));
}

TEST(Fp8, HandValues) {
    auto e4 = [](uint8_t v) { return f16_to_f32(f8e4m3fn_to_f16(v)); };
    auto e5 = [](uint8_t v) { return f16_to_f32(f8e5m2_to_f16(v)); };
    EXPECT_EQ(e4(0x00), 0.0f);
    EXPECT_TRUE(std::signbit(e4(0x80)) && e4(0x80) == 0.0f);
    EXPECT_EQ(e4(0x38), 1.0f);          // e=7, m=0
    EXPECT_EQ(e4(0xb8), -1.0f);
    EXPECT_EQ(e4(0x3c), 1.5f);          // m=4
    EXPECT_EQ(e4(0x7e), 448.0f);        // max: 1.75 * 2^8
    EXPECT_EQ(e4(0xfe), -448.0f);
    EXPECT_TRUE(std::isnan(e4(0x7f)));  // S.1111.111
    EXPECT_TRUE(std::isnan(e4(0xff)));
    EXPECT_EQ(e4(0x78), 256.0f);        // e=15, m=0 is a number in e4m3fn (no infinities)
    EXPECT_EQ(e4(0x08), std::ldexp(1.0f, -6));       // smallest normal
    EXPECT_EQ(e4(0x01), std::ldexp(1.0f, -9));       // smallest subnormal
    EXPECT_EQ(e4(0x03), 3 * std::ldexp(1.0f, -9));
    EXPECT_EQ(e4(0x07), 7 * std::ldexp(1.0f, -9));   // largest subnormal
    EXPECT_EQ(e4(0x86), -6 * std::ldexp(1.0f, -9));
    EXPECT_EQ(e5(0x3c), 1.0f);
    EXPECT_EQ(e5(0x7b), 57344.0f);  // max
    EXPECT_TRUE(std::isinf(e5(0x7c)) && e5(0x7c) > 0);
    EXPECT_TRUE(std::isinf(e5(0xfc)) && e5(0xfc) < 0);
    EXPECT_TRUE(std::isnan(e5(0x7d)));
    EXPECT_EQ(e5(0x01), std::ldexp(1.0f, -16));
    EXPECT_EQ(e5(0x04), std::ldexp(1.0f, -14));
    // Through the reader: every e4m3 byte.
    TempDir d;
    std::string all(256, '\0');
    for (int i = 0; i < 256; ++i) all[(size_t)i] = (char)i;
    write_raw_safetensors(d.path + "/all.safetensors", {{"e4", "F8_E4M3", {256}, all}, {"e5", "F8_E5M2", {256}, all}});
    const WeightFile f = load_safetensors(d.path + "/all.safetensors");
    const Tensor a = f.tensors.at("e4"), b = f.tensors.at("e5");
    ASSERT_EQ(a.dtype(), DType::F16);
    for (int i = 0; i < 256; ++i) {
        EXPECT_EQ(a.data<uint16_t>()[i], f8e4m3fn_to_f16((uint8_t)i));
        EXPECT_EQ(b.data<uint16_t>()[i], (uint16_t)(i << 8));
    }
}

TEST(T5Encoder, EncodePromptsAsSd3AndFlux) {
    const auto m = load_t5_encoder(kCase + "/t5.safetensors", Precision::FP32);
    const Tensor e = encode_t5_prompts(*m, {"Hello world", "a photo of a cat"}, 16);
    ASSERT_EQ(e.shape(), (Shape{2, 16, 32}));
    const std::vector<int64_t> ids = T5Tokenizer::builtin().encode_padded("Hello world", 16);
    const Tensor one = m->forward(Tensor::from_ids(ids, {1, 16})).last_hidden_state;
    EXPECT_LT(max_abs_diff(e[0], one[0]), 1e-5f);  // batch of 2 vs 1: GEMM blocking may differ
    EXPECT_THAT(error_of([&] { encode_t5_prompts(*m, {}, 16); }), HasSubstr("T5 encoder: no prompts"));
}

TEST(T5Loader, ScaledFp8File) {
    // ComfyUI's scaled fp8: each matrix is fp8 bytes plus a one-element scale_weight; weight = fp8 * scale. The file
    // must load like the same values stored as F16.
    TempDir d;
    const WeightFile w = load_weights(kCase + "/t5.safetensors");
    std::vector<RawTensor> scaled, plain;
    scaled.push_back({"scaled_fp8", "F8_E4M3", {0}, ""});
    for (const auto& [k, t] : w.tensors) {
        const Tensor c = t.contiguous();
        if (k.find("DenseReluDense.wo") != std::string::npos) {
            std::string b((size_t)c.numel(), '\0'), h((size_t)c.numel() * 2, '\0');
            for (size_t i = 0; i < b.size(); ++i) {
                const uint8_t v = (uint8_t)((i * 37) % 120);  // 0..119: |x| < 2, no NaN
                b[i] = (char)v;
                const uint16_t x = f32_to_f16(f16_to_f32(f8e4m3fn_to_f16(v)) * 0.25f);
                std::memcpy(&h[2 * i], &x, 2);
            }
            const float scale = 0.25f;
            scaled.push_back({k, "F8_E4M3", c.shape(), b});
            scaled.push_back({k.substr(0, k.size() - 7) + ".scale_weight", "F32", {1},
                              std::string((const char*)&scale, 4)});
            plain.push_back({k, "F16", c.shape(), h});
        } else {
            const Tensor f = c.to(DType::F32);
            const std::string raw((const char*)f.raw(), f.nbytes());
            scaled.push_back({k, "F32", c.shape(), raw});
            plain.push_back({k, "F32", c.shape(), raw});
        }
    }
    write_raw_safetensors(d.path + "/t5xxl_fp8_e4m3fn_scaled.safetensors", scaled);
    write_raw_safetensors(d.path + "/plain.safetensors", plain);
    const auto a = load_t5_encoder(d.path + "/t5xxl_fp8_e4m3fn_scaled.safetensors");
    const auto b = load_t5_encoder(d.path + "/plain.safetensors");
    EXPECT_EQ(max_abs_diff(a->forward(golden_ids()).last_hidden_state, b->forward(golden_ids()).last_hidden_state),
              0.0f);
    // A scale for a weight that is not there, and a scale that overflows f16.
    scaled.push_back({"encoder.block.0.layer.0.SelfAttention.zz.scale_weight", "F32", {1}, std::string(4, '\0')});
    write_raw_safetensors(d.path + "/orphan.safetensors", scaled);
    EXPECT_THAT(error_of([&] { load_t5_encoder(d.path + "/orphan.safetensors"); }),
                HasSubstr("'encoder.block.0.layer.0.SelfAttention.zz.scale_weight' scales "
                          "'encoder.block.0.layer.0.SelfAttention.zz.weight', which is not in the file"));
    scaled.pop_back();
    for (auto& r : scaled)
        if (r.name == "encoder.block.0.layer.1.DenseReluDense.wo.scale_weight") {
            const float big = 1e30f;
            r.bytes = std::string((const char*)&big, 4);
        }
    write_raw_safetensors(d.path + "/big.safetensors", scaled);
    EXPECT_THAT(error_of([&] { load_t5_encoder(d.path + "/big.safetensors"); }),
                HasSubstr("'encoder.block.0.layer.1.DenseReluDense.wo.weight' times its scale_weight 1e+30 is not "
                          "finite in f16"));
}

namespace {

// float -> float8_e4m3fn, round to nearest even (torch's .to(torch.float8_e4m3fn) for values in range): the nearest
// of the 254 finite codes, ties to the code with an even mantissa.
uint8_t to_e4m3fn(float x) {
    int best = -1;
    float best_d = 0;
    for (int c = 0; c < 256; ++c) {
        if ((c & 0x7f) == 0x7f) continue;  // NaN
        const float v = f16_to_f32(f8e4m3fn_to_f16((uint8_t)c));
        const float d = std::fabs(v - x);
        if (best < 0 || d < best_d || (d == best_d && (c & 1) == 0 && (best & 1) == 1)) {
            best = c;
            best_d = d;
        }
    }
    return (uint8_t)best;
}

// The golden tiny T5 with every matrix (rank 2: attention, feed-forward, embedding, relative bias) cast to
// float8_e4m3fn, written as `path`; norms stay F32.
void write_fp8_golden_t5(const std::string& path) {
    const WeightFile w = load_weights(kCase + "/t5.safetensors");
    std::vector<RawTensor> out;
    for (const auto& [k, t] : w.tensors) {
        const Tensor c = t.f32().contiguous();
        if (c.dim() == 2) {
            std::string b((size_t)c.numel(), '\0');
            for (int64_t i = 0; i < c.numel(); ++i) {
                ASSERT_LT(std::fabs(c.data<float>()[i]), 448.0f) << k;
                b[(size_t)i] = (char)to_e4m3fn(c.data<float>()[i]);
            }
            out.push_back({k, "F8_E4M3", c.shape(), b});
        } else {
            out.push_back({k, "F32", c.shape(), std::string((const char*)c.raw(), c.nbytes())});
        }
    }
    write_raw_safetensors(path, out);
}

}  // namespace

TEST(T5Fp8, RoundingHelperIsTorchs) {
    // torch 2.5.1: torch.tensor([0.1, -0.3, 1.0, 447.0, 2**-10, 3 * 2**-10, 0.0025]).to(torch.float8_e4m3fn)
    // .view(torch.uint8) = [29, 170, 56, 126, 0, 2, 1]; 2^-10 and 3 * 2^-10 are halfway between two codes (subnormal
    // step 2^-9): the even one wins.
    EXPECT_EQ(to_e4m3fn(0.1f), 29);
    EXPECT_EQ(to_e4m3fn(-0.3f), 170);
    EXPECT_EQ(to_e4m3fn(1.0f), 56);
    EXPECT_EQ(to_e4m3fn(447.0f), 126);
    EXPECT_EQ(to_e4m3fn(0.0009765625f), 0);
    EXPECT_EQ(to_e4m3fn(0.0029296875f), 2);
    EXPECT_EQ(to_e4m3fn(0.0025f), 1);
}

TEST(T5Fp8, KeptAsFp8EqualsTheConvertedOnLoadPath) {
    TempDir d;
    const std::string path = d.path + "/t5xxl_fp8_e4m3fn.safetensors";
    write_fp8_golden_t5(path);
    const WeightFile kept = load_safetensors(path, Fp8Load::KeepMatrices);
    const WeightFile wide = load_safetensors(path);  // the converted-on-load path: F16 copies
    const std::string q = "encoder.block.0.layer.0.SelfAttention.q.weight";
    EXPECT_EQ(quantized_weight_str(kept.tensors.at(q)), "F8_E4M3[32, 32]");
    EXPECT_EQ(wide.tensors.at(q).dtype(), DType::F16);
    EXPECT_EQ(kept.tensors.at("encoder.final_layer_norm.weight").dtype(), DType::F32);
    for (Precision p : {Precision::FP32, Precision::BF16}) {
        const auto a = load_t5_encoder(path, p);                      // by path: FP8 kept
        const auto b = load_t5_encoder(wide.tensors, "", path, p);    // F16 at load, packed on first use
        EXPECT_TRUE(is_quantized_storage(*a->block[0].attn.q.weight));
        EXPECT_TRUE(is_quantized_storage(*a->shared));
        EXPECT_FALSE(is_quantized_storage(*b->block[0].attn.q.weight));
        const T5EncoderOutput oa = a->forward(golden_ids(), {}, true), ob = b->forward(golden_ids(), {}, true);
        // The embedding rows are the same values (FP8 widened exactly); the products take the same values in the
        // same precision.
        EXPECT_EQ(max_abs_diff(oa.hidden_states[0], ob.hidden_states[0]), 0.0f);
        EXPECT_EQ(max_abs_diff(oa.last_hidden_state, ob.last_hidden_state), 0.0f) << (int)p;
        // And the FP8 model is still roughly the golden T5: relative L2 error 0.157-0.159 measured (3 mantissa bits,
        // and many of the tiny model's small weights fall in e4m3's subnormals below 2^-6); a wrong widening (a
        // misread code, a lost sign) gives errors of order 1.
        const std::vector<float> got = oa.last_hidden_state.f32().contiguous().to_vector();
        const std::vector<float> want = golden_last().f32().contiguous().to_vector();
        double num = 0, den = 0;
        for (size_t i = 0; i < want.size(); ++i) {
            num += (double)(got[i] - want[i]) * (got[i] - want[i]);
            den += (double)want[i] * want[i];
        }
        EXPECT_LT(std::sqrt(num / den), 0.2) << std::sqrt(num / den);
    }
}

TEST(T5Fp8, E5M2AndErrors) {
    TempDir d;
    // An F8_E5M2 matrix is kept too, and widens exactly (its codes are the high bytes of f16 values).
    std::string b(16, '\0');
    for (int i = 0; i < 16; ++i) b[(size_t)i] = (char)(0x38 + i);  // 0.5 .. 1.75 .. 
    write_raw_safetensors(d.path + "/e5m2.safetensors", {{"w", "F8_E5M2", {4, 4}, b}, {"v", "F8_E5M2", {16}, b}});
    const WeightFile k = load_safetensors(d.path + "/e5m2.safetensors", Fp8Load::KeepMatrices);
    EXPECT_EQ(quantized_weight_str(k.tensors.at("w")), "F8_E5M2[4, 4]");
    EXPECT_EQ(k.tensors.at("v").dtype(), DType::F16);  // rank 1: converted, as before
    const Tensor w = dequantize_weight(k.tensors.at("w"));
    for (int i = 0; i < 16; ++i)
        EXPECT_EQ(w.data<float>()[i], f16_to_f32((uint16_t)((0x38 + i) << 8))) << i;
    // A kept FP8 weight is never read as plain bytes: copying it fails naming it.
    EXPECT_THAT(error_of([&] { (void)k.tensors.at("w").contiguous().to(DType::F32); }), HasSubstr("F8_E5M2[4, 4]"));
    // A short FP8 payload is refused whichever way FP8 is loaded.
    write_raw_safetensors(d.path + "/short.safetensors", {{"x", "F8_E4M3", {4, 4}, std::string(15, '\0')}});
    EXPECT_THAT(error_of([&] { load_safetensors(d.path + "/short.safetensors", Fp8Load::KeepMatrices); }),
                HasSubstr("data_offsets span 15 bytes but F8_E4M3[4, 4] needs 16"));
}
