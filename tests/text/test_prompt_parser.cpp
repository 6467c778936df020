// A1111 prompt-attention parser and 75-token chunker: hand-computed cases (the parser cases are
// the doctests of A1111's modules/prompt_parser.py) and consistency with the plain tokenizer.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "text/prompt_parser.h"

using nuance::ClipTokenizer;
using nuance::parse_prompt_attention;
using nuance::tokenize_weighted;
using ::testing::HasSubstr;

namespace {

using Parsed = std::vector<std::pair<std::string, float>>;

void expect_parsed(const std::string& prompt, const std::vector<std::pair<std::string, double>>& expected) {
    const Parsed got = parse_prompt_attention(prompt);
    ASSERT_EQ(got.size(), expected.size()) << prompt;
    for (size_t i = 0; i < got.size(); ++i) {
        EXPECT_EQ(got[i].first, expected[i].first) << prompt << " run " << i;
        EXPECT_EQ(got[i].second, static_cast<float>(expected[i].second)) << prompt << " run " << i;
    }
}

std::string repeat(const std::string& word, int n) {
    std::string s;
    for (int i = 0; i < n; ++i) s += word + " ";
    return s;
}

constexpr int64_t kBos = 49406, kEos = 49407, kCat = 2368, kDog = 1929, kComma = 267, kA = 320;

// [BOS, body..., EOS, pad...] of length 77
std::vector<int64_t> chunk(std::vector<int64_t> body, int64_t pad) {
    std::vector<int64_t> ids{kBos};
    ids.insert(ids.end(), body.begin(), body.end());
    ids.push_back(kEos);
    ids.resize(77, pad);
    return ids;
}

std::vector<int64_t> times(int64_t id, int n) { return std::vector<int64_t>(static_cast<size_t>(n), id); }

std::vector<int64_t> cat(std::initializer_list<std::vector<int64_t>> parts) {
    std::vector<int64_t> out;
    for (const auto& p : parts) out.insert(out.end(), p.begin(), p.end());
    return out;
}

}  // namespace

TEST(PromptParser, A1111Doctests) {
    expect_parsed("normal text", {{"normal text", 1.0}});
    expect_parsed("an (important) word", {{"an ", 1.0}, {"important", 1.1}, {" word", 1.0}});
    expect_parsed("(unbalanced", {{"unbalanced", 1.1}});
    expect_parsed("\\(literal\\]", {{"(literal]", 1.0}});
    expect_parsed("(unnecessary)(parens)", {{"unnecessaryparens", 1.1}});
    expect_parsed("a (((house:1.3)) [on] a (hill:0.5), sun, (((sky))).",
                  {{"a ", 1.0},
                   {"house", 1.5730000000000004},
                   {" ", 1.1},
                   {"on", 1.0},
                   {" a ", 1.1},
                   {"hill", 0.55},
                   {", sun, ", 1.1},
                   {"sky", 1.4641000000000006},
                   {".", 1.1}});
}

TEST(PromptParser, EachSyntaxElement) {
    expect_parsed("", {{"", 1.0}});
    expect_parsed("[word]", {{"word", 1 / 1.1}});
    expect_parsed("[[word]]", {{"word", (1 / 1.1) * (1 / 1.1)}});
    expect_parsed("((word))", {{"word", 1.1 * 1.1}});
    expect_parsed("(word:1.3)", {{"word", 1.3}});
    expect_parsed("( word : -0.5 )", {{" word ", -0.5}});
    expect_parsed("((a:1.5) b)", {{"a", 1.5 * 1.1}, {" b", 1.1}});
    expect_parsed("[a (b) c]", {{"a ", 1 / 1.1}, {"b", 1.1 * (1 / 1.1)}, {" c", 1 / 1.1}});
    expect_parsed("a \\\\ b \\x", {{"a \\ b x", 1.0}});          // \\ -> \, a lone \ vanishes
    expect_parsed("a) b] c:1.2) d:e", {{"a) b] c:1.2) d:e", 1.0}});  // unmatched closers are text
    expect_parsed("[cat:dog:0.5]", {{"cat:dog:0.5", 1 / 1.1}});
    expect_parsed("(a:1.2", {{"a:1.2", 1.1}});                    // no ')': plain text, unbalanced '('
    expect_parsed("[a", {{"a", 1 / 1.1}});
}

