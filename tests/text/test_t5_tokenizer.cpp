// T5 tokenizer (SentencePiece unigram + T5Tokenizer conventions) against the golden references
// (tests/data/golden/t5_tokenizer: transformers' 1000-piece fixture; t5_tokenizer_real: the real 32k vocabulary,
// 114 prompts, SD3 256 / Flux 512), the documented t5-small ids, and hostile model files built here.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "../test_util.h"
#include "core/error.h"
#include "eval/golden/t5_golden.h"
#include "text/t5_spiece_model.h"
#include "text/t5_tokenizer.h"

using nuance::SpieceModel;
using nuance::T5Tokenizer;
using nuance::test::error_of;
using ::testing::HasSubstr;

namespace {

const std::string kGolden = std::string(NUANCE_TEST_DATA) + "/golden/";

nlohmann::json read_json(const std::string& path) {
    std::ifstream f(path);
    return nlohmann::json::parse(f);
}

// ---- a tiny protobuf writer for hostile ModelProto files ----
std::string varint(uint64_t v) {
    std::string s;
    do {
        uint8_t b = v & 0x7f;
        v >>= 7;
        if (v) b |= 0x80;
        s += (char)b;
    } while (v);
    return s;
}
std::string tag(int field, int wire) { return varint((uint64_t)field << 3 | (uint64_t)wire); }
std::string len_field(int field, const std::string& payload) { return tag(field, 2) + varint(payload.size()) + payload; }
std::string float_field(int field, float f) {
    std::string s = tag(field, 5);
    char b[4];
    std::memcpy(b, &f, 4);
    return s + std::string(b, 4);
}
std::string piece(const std::string& text, float score, int type = 1) {
    return len_field(1, len_field(1, text) + float_field(2, score) + tag(3, 0) + varint((uint64_t)type));
}
// <unk>, </s>, <pad> and a few normal pieces; no charsmap (identity normalization).
std::string tiny_model() {
    return piece("<pad>", 0, 3) + piece("</s>", 0, 3) + piece("<unk>", 0, 2) + piece("\xe2\x96\x81", -2) +
           piece("\xe2\x96\x81" "a", -1) + piece("a", -3) + piece("b", -3) + piece("ab", -4);
}

}  // namespace

TEST(T5TokenizerGolden, FixtureLegacyAndNonLegacy) {
    for (const auto& l : nuance::check_golden_t5_tokenizer(kGolden + "t5_tokenizer"))
        EXPECT_TRUE(l.pass) << l.name << ": " << l.reason;
    EXPECT_EQ(nuance::check_golden_t5_tokenizer(kGolden + "t5_tokenizer").size(), 2u);
}

TEST(T5TokenizerGolden, RealVocabularyEveryPrompt) {
    const auto lines = nuance::check_golden_t5_tokenizer(kGolden + "t5_tokenizer_real");
    EXPECT_EQ(lines.size(), 5u);  // ids_256, ids_512, both nonlegacy, num_tokens
    for (const auto& l : lines) EXPECT_TRUE(l.pass) << l.name << ": " << l.reason;
}

TEST(T5TokenizerGolden, RealNormalizedTextAndRawIds) {
    const T5Tokenizer& tok = T5Tokenizer::builtin();
    const nlohmann::json prompts = read_json(kGolden + "t5_tokenizer_real/prompts.json");
    ASSERT_EQ(prompts.size(), 114u);
    for (const auto& p : prompts) {
        const std::string text = p["text"].get<std::string>();
        EXPECT_EQ(tok.normalize(text), p["spm_normalized"].get<std::string>()) << "prompt " << p["index"];
        const std::vector<int> raw = tok.encode_pieces(text);
        EXPECT_EQ(raw, p["spm_ids_raw"].get<std::vector<int>>()) << "prompt " << p["index"];
        EXPECT_EQ(tok.encode(text, true), p["ids_legacy"].get<std::vector<int>>()) << "prompt " << p["index"];
        EXPECT_EQ(tok.encode(text, false), p["ids_nonlegacy"].get<std::vector<int>>()) << "prompt " << p["index"];
    }
}

TEST(T5Tokenizer, DocumentedT5SmallIds) {
    const T5Tokenizer& tok = T5Tokenizer::builtin();
    EXPECT_EQ(tok.encode("Hello world"), (std::vector<int>{8774, 296, 1}));
    EXPECT_EQ(tok.encode("translate English to German: The house is wonderful."),
              (std::vector<int>{13959, 1566, 12, 2968, 10, 37, 629, 19, 1627, 5, 1}));
    EXPECT_EQ(tok.extra_id(0), 32099);
    EXPECT_EQ(tok.extra_id(99), 32000);
    EXPECT_EQ(tok.token_id("<extra_id_0>"), 32099);
    EXPECT_EQ(tok.pad_id(), 0);
    EXPECT_EQ(tok.eos_id(), 1);
    EXPECT_EQ(tok.unk_id(), 2);
    EXPECT_EQ(tok.vocab_size(), 32100);
    EXPECT_EQ(tok.encode(""), (std::vector<int>{1}));
    EXPECT_EQ(tok.encode("a </s>"), tok.encode("a"));  // no second </s>
    EXPECT_THAT(error_of([&] { tok.extra_id(100); }), HasSubstr("<extra_id_100> is outside 0..99"));
}

