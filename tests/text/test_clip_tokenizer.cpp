// CLIP tokenizer against the golden reference (tests/data/golden/clip_tokenizer: transformers'
// CLIPTokenizer with ftfy, openai's SimpleTokenizer; 61 prompts incl. unicode/HTML/CJK ones).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "text/clip_tokenizer.h"
#include "text/text_fix.h"
#include "text/unicode.h"

using nuance::ClipTokenizer;
using ::testing::HasSubstr;

namespace {

const std::string kDir = std::string(NUANCE_TEST_DATA) + "/golden/clip_tokenizer";

std::string slurp(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    EXPECT_TRUE(f.good()) << path;
    std::ostringstream ss;
    ss << f.rdbuf();
    return ss.str();
}

// Minimal safetensors reader for I64 tensors (8-byte LE header size, JSON header, raw data).
struct I64Tensor {
    std::vector<int64_t> shape;
    std::vector<int64_t> data;
};
std::map<std::string, I64Tensor> read_i64_safetensors(const std::string& path) {
    const std::string bytes = slurp(path);
    std::map<std::string, I64Tensor> out;
    if (bytes.size() < 8) { ADD_FAILURE() << "short file " << path; return out; }
    uint64_t n = 0;
    for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<unsigned char>(bytes[i]);
    if (n > bytes.size() - 8) { ADD_FAILURE() << "bad header size " << path; return out; }
    const auto header = nlohmann::json::parse(bytes.substr(8, n));
    const size_t base = 8 + n;
    for (auto it = header.begin(); it != header.end(); ++it) {
        if (it.key() == "__metadata__" || it.value()["dtype"] != "I64") continue;
        I64Tensor t;
        t.shape = it.value()["shape"].get<std::vector<int64_t>>();
        const auto off = it.value()["data_offsets"].get<std::vector<size_t>>();
        if (off.size() != 2 || off[0] > off[1] || base + off[1] > bytes.size()) { ADD_FAILURE() << it.key(); continue; }
        t.data.resize((off[1] - off[0]) / 8);
        std::memcpy(t.data.data(), bytes.data() + base + off[0], t.data.size() * 8);
        out[it.key()] = std::move(t);
    }
    return out;
}

struct Golden {
    nlohmann::json prompts;
    std::map<std::string, I64Tensor> io;
    std::vector<int64_t> row(const std::string& name, size_t i) const {
        const I64Tensor& t = io.at(name);
        const size_t w = static_cast<size_t>(t.shape.at(1));
        return std::vector<int64_t>(t.data.begin() + i * w, t.data.begin() + (i + 1) * w);
    }
};

const Golden& golden() {
    static const Golden g = [] {
        Golden g;
        g.prompts = nlohmann::json::parse(slurp(kDir + "/prompts.json"));
        g.io = read_i64_safetensors(kDir + "/io.safetensors");
        return g;
    }();
    return g;
}

std::string temp_file(const std::string& name, const std::string& content) {
    const auto path = std::filesystem::path(NUANCE_SCRATCH_DIR) / ("nuance_test_clip_" + name);
    std::ofstream f(path, std::ios::binary);
    f << content;
    return path.string();
}

}  // namespace

TEST(ClipTokenizer, GoldenHasAllPrompts) {
    ASSERT_EQ(golden().prompts.size(), 61u);
    for (const char* k : {"ids_sd1", "ids_sd2", "ids_openai_padded", "num_tokens"}) ASSERT_TRUE(golden().io.count(k)) << k;
    EXPECT_EQ(golden().io.at("ids_sd1").shape, (std::vector<int64_t>{61, 77}));
}

TEST(ClipTokenizer, BuiltinMatchesGoldenUntruncatedIdsAndTokens) {
    const ClipTokenizer& tok = ClipTokenizer::builtin();
    EXPECT_EQ(tok.vocab_size(), 49408);
    EXPECT_EQ(tok.bos_id(), ClipTokenizer::kBosId);
    EXPECT_EQ(tok.eos_id(), ClipTokenizer::kEosId);
    const auto& num_tokens = golden().io.at("num_tokens").data;
    for (size_t i = 0; i < golden().prompts.size(); ++i) {
        const auto& p = golden().prompts[i];
        const std::string text = p["text"];
        const auto ids = tok.encode(text);
        EXPECT_EQ(ids, p["ids_hf_ftfy"].get<std::vector<int>>()) << "prompt " << i << ": " << text;
        EXPECT_EQ(ids, p["ids_openai"].get<std::vector<int>>()) << "prompt " << i;
        EXPECT_EQ(static_cast<int64_t>(ids.size()), num_tokens[i]) << "prompt " << i;
        EXPECT_EQ(tok.bpe_tokens(text), p["tokens_hf_ftfy"].get<std::vector<std::string>>()) << "prompt " << i;
    }
}