TEST(PromptParser, Break) {
    expect_parsed("a castle BREAK a dragon", {{"a castle", 1.0}, {"BREAK", -1.0}, {"a dragon", 1.0}});
    expect_parsed("BREAK", {{"", 1.0}, {"BREAK", -1.0}, {"", 1.0}});
    expect_parsed("a,BREAK,b", {{"a,", 1.0}, {"BREAK", -1.0}, {",b", 1.0}});
    // not a separate word, or not upper case: plain text
    expect_parsed("aBREAK b break BREAK_X BREAKS", {{"aBREAK b break BREAK_X BREAKS", 1.0}});
    // inside brackets A1111 multiplies BREAK's -1 too, so it is no longer a chunk break
    expect_parsed("(a BREAK b)", {{"a", 1.1}, {"BREAK", -1.1}, {"b", 1.1}});
}

TEST(PromptParser, InvalidWeightThrows) {
    try {
        parse_prompt_attention("(a:1.2.3)");
        FAIL() << "expected an error";
    } catch (const nuance::Error& e) {
        EXPECT_THAT(e.what(), HasSubstr("1.2.3"));
    }
    EXPECT_THROW(parse_prompt_attention("(a:.)"), nuance::Error);
    EXPECT_NO_THROW(parse_prompt_attention("a:1.2.3)"));  // no '(' open: just text, as A1111
}

TEST(PromptParser, InvalidUtf8DoesNotCrash) {
    const Parsed p = parse_prompt_attention("(\xFF\xC3:1.5) ok");
    ASSERT_EQ(p.size(), 2u);
    EXPECT_EQ(p[0].first, "\xEF\xBF\xBD\xEF\xBF\xBD");
    EXPECT_EQ(p[0].second, 1.5f);
    EXPECT_NO_THROW(tokenize_weighted(ClipTokenizer::builtin(), "(\xFF\xC3:1.5) ok", 49407));
}

TEST(TokenizeWeighted, PlainPromptEqualsEncodePadded) {
    const ClipTokenizer& tok = ClipTokenizer::builtin();
    std::ifstream f(std::string(NUANCE_TEST_DATA) + "/golden/clip_tokenizer/prompts.json");
    std::stringstream ss;
    ss << f.rdbuf();
    const auto prompts = nlohmann::json::parse(ss.str());
    int checked = 0;
    for (const auto& p : prompts) {
        const std::string text = p["text"];
        if (p["num_tokens"].get<int>() > 75 || text.find_first_of("()[]\\") != std::string::npos ||
            text.find("BREAK") != std::string::npos || text.find("<|endoftext|>") != std::string::npos)
            continue;  // (a literal EOS in the prompt starts A1111's padding early: see below)
        for (int pad : {49407, 0}) {
            const auto chunks = tokenize_weighted(tok, text, pad);
            ASSERT_EQ(chunks.ids.size(), 1u) << text;
            EXPECT_EQ(chunks.ids[0], tok.encode_padded(text, pad, 77, /*pad_is_special=*/false)) << text;
            EXPECT_EQ(chunks.weights[0], std::vector<float>(77, 1.0f)) << text;
        }
        ++checked;
    }
    EXPECT_GE(checked, 30);
}

TEST(TokenizeWeighted, WeightsFollowTokens) {
    const auto r = tokenize_weighted(ClipTokenizer::builtin(), "a (cat:1.5) [dog]", 49407);
    ASSERT_EQ(r.ids.size(), 1u);
    EXPECT_EQ(r.ids[0], chunk({kA, kCat, kDog}, kEos));
    std::vector<float> w(77, 1.0f);
    w[2] = 1.5f;
    w[3] = static_cast<float>(1 / 1.1);
    EXPECT_EQ(r.weights[0], w);
}