TEST(T5Tokenizer, TruncationAndPadding) {
    const T5Tokenizer& tok = T5Tokenizer::builtin();
    int n = 0;
    const std::vector<int64_t> ids = tok.encode_padded("Hello world", 5, true, &n);
    EXPECT_EQ(ids, (std::vector<int64_t>{8774, 296, 1, 0, 0}));
    EXPECT_EQ(n, 3);
    EXPECT_EQ(tok.encode_padded("Hello world", 2, true, &n), (std::vector<int64_t>{8774, 1}));
    EXPECT_EQ(n, 2);
    EXPECT_THAT(error_of([&] { tok.encode_padded("x", 0); }), HasSubstr("max_length 0 is outside 1.."));
}

TEST(T5Tokenizer, InvalidUtf8BecomesReplacementCharacter) {
    const T5Tokenizer& tok = T5Tokenizer::builtin();
    const std::string bad = std::string("a\xff") + "b";
    // sentencepiece emits U+FFFD for the bad byte without normalizing it (a real U+FFFD maps to a space).
    EXPECT_EQ(tok.normalize(bad), "\xe2\x96\x81" "a\xef\xbf\xbd" "b");
    EXPECT_EQ(tok.normalize("a\xef\xbf\xbd" "b"), "\xe2\x96\x81" "a\xe2\x96\x81" "b");
    EXPECT_NO_THROW(tok.encode(std::string("\xc3", 1)));
}

TEST(T5Tokenizer, TinyHandBuiltModel) {
    const T5Tokenizer tok = T5Tokenizer::from_bytes(tiny_model(), "tiny.model", 2);
    EXPECT_EQ(tok.normalize("  a  b "), "\xe2\x96\x81" "a\xe2\x96\x81" "b");
    // "▁ab": ▁a (-1) + b (-3) = -4 beats ▁ (-2) + ab (-4); 'c' is unknown, "cc" one merged <unk>.
    EXPECT_EQ(tok.encode("ab cc"), (std::vector<int>{4, 6, 3, 2, 1}));
    EXPECT_EQ(tok.extra_id(0), 9);
    EXPECT_EQ(tok.extra_id(1), 8);
    EXPECT_EQ(tok.encode("a<extra_id_1> b"), (std::vector<int>{4, 8, 3, 6, 1}));
}

TEST(T5TokenizerErrors, HostileModelFiles) {
    auto err = [](const std::string& bytes) {
        return error_of([&] { T5Tokenizer::from_bytes(bytes, "m.model"); });
    };
    EXPECT_THAT(err(""), HasSubstr("m.model: empty SentencePiece model"));
    const std::string good = tiny_model();
    EXPECT_THAT(err(good.substr(0, good.size() - 3)), HasSubstr("m.model"));
    EXPECT_THAT(err(good.substr(0, 5)), HasSubstr("claims"));
    EXPECT_THAT(err("\xff\xff\xff"), HasSubstr("truncated varint in field 'tag'"));
    EXPECT_THAT(err(std::string(11, '\xff')), HasSubstr("varint of field 'tag' overflows 64 bits at byte 9"));
    EXPECT_THAT(err(std::string(11, '\x80')), HasSubstr("varint of field 'tag' is longer than 10 bytes"));
    // A length field far past the end of the file.
    EXPECT_THAT(err(tag(1, 2) + varint(1ull << 40)), HasSubstr("claims 1099511627776 bytes but only 0 remain"));
    EXPECT_THAT(err(tag(1, 0) + varint(5)), HasSubstr("field 'pieces' has wire type 0, expected 2"));
    EXPECT_THAT(err(tag(9, 3)), HasSubstr("field 9 has unsupported wire type 3"));
    EXPECT_THAT(err(piece("a", -1)), HasSubstr("no piece of type UNKNOWN"));
    EXPECT_THAT(err(good + piece("a", -1)), HasSubstr("piece 'a' (id 8) is already defined"));
    EXPECT_THAT(err(good + piece("z", -1, 9)), HasSubstr("pieces[8]: piece type 9 is not one of 1..6"));
    EXPECT_THAT(err(good + len_field(1, float_field(2, 1.0f))), HasSubstr("pieces[8]: no 'piece' string"));
    EXPECT_THAT(err(good + piece(std::string(2000, 'x'), -1)), HasSubstr("the limit is"));
    EXPECT_THAT(err(tag(3, 2) + varint(3) + "abc"), HasSubstr("normalizer_spec"));
    EXPECT_THAT(err(good + len_field(2, tag(3, 0) + varint(2))), HasSubstr("model_type 2 is not supported"));
    EXPECT_THAT(err(good + len_field(3, len_field(2, std::string("\x10\0\0\0abc", 7)))),
                HasSubstr("precompiled_charsmap trie size 16 exceeds the 3 bytes"));
    EXPECT_THAT(err(good + len_field(3, len_field(2, std::string("\x03\0\0\0abcd", 8)))),
                HasSubstr("is not a positive multiple of 4"));
    EXPECT_THAT(error_of([] { T5Tokenizer::from_file("/nonexistent/spiece.model"); }),
                HasSubstr("/nonexistent/spiece.model"));
}