TEST(ClipTokenizer, BuiltinMatchesGoldenPaddedSd1Sd2OpenAI) {
    const ClipTokenizer& tok = ClipTokenizer::builtin();
    for (size_t i = 0; i < golden().prompts.size(); ++i) {
        const std::string text = golden().prompts[i]["text"];
        EXPECT_EQ(tok.encode_padded(text, 49407), golden().row("ids_sd1", i)) << "prompt " << i << ": " << text;
        // transformers splits the pad token '!' out as a special token (id 0) in SD2's tokenizer
        EXPECT_EQ(tok.encode_padded(text, 0), golden().row("ids_sd2", i)) << "prompt " << i << ": " << text;
        // open_clip pads with 0 but tokenizes '!' normally
        EXPECT_EQ(tok.encode_padded(text, 0, 77, false), golden().row("ids_openai_padded", i)) << "prompt " << i;
    }
}

TEST(ClipTokenizer, BasicNormalizationMatchesGoldenNoFtfy) {
    // transformers without ftfy installed: BERT BasicTokenizer clean-up (the golden *_noftfy rows)
    const ClipTokenizer& tok = ClipTokenizer::builtin();
    const auto basic = nuance::ClipNormalization::Basic;
    int differs = 0;
    for (size_t i = 0; i < golden().prompts.size(); ++i) {
        const auto& p = golden().prompts[i];
        const std::string text = p["text"];
        const auto ids = tok.encode(text, {}, basic);
        EXPECT_EQ(ids, p["ids_hf_noftfy"].get<std::vector<int>>()) << "prompt " << i << ": " << text;
        EXPECT_EQ(tok.encode_padded(text, 49407, 77, true, basic), golden().row("ids_sd1_noftfy", i)) << "prompt " << i;
        EXPECT_EQ(tok.encode_padded(text, 0, 77, true, basic), golden().row("ids_sd2_noftfy", i)) << "prompt " << i;
        differs += ids != tok.encode(text);
    }
    EXPECT_EQ(differs, 10);  // the two conventions disagree on 10 of the 61 prompts
}

TEST(ClipTokenizer, FromFilesEqualsBuiltin) {
    const ClipTokenizer tok = ClipTokenizer::from_files(kDir + "/vocab.json", kDir + "/merges.txt");
    EXPECT_EQ(tok.vocab_size(), 49408);
    for (size_t i = 0; i < golden().prompts.size(); i += 5) {
        const std::string text = golden().prompts[i]["text"];
        EXPECT_EQ(tok.encode(text), ClipTokenizer::builtin().encode(text)) << "prompt " << i;
    }
}

TEST(ClipTokenizer, HandComputedCases) {
    const ClipTokenizer& tok = ClipTokenizer::builtin();
    EXPECT_EQ(tok.encode("a photo of a cat"), (std::vector<int>{320, 1125, 539, 320, 2368}));
    EXPECT_EQ(tok.token_id("cat</w>"), 2368);
    EXPECT_EQ(tok.token_text(2368), "cat</w>");
    EXPECT_EQ(tok.token_id("no such token"), -1);
    EXPECT_EQ(tok.token_text(-3), "");
    EXPECT_EQ(tok.token_text(1 << 20), "");
    // Empty prompt: BOS EOS pad...
    const auto e = tok.encode_padded("", 49407);
    ASSERT_EQ(e.size(), 77u);
    EXPECT_EQ(e[0], 49406);
    for (size_t i = 1; i < 77; ++i) EXPECT_EQ(e[i], 49407);
    // Truncation keeps BOS + 75 tokens + EOS; a shorter max_len works too.
    std::string many;
    for (int i = 0; i < 100; ++i) many += "cat ";
    const auto t = tok.encode_padded(many, 0, 10);
    EXPECT_EQ(t, (std::vector<int64_t>{49406, 2368, 2368, 2368, 2368, 2368, 2368, 2368, 2368, 49407}));
    EXPECT_EQ(tok.encode(many).size(), 100u);
    // A long piece (> 64 bytes) takes the heap-based BPE path: 1000 'a' = 124 x "aaaaaaaa",
    // "aaaa", "aaaa</w>" (checked against the plain merge loop on 4000 random words while writing it)
    std::vector<int> a1000(124, 23126);
    a1000.push_back(6727);
    a1000.push_back(19336);
    EXPECT_EQ(tok.encode(std::string(1000, 'a')), a1000);
    // Extra special tokens map to their ids without BPE.
    EXPECT_EQ(tok.encode("hi!!", {"!"}), (std::vector<int>{1883, 0, 0}));
    EXPECT_EQ(tok.encode("hi!!"), (std::vector<int>{1883, 748}));
}

