#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstring>
#include <random>

#include "../test_util.h"
#include "backends/backend.h"
#include "backends/cpu/ggml_quants.h"
#include "gguf_builder.h"
#include "eval/golden/gguf_golden.h"
#include "io/gguf.h"
#include "io/safetensors.h"
#include "io/weights.h"

using namespace nuance;
using ::testing::HasSubstr;

namespace {

const std::string kCase = std::string(NUANCE_TEST_DATA) + "/golden/gguf/";

// Bit-for-bit equality of two F32 tensors (NaN-safe, -0 vs 0 distinguished).
void expect_bits_equal(const Tensor& got, const Tensor& want, const std::string& what) {
    ASSERT_EQ(shape_str(got.shape()), shape_str(want.shape())) << what;
    const std::vector<float> a = got.to_vector(), b = want.to_vector();
    size_t bad = 0;
    for (size_t i = 0; i < a.size(); ++i)
        if (std::memcmp(&a[i], &b[i], 4) != 0 && bad++ < 3)
            ADD_FAILURE() << what << "[" << i << "]: got " << a[i] << " want " << b[i];
    EXPECT_EQ(bad, 0u) << what;
}

std::string gguf_error(const test::GgufBuilder& b) {
    return test::error_of([&] { (void)load_gguf(b.storage(), "h.gguf"); });
}

test::GgufBuilder valid_file() {
    test::GgufBuilder b;
    b.kv_string("general.architecture", "test");
    b.tensor_f32("w", {4}, {1, 2, 3, 4});
    return b;
}

}  // namespace

// ---------------------------------------------------------------- golden: every quant type, bit for bit

TEST(Gguf, GoldenQuantsDequantizeBitExact) {
    const WeightFile io = load_safetensors(kCase + "io.safetensors");
    // Through the format dispatch: block-quantized tensors come as quantized-weight handles (the products use the
    // blocks), whose values dequantize_weight gives.
    const WeightFile wf = load_weights(kCase + "quants.gguf");
    EXPECT_EQ(detect_weight_format(kCase + "quants.gguf"), WeightFormat::Gguf);
    size_t n = 0;
    for (const auto& [name, t] : wf.tensors) {
        const std::string key = "quants." + name;
        ASSERT_TRUE(io.tensors.count(key)) << key;
        expect_bits_equal(dequantize_weight(t).f32(), io.tensors.at(key), key);
        ++n;
    }
    EXPECT_EQ(n, 31u);
    // Every type of the issue is among them.
    const GgufFile g = read_gguf(kCase + "quants.gguf");
    std::set<std::string> types;
    for (const auto& t : g.tensors) types.insert(ggml_type_info(t.type)->name);
    for (const char* want : {"F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q2_K", "Q3_K", "Q4_K",
                             "Q5_K", "Q6_K"})
        EXPECT_TRUE(types.count(want)) << want;
}

TEST(Gguf, GoldenAlignment64) {
    const WeightFile io = load_safetensors(kCase + "io.safetensors");
    const GgufFile g = read_gguf(kCase + "align64.gguf");
    EXPECT_EQ(g.alignment, 64u);
    EXPECT_EQ(g.data_offset % 64, 0u);
    for (const auto& t : g.tensors) EXPECT_EQ(t.offset % 64, 0u) << t.name;
    const WeightFile wf = gguf_to_weights(g);
    ASSERT_EQ(wf.tensors.size(), 3u);
    for (const auto& [name, t] : wf.tensors) expect_bits_equal(t.f32(), io.tensors.at("align64." + name), name);
}

