// A diffusers folder's own T5 tokenizer (tokenizer_3/ for SD3, tokenizer_2/ for Flux): spiece.model or
// tokenizer.json. The built-in vocabulary written out as either file gives the built-in ids; an edited vocabulary
// changes them as edited; malformed files fail with an Error naming the file.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "../test_util.h"
#include "t5_tokenizer_files.h"
#include "text/t5_tokenizer.h"

namespace nuance {
namespace {

namespace fs = std::filesystem;
using test::error_of;
using ::testing::HasSubstr;

std::string temp_dir(const std::string& name) {
    const fs::path d = fs::path(NUANCE_SCRATCH_DIR) / name;
    fs::remove_all(d);
    fs::create_directories(d);
    return d.string();
}

std::string read_bytes(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    std::stringstream s;
    s << f.rdbuf();
    return s.str();
}

const std::vector<std::string> kPrompts = {
    "",
    "a red fox in the snow",
    "  Leading and   inner   spaces  ",
    "Ünïcödé, 東京タワー, ½ ﬁ ①, \xef\xbc\xa1\xef\xbc\xa2 fullwidth",
    "special </s> and <extra_id_5> tokens, <unk> too",
    "photo of a cat holding a sign that says \"hello world\", 8k, (masterpiece:1.2)",
    "tab\tnewline\nend.",
};

void expect_same_as_builtin(const T5Tokenizer& t) {
    const T5Tokenizer& b = T5Tokenizer::builtin();
    EXPECT_EQ(t.vocab_size(), b.vocab_size());
    EXPECT_EQ(t.pad_id(), b.pad_id());
    EXPECT_EQ(t.eos_id(), b.eos_id());
    EXPECT_EQ(t.unk_id(), b.unk_id());
    EXPECT_EQ(t.extra_id(0), b.extra_id(0));
    EXPECT_EQ(t.extra_id(99), b.extra_id(99));
    for (const std::string& p : kPrompts) {
        EXPECT_EQ(t.encode(p), b.encode(p)) << p;
        EXPECT_EQ(t.encode(p, false), b.encode(p, false)) << p;
        EXPECT_EQ(t.encode_padded(p, 16), b.encode_padded(p, 16)) << p;
    }
}

TEST(T5TokenizerFiles, BuiltInVocabularyWrittenOutGivesTheSameIds) {
    const std::string a = temp_dir("t5tok_spiece"), j = temp_dir("t5tok_json"), both = temp_dir("t5tok_both");
    test::write_file(a + "/spiece.model", read_bytes(test::builtin_spiece_path()));
    test::write_file(j + "/tokenizer.json", test::builtin_tokenizer_json().dump());
    const auto from_spiece = T5Tokenizer::from_folder(a);
    const auto from_json = T5Tokenizer::from_folder(j);
    ASSERT_TRUE(from_spiece);
    ASSERT_TRUE(from_json);
    expect_same_as_builtin(*from_spiece);
    expect_same_as_builtin(*from_json);
    // Both present: spiece.model is read (a broken tokenizer.json beside it is never opened).
    test::write_file(both + "/spiece.model", read_bytes(test::builtin_spiece_path()));
    test::write_file(both + "/tokenizer.json", "not json");
    expect_same_as_builtin(*T5Tokenizer::from_folder(both));
    EXPECT_FALSE(T5Tokenizer::from_folder(temp_dir("t5tok_empty")));
    EXPECT_FALSE(T5Tokenizer::from_folder(temp_dir("t5tok_empty") + "/missing"));
}

TEST(T5TokenizerFiles, AnEditedVocabularyChangesTheIds) {
    const T5Tokenizer& b = T5Tokenizer::builtin();
    const int snow = b.token_id("\xe2\x96\x81snow");
    ASSERT_GT(snow, 3);
    ASSERT_EQ(b.encode("snow"), (std::vector<int>{snow, 1}));
    const std::string d = temp_dir("t5tok_edit");
    test::write_file(d + "/tokenizer.json", test::builtin_tokenizer_json([&](SpieceModel& m) {
                         m.pieces[(size_t)snow].piece = "\xe2\x96\x81sn0w";
                     }).dump());
    const auto t = T5Tokenizer::from_folder(d);
    ASSERT_TRUE(t);
    EXPECT_EQ(t->encode("sn0w"), (std::vector<int>{snow, 1}));  // the edited piece, at the old id
    EXPECT_NE(t->encode("snow"), (std::vector<int>{snow, 1}));  // "snow" is no longer one piece
    EXPECT_EQ(t->token_id("\xe2\x96\x81snow"), -1);
    EXPECT_EQ(t->encode("a red fox"), b.encode("a red fox"));  // everything else unchanged
}

TEST(T5TokenizerFilesErrors, MalformedFilesNameTheFileAndTheField) {
    const std::string d = temp_dir("t5tok_bad");
    const std::string path = d + "/tokenizer.json";
    const nlohmann::json good = test::builtin_tokenizer_json();
    auto error_with = [&](const std::function<void(nlohmann::json&)>& edit) {
        nlohmann::json j = good;
        edit(j);
        test::write_file(path, j.dump());
        return error_of([&] { T5Tokenizer::from_folder(d); });
    };
    test::write_file(path, "{\"model\": [1, 2");
    EXPECT_THAT(error_of([&] { T5Tokenizer::from_folder(d); }), HasSubstr(path));
    EXPECT_THAT(error_with([](nlohmann::json& j) { j["model"]["type"] = "BPE"; }),
                HasSubstr(path + ": model: type \"BPE\" is not \"Unigram\""));
    EXPECT_THAT(error_with([](nlohmann::json& j) { j.erase("model"); }), HasSubstr(path + ": no \"model\""));
    EXPECT_THAT(error_with([](nlohmann::json& j) { j["model"]["vocab"][5] = {1, 2}; }),
                HasSubstr("vocab entry 5 is not a [piece, score] pair"));
    EXPECT_THAT(error_with([](nlohmann::json& j) { j["model"]["vocab"][7][0] = ""; }),
                HasSubstr("vocab entry 7 has a piece of 0 bytes"));
    EXPECT_THAT(error_with([](nlohmann::json& j) { j["model"]["vocab"][7][0] = std::string(5000, 'x'); }),
                HasSubstr("vocab entry 7 has a piece of 5000 bytes"));
    EXPECT_THAT(error_with([](nlohmann::json& j) { j["model"]["vocab"] = nlohmann::json::array(); }),
                HasSubstr("\"vocab\" is not a non-empty array"));
    EXPECT_THAT(error_with([](nlohmann::json& j) { j["model"]["unk_id"] = 40000; }),
                HasSubstr("unk_id 40000 is not a piece id (0..31999)"));
    EXPECT_THAT(error_with([](nlohmann::json& j) { std::swap(j["model"]["vocab"][32000], j["model"]["vocab"][32001]); }),
                HasSubstr("vocab entry 32000 is '<extra_id_98>', expected <extra_id_99>"));
    EXPECT_THAT(error_with([](nlohmann::json& j) {
                    j["normalizer"]["normalizers"][0]["precompiled_charsmap"] = "AAA*";
                }),
                HasSubstr("precompiled_charsmap: invalid base64 character at offset 3"));
    EXPECT_THAT(error_with([](nlohmann::json& j) {
                    j["normalizer"]["normalizers"][0]["precompiled_charsmap"] = test::base64("\x10\x00\x00\x00xyz");
                }),
                HasSubstr(path));
    EXPECT_THAT(error_with([](nlohmann::json& j) { j["normalizer"] = {{"type", "Lowercase"}}; }),
                HasSubstr("normalizer: type \"Lowercase\" is not one a SentencePiece T5 tokenizer uses"));
    EXPECT_THAT(error_with([](nlohmann::json& j) { j["pre_tokenizer"] = {{"type", "ByteLevel"}}; }),
                HasSubstr("pre_tokenizer type \"ByteLevel\""));
    EXPECT_THAT(error_with([](nlohmann::json& j) { j["added_tokens"][0]["content"] = "<s>"; }),
                HasSubstr("added token 0 is '<s>' but vocab entry 0 is '<pad>'"));
    // A truncated or garbage spiece.model: SpieceModel's errors, naming the file.
    const std::string s = temp_dir("t5tok_bad_spiece");
    test::write_file(s + "/spiece.model", read_bytes(test::builtin_spiece_path()).substr(0, 55));  // inside piece 4
    EXPECT_THAT(error_of([&] { T5Tokenizer::from_folder(s); }), HasSubstr(s + "/spiece.model"));
    test::write_file(s + "/spiece.model", std::string("\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff", 11));
    EXPECT_THAT(error_of([&] { T5Tokenizer::from_folder(s); }), HasSubstr(s + "/spiece.model"));
    fs::remove(s + "/spiece.model");
    fs::create_directories(s + "/spiece.model");  // a folder where the file should be
    EXPECT_THAT(error_of([&] { T5Tokenizer::from_folder(s); }), HasSubstr(s + "/spiece.model"));
}

}  // namespace
}  // namespace nuance