TEST(ClipTokenizer, InvalidUtf8IsReplacedNotFatal) {
    const ClipTokenizer& tok = ClipTokenizer::builtin();
    // Each ill-formed sequence becomes U+FFFD, which tokenizes like the real character.
    const auto fffd = tok.encode("a \xEF\xBF\xBD b");
    EXPECT_EQ(tok.encode("a \xFF b"), fffd);
    EXPECT_EQ(tok.encode("a \xC3 b"), fffd);           // truncated 2-byte sequence
    EXPECT_EQ(tok.encode("a \xED\xA0\x80 b").size(), tok.encode("a \xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD b").size());
    EXPECT_NO_THROW(tok.encode(std::string("\x80\x80\xF4\x90\x80\x80\xE2\x82", 8)));
    EXPECT_NO_THROW(tok.encode(std::string("nul\0byte", 8)));
    EXPECT_EQ(tok.encode(std::string("nul\0byte", 8)), tok.encode("nulbyte"));  // ftfy drops controls
}

TEST(ClipTokenizer, UnicodeHelpers) {
    using namespace nuance::unicode;
    EXPECT_EQ(decode_utf8("\xC3\xA9"), std::u32string(U"\u00E9"));
    EXPECT_EQ(decode_utf8("\xE0\x80\x80"), std::u32string(U"\uFFFD\uFFFD\uFFFD"));  // overlong
    EXPECT_EQ(decode_utf8("\xF0\x9F\x90\xB1"), std::u32string(U"\U0001F431"));
    EXPECT_EQ(encode_utf8(U"\U0001F431\u00E9a"), "\xF0\x9F\x90\xB1\xC3\xA9" "a");
    EXPECT_EQ(to_lower(U"ΟΔΟΣ ΣΑ İ ÀÉ"), std::u32string(U"οδος σα i\u0307 àé"));
    EXPECT_EQ(nfc(U"e\u0301 \u1100\u1161\u11A8 a\u0323\u0302"), std::u32string(U"\u00E9 \uAC01 \u1EAD"));
    EXPECT_EQ(nfc(U"\u212B"), std::u32string(U"\u00C5"));  // singleton decomposition
    EXPECT_TRUE(is_letter(U'ж'));
    EXPECT_TRUE(is_number(U'²'));
    EXPECT_TRUE(is_space(0x3000));
    EXPECT_FALSE(is_space(0x200B));
}

TEST(ClipTokenizer, FixTextPieces) {
    using nuance::text::fix_text;
    auto fix = [](const char* s) { return nuance::unicode::encode_utf8(fix_text(nuance::unicode::decode_utf8(s))); };
    // ftfy repeats its fixes until nothing changes, so "&amp;amp;" unescapes twice
    EXPECT_EQ(fix("&lt;b&gt; &amp;amp; &#65;&#x42; &#59; &AMP;"), "<b> & AB &#59; &");
    EXPECT_EQ(fix("<b>&amp;</b>"), "<b>&amp;</b>");  // looks like HTML: left alone
    EXPECT_EQ(fix("caf\xC3\x83\xC2\xA9"), "caf\xC3\xA9");  // "cafÃ©" -> "café"
    EXPECT_EQ(fix("\xE6\x9D\xB1 caf\xC3\x83\xC2\xA9"), "\xE6\x9D\xB1 caf\xC3\xA9");  // embedded mojibake
    EXPECT_EQ(fix("\xE2\x80\x9Cq\xE2\x80\x9D \xE2\x80\x98s\xE2\x80\x99"), "\"q\" 's'");
    EXPECT_EQ(fix("\xEF\xAC\x81 \xEF\xBD\x81\xEF\xBC\xA2"), "fi aB");
    EXPECT_EQ(fix("a\x1B[31mred\x1B[0m\x07"), "ared");
    EXPECT_EQ(fix("x\r\ny\xC2\x85z"), "x\ny\xE2\x80\xA6z");  // U+0085 is a C1 control -> '…'
    EXPECT_EQ(nuance::unicode::encode_utf8(nuance::text::whitespace_clean(U"  a \t\u00A0 b\u3000")), "a b");
    EXPECT_EQ(nuance::text::bert_basic_clean(U"a\u200Bb\x07\tc\u6771\u4EACe\u0301\uFFFD"),
              std::u32string(U"ab c \u6771  \u4EAC \u00E9"));
}

TEST(ClipTokenizer, ThreadSafeConcurrentEncode) {
    const ClipTokenizer& tok = ClipTokenizer::builtin();
    const std::string text = golden().prompts[46]["text"];
    const auto expected = tok.encode(text);
    std::vector<std::thread> threads;
    std::vector<int> ok(4, 0);
    for (int t = 0; t < 4; ++t)
        threads.emplace_back([&, t] {
            for (int k = 0; k < 50; ++k) ok[t] += tok.encode(text + " word" + std::to_string(k % 7)).size() > expected.size();
        });
    for (auto& th : threads) th.join();
    for (int t = 0; t < 4; ++t) EXPECT_EQ(ok[t], 50);
}