TEST(Gguf, MetadataOfEveryValueType) {
    const GgufFile g = read_gguf(kCase + "quants.gguf");
    EXPECT_EQ(g.version, 3u);
    auto get = [&](const std::string& k) {
        const GgufValue* v = g.find(k);
        EXPECT_NE(v, nullptr) << k;
        return v ? v->to_string() : std::string();
    };
    EXPECT_EQ(get("general.architecture"), "'test'");
    EXPECT_EQ(g.find("test.string")->s, "hello GGUF \xe2\x9c\x93 caf\xc3\xa9 \xe6\x9d\xb1\xe4\xba\xac");
    EXPECT_EQ(get("test.u8"), "200");
    EXPECT_EQ(get("test.i8"), "-100");
    EXPECT_EQ(get("test.u16"), "60000");
    EXPECT_EQ(get("test.i16"), "-30000");
    EXPECT_EQ(get("test.u32"), "4000000000");
    EXPECT_EQ(get("test.i32"), "-2000000000");
    EXPECT_EQ(get("test.u64"), "1099511627777");
    EXPECT_EQ(get("test.i64"), "-1099511627779");
    EXPECT_FLOAT_EQ((float)g.find("test.f32")->f, 0.1f);
    EXPECT_DOUBLE_EQ(g.find("test.f64")->f, 0.1);
    EXPECT_EQ(get("test.bool_true"), "true");
    EXPECT_EQ(get("test.bool_false"), "false");
    EXPECT_EQ(get("test.array_i32"), "[3 x i32: 1, -2, 3]");
    EXPECT_EQ(get("test.array_f32"), "[3 x f32: 0.5, -1.25, 3]");
    EXPECT_EQ(get("test.array_str"), "[4 x string: 'a', 'bc', '\xc3\xbcn\xc3\xaf" "code', '']");
    EXPECT_EQ(get("test.array_bool"), "[3 x bool: true, false, true]");
    EXPECT_EQ(get("test.array_u8"), "[3 x u8: 0, 1, 255]");
    const WeightFile wf = gguf_to_weights(g);
    EXPECT_EQ(wf.metadata.at("general.architecture"), "test");
}

// ---------------------------------------------------------------- kernels: vector == scalar reference

TEST(Gguf, VectorDequantizeMatchesScalarBitForBit) {
    std::mt19937 rng(7);
    for (GgmlType t : {GgmlType::Q8_0, GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q5_0, GgmlType::Q5_1,
                       GgmlType::Q2_K, GgmlType::Q3_K, GgmlType::Q4_K, GgmlType::Q5_K, GgmlType::Q6_K,
                       GgmlType::IQ4_NL, GgmlType::IQ4_XS, GgmlType::F16, GgmlType::BF16}) {
        const GgmlTypeInfo& ti = ggml_type_info(t);
        const int64_t n = 4 * 256;
        std::vector<uint8_t> src((size_t)(n / ti.block * ti.bytes));
        for (auto& b : src) b = (uint8_t)rng();
        // Finite f16 scales: clear the top exponent bit of every 16-bit word (random bytes elsewhere).
        for (size_t i = 1; i < src.size(); i += 2) src[i] &= 0x3f;
        std::vector<float> a((size_t)n), b((size_t)n);
        dequantize_row_scalar(t, src.data(), a.data(), n);
        dequantize_row_vector(t, src.data(), b.data(), n);
        EXPECT_EQ(std::memcmp(a.data(), b.data(), a.size() * 4), 0) << ti.name;
    }
    EXPECT_TRUE(has_vector_dequantize(GgmlType::Q8_0));
    EXPECT_TRUE(has_vector_dequantize(GgmlType::Q4_K));
    EXPECT_TRUE(has_vector_dequantize(GgmlType::Q6_K));
}