TEST(TokenizeWeighted, EmptyPromptIsOneChunk) {
    const auto r = tokenize_weighted(ClipTokenizer::builtin(), "", 0);
    ASSERT_EQ(r.ids.size(), 1u);
    EXPECT_EQ(r.ids[0], chunk({}, 0));
    EXPECT_EQ(r.weights[0], std::vector<float>(77, 1.0f));
}

TEST(TokenizeWeighted, BreakStartsNewChunk) {
    const auto r = tokenize_weighted(ClipTokenizer::builtin(), "a cat BREAK a dog BREAK", 0);
    ASSERT_EQ(r.ids.size(), 2u);  // a trailing BREAK leaves no empty third chunk
    EXPECT_EQ(r.ids[0], chunk({kA, kCat}, 0));
    EXPECT_EQ(r.ids[1], chunk({kA, kDog}, 0));
}

TEST(TokenizeWeighted, LongPromptSplitsInto75TokenChunks) {
    const auto r = tokenize_weighted(ClipTokenizer::builtin(), repeat("cat", 80) + "(dog:1.25)", 49407);
    ASSERT_EQ(r.ids.size(), 2u);
    EXPECT_EQ(r.ids[0], chunk(times(kCat, 75), kEos));
    EXPECT_EQ(r.ids[1], chunk(cat({times(kCat, 5), {kDog}}), kEos));
    EXPECT_EQ(r.weights[0], std::vector<float>(77, 1.0f));
    std::vector<float> w(77, 1.0f);
    w[6] = 1.25f;
    EXPECT_EQ(r.weights[1], w);
}

TEST(TokenizeWeighted, CommaBacktrack) {
    const ClipTokenizer& tok = ClipTokenizer::builtin();
    // 70 cats, a comma, 10 dogs: the chunk fills after 4 dogs; the comma is 5 tokens back
    // (<= 20), so those 4 dogs move to the second chunk.
    auto r = tokenize_weighted(tok, repeat("cat", 70) + ", " + repeat("dog", 10), 49407);
    ASSERT_EQ(r.ids.size(), 2u);
    EXPECT_EQ(r.ids[0], chunk(cat({times(kCat, 70), {kComma}}), kEos));
    EXPECT_EQ(r.ids[1], chunk(times(kDog, 10), kEos));
    // With pad 0 the first chunk pads with 0 after its EOS.
    r = tokenize_weighted(tok, repeat("cat", 70) + ", " + repeat("dog", 10), 0);
    EXPECT_EQ(r.ids[0], chunk(cat({times(kCat, 70), {kComma}}), 0));
    // Comma 25 tokens back (> 20): no backtrack, a plain split at 75.
    r = tokenize_weighted(tok, repeat("cat", 50) + ", " + repeat("dog", 40), 49407);
    ASSERT_EQ(r.ids.size(), 2u);
    EXPECT_EQ(r.ids[0], chunk(cat({times(kCat, 50), {kComma}, times(kDog, 24)}), kEos));
    EXPECT_EQ(r.ids[1], chunk(times(kDog, 16), kEos));
}

TEST(TokenizeWeighted, LiteralEosStartsPaddingLikeA1111) {
    const auto r = tokenize_weighted(ClipTokenizer::builtin(), "a<|endoftext|>cat", 0);
    ASSERT_EQ(r.ids.size(), 1u);
    EXPECT_EQ(r.ids[0], chunk({kA}, 0));  // sd_hijack_clip: every id after the first EOS -> pad
    EXPECT_EQ(tokenize_weighted(ClipTokenizer::builtin(), "a<|endoftext|>cat", kEos).ids[0],
              chunk({kA, kEos, kCat}, kEos));
}

TEST(TokenizeWeighted, BadChunkLength) {
    EXPECT_THROW(tokenize_weighted(ClipTokenizer::builtin(), "a", 0, 0), nuance::Error);
}