// Error paths: missing / corrupt vocabulary and merges files.
TEST(ClipTokenizerErrors, MissingFilesNameTheFile) {
    try {
        ClipTokenizer::from_files("/nonexistent/vocab.json", kDir + "/merges.txt");
        FAIL() << "expected an error";
    } catch (const nuance::Error& e) {
        EXPECT_EQ(e.code(), nuance::ErrorCode::NotFound);
        EXPECT_THAT(e.what(), HasSubstr("/nonexistent/vocab.json"));
    }
    try {
        ClipTokenizer::from_files(kDir + "/vocab.json", "/nonexistent/merges.txt");
        FAIL() << "expected an error";
    } catch (const nuance::Error& e) {
        EXPECT_THAT(e.what(), HasSubstr("/nonexistent/merges.txt"));
    }
}

TEST(ClipTokenizerErrors, CorruptVocab) {
    const std::string merges = kDir + "/merges.txt";
    auto expect_error = [&](const std::string& content, const std::string& what) {
        const std::string path = temp_file("vocab.json", content);
        try {
            ClipTokenizer::from_files(path, merges);
            ADD_FAILURE() << "expected an error for " << content;
        } catch (const nuance::Error& e) {
            EXPECT_THAT(e.what(), HasSubstr(path)) << content;
            EXPECT_THAT(e.what(), HasSubstr(what)) << content;
        }
        std::filesystem::remove(path);
    };
    expect_error("{\"a\": 1,", "not valid JSON");
    expect_error("[1, 2]", "JSON object");
    expect_error("{}", "JSON object");
    expect_error("{\"a</w>\": \"x\"}", "non-integer id");
    expect_error("{\"a</w>\": -4}", "has id -4");
    expect_error("{\"a</w>\": 1, \"<|endoftext|>\": 2}", "<|startoftext|>");
}

TEST(ClipTokenizerErrors, CorruptMerges) {
    const std::string vocab = temp_file("small_vocab.json", R"({"a": 0, "b": 1, "<|startoftext|>": 2, "<|endoftext|>": 3})");
    auto expect_error = [&](const std::string& content, const std::string& what) {
        const std::string path = temp_file("merges.txt", content);
        try {
            ClipTokenizer::from_files(vocab, path);
            ADD_FAILURE() << "expected an error for " << content;
        } catch (const nuance::Error& e) {
            EXPECT_THAT(e.what(), HasSubstr(path)) << content;
            EXPECT_THAT(e.what(), HasSubstr(what)) << content;
        }
        std::filesystem::remove(path);
    };
    expect_error("", "empty");
    expect_error("#version: 0.2\n", "no merges");
    expect_error("#version: 0.2\nt h\nthree parts here\n", "line 3");
    expect_error("#version: 0.2\nlonely\n", "got 1");
    std::filesystem::remove(vocab);
}

TEST(ClipTokenizerErrors, SmallCustomVocab) {
    // A tiny hand-made vocabulary: merges apply by rank, unknown symbols map to unk (= EOS).
    const std::string vocab = R"({"a": 0, "b": 1, "a</w>": 2, "b</w>": 3, "ab</w>": 4, "ab": 5,
                                  "<|startoftext|>": 6, "<|endoftext|>": 7})";
    const std::string merges = "#version: 0.2\na b</w>\na b\n";
    const ClipTokenizer tok = ClipTokenizer::from_strings(vocab, merges);
    EXPECT_EQ(tok.encode("ab"), (std::vector<int>{4}));
    EXPECT_EQ(tok.encode("abab"), (std::vector<int>{5, 4}));
    EXPECT_EQ(tok.encode("c b"), (std::vector<int>{7, 3}));  // 'c</w>' is not in the vocab -> unk
    EXPECT_EQ(tok.encode_padded("b", 7, 5), (std::vector<int64_t>{6, 3, 7, 7, 7}));
    EXPECT_THROW(tok.encode_padded("b", 99), nuance::Error);  // pad id not in the vocab
    EXPECT_THROW(tok.encode_padded("b", 7, 1), nuance::Error);
}

TEST(ClipTokenizer, SpeedSmoke) {
    // Not a timing assertion (see design.md): prints the per-prompt time after warm-up.
    const ClipTokenizer& tok = ClipTokenizer::builtin();
    const std::string text = golden().prompts[46]["text"];
    tok.encode(text);
    const auto t0 = std::chrono::steady_clock::now();
    size_t n = 0;
    for (int i = 0; i < 200; ++i) n += tok.encode(text).size();
    const double us = std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count() / 200;
    EXPECT_EQ(n, 200u * 86u);
    std::printf("[clip tokenizer] %.1f us per 86-token prompt\n", us);
}