TEST(Gguf, HandComputedBlocks) {
    // Q8_0: d = 0.5 (f16 0x3800), q = 0..31 -> 0, 0.5, 1, ...
    uint8_t q8[34];
    const uint16_t half = 0x3800;
    std::memcpy(q8, &half, 2);
    for (int i = 0; i < 32; ++i) q8[2 + i] = (uint8_t)(int8_t)(i - 16);
    float y[32];
    dequantize_row(GgmlType::Q8_0, q8, y, 32);
    for (int i = 0; i < 32; ++i) EXPECT_EQ(y[i], 0.5f * (i - 16));
    // Q4_0: d = 0.5, byte j holds value j (low nibble) and 15 - j (high nibble) -> (q - 8) * d.
    uint8_t q4[18];
    std::memcpy(q4, &half, 2);
    for (int j = 0; j < 16; ++j) q4[2 + j] = (uint8_t)(j | ((15 - j) << 4));
    dequantize_row(GgmlType::Q4_0, q4, y, 32);
    for (int j = 0; j < 16; ++j) {
        EXPECT_EQ(y[j], 0.5f * (j - 8));
        EXPECT_EQ(y[j + 16], 0.5f * (7 - j));
    }
    EXPECT_EQ(test::error_of([&] { dequantize_row(GgmlType::Q4_0, q4, y, 31); }),
              "dequantize: a Q4_0 row of 31 values is not a whole number of 32-value blocks");
    EXPECT_EQ(parse_ggml_type("q4_k"), GgmlType::Q4_K);
    EXPECT_EQ(test::error_of([] { parse_ggml_type("q9_0"); }), "unknown ggml type 'q9_0'");
}

// ---------------------------------------------------------------- layouts

TEST(Gguf, ComfyOrigShapeRestoresTheTorchShape) {
    test::GgufBuilder b;
    b.kv_string("general.architecture", "flux");
    std::vector<float> v(24);
    for (int i = 0; i < 24; ++i) v[i] = (float)i;
    b.tensor_f32("img_in.weight", {12, 2}, v);  // stored [2, 12]
    b.kv_i32_array("comfy.gguf.orig_shape.img_in.weight", {2, 3, 2, 2});
    const WeightFile wf = load_gguf(b.storage(), "c.gguf");
    EXPECT_EQ(shape_str(wf.tensors.at("img_in.weight").shape()), "[2, 3, 2, 2]");
    EXPECT_EQ(wf.tensors.at("img_in.weight").to_vector(), v);
    EXPECT_EQ(wf.metadata.count("comfy.gguf.orig_shape.img_in.weight"), 0u);

    test::GgufBuilder bad = b;
    bad.kv.clear();
    bad.n_kv = 0;
    bad.kv_i32_array("comfy.gguf.orig_shape.img_in.weight", {5, 5});
    EXPECT_EQ(gguf_error(bad), "GGUF file 'h.gguf': comfy.gguf.orig_shape.img_in.weight = [5, 5] does not hold the "
                               "24 elements of the stored [2, 12]");
}

TEST(Gguf, T5LlamaCppNamesMapToTransformers) {
    test::GgufBuilder b;
    b.kv_string("general.architecture", "t5encoder");
    const std::vector<float> z(4, 0.f);
    for (const char* n : {"token_embd.weight", "enc.output_norm.weight", "enc.blk.0.attn_q.weight",
                          "enc.blk.0.attn_k.weight", "enc.blk.0.attn_v.weight", "enc.blk.0.attn_o.weight",
                          "enc.blk.0.attn_rel_b.weight", "enc.blk.0.attn_norm.weight", "enc.blk.0.ffn_norm.weight",
                          "enc.blk.11.ffn_gate.weight", "enc.blk.11.ffn_up.weight", "enc.blk.11.ffn_down.weight",
                          "dec.blk.0.attn_q.weight"})
        b.tensor_f32(n, {4}, z);
    const auto m = t5_gguf_to_transformers_names(load_gguf(b.storage(), "t5.gguf").tensors);
    std::vector<std::string> names;
    for (const auto& [k, v] : m) names.push_back(k);
    EXPECT_EQ(names, (std::vector<std::string>{
                         "encoder.block.0.layer.0.SelfAttention.k.weight",
                         "encoder.block.0.layer.0.SelfAttention.o.weight",
                         "encoder.block.0.layer.0.SelfAttention.q.weight",
                         "encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight",
                         "encoder.block.0.layer.0.SelfAttention.v.weight",
                         "encoder.block.0.layer.0.layer_norm.weight",
                         "encoder.block.0.layer.1.layer_norm.weight",
                         "encoder.block.11.layer.1.DenseReluDense.wi_0.weight",
                         "encoder.block.11.layer.1.DenseReluDense.wi_1.weight",
                         "encoder.block.11.layer.1.DenseReluDense.wo.weight",
                         "encoder.final_layer_norm.weight",
                         "shared.weight",
                     }));
    // Without ffn_gate (T5 v1.0, ReLU FFN) ffn_up is `wi`.
    std::map<std::string, Tensor> ungated{{"enc.blk.3.ffn_up.weight", Tensor::zeros({2})}};
    EXPECT_EQ(t5_gguf_to_transformers_names(ungated).begin()->first,
              "encoder.block.3.layer.1.DenseReluDense.wi.weight");
}