TEST(T5TokenizerErrors, GarbageCharsmapNeverCrashes) {
    // A trie of random units: lookups may find nothing or rewrite to anything, but stay in bounds.
    std::string blob = std::string("\x40\0\0\0", 4);
    for (int i = 0; i < 64; ++i) blob += (char)(i * 37 + 11);
    blob += "xyz";
    const T5Tokenizer tok = T5Tokenizer::from_bytes(tiny_model() + len_field(3, len_field(2, blob)), "g.model");
    for (const char* s : {"abc", "\x01\x02\x03", "\xe2\x96\x81", "zzzz"}) EXPECT_NO_THROW(tok.encode(s));
}

TEST(T5TokenizerErrors, MutatedModelsNeverCrash) {
    // Random byte flips and truncations of the 1000-piece fixture: each load either fails with a nuance::Error or
    // gives a tokenizer that encodes without crashing (the charsmap trie is walked with bounds checks).
    std::ifstream f(kGolden + "t5_tokenizer/test_sentencepiece.model", std::ios::binary);
    const std::string model((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    ASSERT_GT(model.size(), 100000u);
    uint64_t seed = 12345;
    auto next = [&] { return seed = seed * 6364136223846793005ull + 1442695040888963407ull, seed >> 33; };
    int loaded = 0, failed = 0;
    for (int it = 0; it < 60; ++it) {
        std::string m = model;
        const int flips = 1 + (int)(next() % 8);
        for (int k = 0; k < flips; ++k) m[next() % m.size()] ^= (char)(1 + next() % 255);
        if (it % 4 == 3) m.resize(next() % m.size());
        try {
            const T5Tokenizer tok = T5Tokenizer::from_bytes(m, "mutated.model");
            for (const char* s : {"Hello world <extra_id_3> </s>!", "\xe2\x96\x81\xe2\x80\x8d\xef\xbc\xa1 ok", "\xff\xfe"})
                (void)tok.encode_padded(s, 16, it % 2 == 0);
            ++loaded;
        } catch (const nuance::Error&) {
            ++failed;
        }
    }
    EXPECT_EQ(loaded + failed, 60);
    EXPECT_GT(loaded, 0);  // most single flips land in piece text or scores and still load
}

namespace {
// A hand-built darts-clone charsmap with one rule, 'a' -> `replacement`: root offset 1; 'a' (97) lands on unit
// 1 ^ 97 = 96 (label 97, has_leaf, offset 1); its value unit 97 (bit 31 | offset 0 into the replacement blob).
std::string one_rule_charsmap(const std::string& replacement) {
    std::vector<uint32_t> units(98, 0);
    units[0] = 1u << 10;
    units[96] = 97u | (1u << 8) | (1u << 10);
    units[97] = 1u << 31;
    std::string blob;
    const uint32_t n = (uint32_t)(units.size() * 4);
    blob.append(reinterpret_cast<const char*>(&n), 4);
    blob.append(reinterpret_cast<const char*>(units.data()), units.size() * 4);
    return blob + replacement + std::string(1, '\0');
}
}  // namespace

TEST(T5Tokenizer, HandBuiltCharsmapRewrites) {
    const T5Tokenizer tok =
        T5Tokenizer::from_bytes(tiny_model() + len_field(3, len_field(2, one_rule_charsmap("b"))), "r.model");
    EXPECT_EQ(tok.normalize("a"), "\xe2\x96\x81" "b");
    EXPECT_EQ(tok.normalize("ca"), "\xe2\x96\x81" "cb");
    // A rule that rewrites to whitespace is whitespace: leading ones are dropped.
    const T5Tokenizer sp =
        T5Tokenizer::from_bytes(tiny_model() + len_field(3, len_field(2, one_rule_charsmap(" "))), "s.model");
    EXPECT_EQ(sp.normalize("aab"), "\xe2\x96\x81" "b");
    EXPECT_EQ(sp.normalize("baab"), "\xe2\x96\x81" "b\xe2\x96\x81" "b");
}

TEST(T5TokenizerErrors, CharsmapThatExplodesTheText) {
    const T5Tokenizer tok = T5Tokenizer::from_bytes(
        tiny_model() + len_field(3, len_field(2, one_rule_charsmap(std::string(100000, 'x')))), "big.model");
    EXPECT_THAT(error_of([&] { tok.encode("aaaa"); }),
                HasSubstr("normalization rules grow 4 bytes of text past 4352 bytes"));
}