// ---------------------------------------------------------------- hostile files

TEST(GgufHostile, HeaderFields) {
    EXPECT_EQ(gguf_error(valid_file()), "(no error)");
    test::GgufBuilder b = valid_file();
    b.version = 1;
    EXPECT_EQ(gguf_error(b), "GGUF file 'h.gguf': version 1 (32-bit counts) is not supported; convert it with a "
                             "current llama.cpp/gguf-py");
    b.version = 0x03000000;
    EXPECT_EQ(gguf_error(b), "GGUF file 'h.gguf': unsupported version 50331648 (a big-endian file?); versions 2 and 3 "
                             "are read");
    b = valid_file();
    b.n_tensors_override = 1ll << 40;
    EXPECT_THAT(gguf_error(b), HasSubstr("tensor count 1099511627776 is impossible for a file of"));
    b = valid_file();
    b.n_kv_override = 1ll << 50;
    EXPECT_THAT(gguf_error(b), HasSubstr("metadata count 1125899906842624 is impossible"));
    EXPECT_EQ(test::error_of([] {
                  auto s = Storage::allocate(6);
                  std::memcpy(s->data(), "GGUF\3\0", 6);
                  (void)read_gguf(s, "h.gguf");
              }),
              "GGUF file 'h.gguf': truncated at byte 4 (version needs 4 bytes, 2 left)");
    EXPECT_EQ(test::error_of([] {
                  auto s = Storage::allocate(8);
                  std::memcpy(s->data(), "GGUG\3\0\0\0", 8);
                  (void)read_gguf(s, "h.gguf");
              }),
              "'h.gguf' is not a GGUF file (bad magic)");
}

TEST(GgufHostile, MetadataFields) {
    test::GgufBuilder b;
    std::string v;
    test::GgufBuilder::put_u64(v, 1ull << 62);
    b.kv_raw("general.name", 8, v);  // string length past the end
    EXPECT_THAT(gguf_error(b), HasSubstr("metadata 'general.name' string length 4611686018427387904 at byte"));
    b = test::GgufBuilder();
    v.clear();
    test::GgufBuilder::put_u32(v, 5);
    test::GgufBuilder::put_u64(v, 1ull << 61);
    b.kv_raw("tokenizer.ggml.tokens", 9, v);  // array count past the end
    EXPECT_THAT(gguf_error(b), HasSubstr("metadata 'tokenizer.ggml.tokens': array count 2305843009213693952 of i32 "
                                         "exceeds the"));
    b = test::GgufBuilder();
    b.kv_raw("x", 13, "");
    EXPECT_EQ(gguf_error(b), "GGUF file 'h.gguf': metadata 'x' has unknown value type 13");
    b = test::GgufBuilder();
    b.kv_raw("flag", 7, "\x02");
    EXPECT_EQ(gguf_error(b), "GGUF file 'h.gguf': metadata 'flag': bool value 2 is neither 0 nor 1");
    b = test::GgufBuilder();
    b.kv_u32("a", 1);
    b.kv_u32("a", 2);
    EXPECT_EQ(gguf_error(b), "GGUF file 'h.gguf': duplicate metadata key 'a'");
    // Arrays of arrays nested past the limit.
    b = test::GgufBuilder();
    v.clear();
    for (int d = 0; d < 6; ++d) {
        test::GgufBuilder::put_u32(v, 9);
        test::GgufBuilder::put_u64(v, 1);
    }
    v += std::string(64, '\0');
    b.kv_raw("deep", 9, v);
    EXPECT_EQ(gguf_error(b), "GGUF file 'h.gguf': metadata 'deep': arrays nested deeper than 4");
    for (uint32_t al : {0u, 3u, 1u << 24}) {
        b = valid_file();
        b.kv_u32("general.alignment", al);
        EXPECT_EQ(gguf_error(b), str("GGUF file 'h.gguf': general.alignment ", al,
                                     " must be a u32 power of two up to 1048576"));
    }
}

TEST(GgufHostile, TensorInfoFields) {
    auto with = [](auto edit) {
        test::GgufBuilder b = valid_file();
        edit(b.infos[0]);
        return gguf_error(b);
    };
    EXPECT_EQ(with([](auto& i) { i.ne = {1, 2, 3, 4, 5}; }),
              "GGUF file 'h.gguf': tensor 'w' has 5 dimensions (at most 4)");
    EXPECT_EQ(with([](auto& i) { i.ne = {1ull << 32, 1ull << 32}; }),
              "GGUF file 'h.gguf': tensor 'w' dimension ne[1] = 4294967296 makes the element count overflow");
    EXPECT_EQ(with([](auto& i) { i.ne = {0, 1ull << 32, 1ull << 32}; }),
              "GGUF file 'h.gguf': tensor 'w' dimension ne[2] = 4294967296 makes the element count overflow");
    EXPECT_EQ(with([](auto& i) { i.ne = {1ull << 63}; }),
              "GGUF file 'h.gguf': tensor 'w' dimension ne[0] = 9223372036854775808 makes the element count overflow");
    EXPECT_EQ(with([](auto& i) { i.type = 99; }), "GGUF file 'h.gguf': tensor 'w' has unknown ggml type 99");
    // nuance's own FP8 ids (safetensors FP8 kept in memory) are not GGUF types.
    EXPECT_EQ(with([](auto& i) { i.type = (uint32_t)GgmlType::F8_E4M3; }),
              "GGUF file 'h.gguf': tensor 'w' has unknown ggml type 65537");
    EXPECT_EQ(with([](auto& i) { i.type = 8; }),
              "GGUF file 'h.gguf': tensor 'w' of type Q8_0: row length ne[0] = 4 is not a multiple of its block "
              "size 32");
    EXPECT_EQ(with([](auto& i) { i.offset = 4; }),
              "GGUF file 'h.gguf': tensor 'w' offset 4 is not a multiple of the alignment 32");
    EXPECT_EQ(with([](auto& i) { i.offset = 1ull << 63; }),
              "GGUF file 'h.gguf': tensor 'w' data [9223372036854775808, +16) lies outside the data section of 16 "
              "bytes");
    EXPECT_EQ(with([](auto& i) { i.ne = {1ull << 62}; }),
              "GGUF file 'h.gguf': tensor 'w' byte size overflows");
    EXPECT_EQ(with([](auto& i) { i.ne = {8}; }),
              "GGUF file 'h.gguf': tensor 'w' data [0, +32) lies outside the data section of 16 bytes");
    // A zero dimension makes the total 0 whatever ne[0] claims: the row's bytes must still fit (fuzz finding: a
    // Q8_0 row of 2^63 - 32 values is 9.8e18 bytes, past int64, where the block view computes it).
    EXPECT_EQ(with([](auto& i) {
                  i.type = 8;
                  i.ne = {9223372036854775776ull, 0};
              }),
              "GGUF file 'h.gguf': tensor 'w' row of ne[0] = 9223372036854775776 values overflows its byte size");
    test::GgufBuilder b = valid_file();
    b.tensor_f32("w", {4}, {1, 2, 3, 4});
    EXPECT_EQ(gguf_error(b), "GGUF file 'h.gguf': duplicate tensor 'w'");
    b = valid_file();
    b.tensor_f32("v", {4}, {1, 2, 3, 4});
    b.infos[1].offset = 0;
    EXPECT_EQ(gguf_error(b), "GGUF file 'h.gguf': tensors 'w' and 'v' overlap");
    // A type that parses but cannot be dequantized yet is refused by name when loading as weights.
    b = valid_file();
    b.tensor("q81", {32}, 9, std::string(36, '\0'));
    EXPECT_EQ(gguf_error(b), "GGUF file 'h.gguf': tensor 'q81' has type Q8_1, which cannot be dequantized yet");
    // A file ending inside the tensor infos.
    std::string bytes = valid_file().bytes();
    auto s = Storage::allocate(70);
    std::memcpy(s->data(), bytes.data(), 70);
    EXPECT_THAT(test::error_of([&] { (void)read_gguf(s, "h.gguf"); }), HasSubstr("GGUF file 'h.gguf': truncated at byte"));
}

TEST(GgufHostile, UnalignedFloatTensorIsCopiedNotMisread) {
    test::GgufBuilder b;
    b.alignment = 1;
    b.kv_u32("general.alignment", 1);
    b.tensor("pad", {1}, 24, std::string(1, '\x7f'));  // I8, leaves the next tensor at an odd offset
    b.tensor_f32("w", {3}, {1.5f, -2.f, 3.f});
    const WeightFile wf = load_gguf(b.storage(), "odd.gguf");
    EXPECT_EQ(wf.tensors.at("w").to_vector(), (std::vector<float>{1.5f, -2.f, 3.f}));
}

// ---------------------------------------------------------------- the tiny SD1.5 UNet from both ecosystems' files

TEST(Gguf, GoldenUNetFromComfyAndSdcppFiles) {
    const std::vector<CompareLine> lines = check_golden_gguf(std::string(NUANCE_TEST_DATA) + "/golden/gguf");
    size_t eps = 0, exact = 0;
    for (const auto& l : lines) {
        EXPECT_TRUE(l.pass) << l.name << " max_abs=" << l.max_abs << " atol=" << l.atol << " " << l.reason;
        if (l.name.size() > 4 && l.name.compare(l.name.size() - 4, 4, ".eps") == 0) {
            ++eps;
            EXPECT_GT(l.atol, 0.0);
        } else {
            ++exact;
            EXPECT_EQ(l.atol, 0.0) << l.name;  // dequantized values: bit for bit
        }
    }
    EXPECT_EQ(eps, 2u);
    EXPECT_GE(exact, 31u + 3u + 7u + 5u);  // quants, align64, and the README's comfy / sdcpp dequant tensors
}

// ---------------------------------------------------------------- nuance info

TEST(GgufCli, InfoShowsVersionMetadataAndPerTypeSizes) {
    const test::CliRun r = test::run_cli("info " + kCase + "unet_sd15_comfy_Q8_0.gguf");
    EXPECT_EQ(r.code, 0) << r.out;
    EXPECT_THAT(r.out, HasSubstr("format: GGUF v3 (alignment 32, 164 metadata keys)"));
    EXPECT_THAT(r.out, HasSubstr("general.architecture: sd1\n"));
    EXPECT_THAT(r.out, HasSubstr("general.file_type: 7 (MOSTLY_Q8_0)\n"));
    EXPECT_THAT(r.out, HasSubstr("comfy.gguf.orig_shape: 161 tensors stored reshaped"));
    EXPECT_THAT(r.out, HasSubstr("  Q8_0       180 tensors         548896 bytes   8.500 bits/value"));
    EXPECT_THAT(r.out, HasSubstr("  F32        501 tensors         125296 bytes  32.000 bits/value"));

    const std::string bad = std::string(NUANCE_SCRATCH_DIR) + "/nuance_bad_info.gguf";
    test::GgufBuilder b = valid_file();
    b.infos[0].type = 77;
    FILE* f = std::fopen(bad.c_str(), "wb");
    const std::string bytes = b.bytes();
    std::fwrite(bytes.data(), 1, bytes.size(), f);
    std::fclose(f);
    const test::CliRun e = test::run_cli("info " + bad);
    EXPECT_EQ(e.code, 1) << e.out;
    EXPECT_THAT(e.out, HasSubstr("GGUF file '" + bad + "': tensor 'w' has unknown ggml type 77"));
}
