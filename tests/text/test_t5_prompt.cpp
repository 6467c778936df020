// The A1111 prompt syntax for T5 (text/t5_prompt.h): weighted token ids against hand-built expectations on the real
// T5 vocabulary, identity with T5Tokenizer::encode_padded for prompts without syntax, and ComfyUI's weighting formula
// on hand-computed values.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "../test_util.h"
#include "text/t5_prompt.h"

namespace nuance {
namespace {

using test::error_of;
using ::testing::HasSubstr;

std::vector<int> no_eos(std::vector<int> ids) {
    if (!ids.empty() && ids.back() == T5Tokenizer::builtin().eos_id()) ids.pop_back();
    return ids;
}

TEST(T5Prompt, WithoutSyntaxIsExactlyTheTokenizersPaddedIds) {
    const T5Tokenizer& tok = T5Tokenizer::builtin();
    const std::string long_prompt = [] {
        std::string s;
        for (int i = 0; i < 300; ++i) s += "word" + std::to_string(i) + " ";
        return s;
    }();
    for (const std::string& p : {std::string(""), std::string("a red fox in the snow"), std::string("Ünïcödé, 東京 ½"),
                                 std::string("trailing </s>"), long_prompt}) {
        for (int L : {1, 8, 256, 512}) {
            const T5WeightedIds w = tokenize_t5_weighted(tok, p, L);
            EXPECT_EQ(w.ids, tok.encode_padded(p, L)) << p << " @" << L;
            EXPECT_EQ(w.weights, std::vector<float>((size_t)L, 1.0f));
            EXPECT_TRUE(w.all_one());
        }
    }
}

TEST(T5Prompt, WeightedRunsAreTokenizedOneByOne) {
    const T5Tokenizer& tok = T5Tokenizer::builtin();
    // runs: ("a ", 1) ("red", 1.5) (" fox ", 1) ("in snow", 1/1.1)   (BREAK is dropped: T5 has no chunks)
    const T5WeightedIds w = tokenize_t5_weighted(tok, "a (red:1.5) fox BREAK [in snow]", 16);
    std::vector<int64_t> want_ids;
    std::vector<float> want_w;
    auto add = [&](const std::string& text, float weight) {
        for (int id : no_eos(tok.encode(text))) {
            want_ids.push_back(id);
            want_w.push_back(weight);
        }
    };
    add("a ", 1.0f);
    add("red", 1.5f);
    add(" fox", 1.0f);
    add("in snow", (float)(1.0 / 1.1));
    // ▁ a | ▁red | ▁ fox | ▁in ▁snow (T5 spells "a" and "fox" as "▁" + piece)
    EXPECT_EQ(want_ids, (std::vector<int64_t>{3, 9, 1131, 3, 20400, 16, 2983}));
    want_ids.push_back(tok.eos_id());
    want_w.push_back(1.0f);
    want_ids.resize(16, tok.pad_id());
    want_w.resize(16, 1.0f);
    EXPECT_EQ(w.ids, want_ids);
    EXPECT_EQ(w.weights, want_w);
    EXPECT_FALSE(w.all_one());
    // Same ids as the text without syntax (each run starts a word here).
    EXPECT_EQ(w.ids, tok.encode_padded("a red fox in snow", 16));
}

TEST(T5Prompt, TruncationKeepsRoomForEos) {
    const T5Tokenizer& tok = T5Tokenizer::builtin();
    const T5WeightedIds w = tokenize_t5_weighted(tok, "(one two three four five six:1.2)", 4);
    const std::vector<int> six = no_eos(tok.encode("one two three four five six"));
    ASSERT_GE(six.size(), 6u);
    EXPECT_EQ(w.ids, (std::vector<int64_t>{six[0], six[1], six[2], tok.eos_id()}));
    EXPECT_EQ(w.weights, (std::vector<float>{1.2f, 1.2f, 1.2f, 1.0f}));
    const T5WeightedIds one = tokenize_t5_weighted(tok, "(a:2)", 1);
    EXPECT_EQ(one.ids, (std::vector<int64_t>{tok.eos_id()}));
    EXPECT_TRUE(one.all_one());
}

TEST(T5Prompt, ComfyUIWeightingByHand) {
    // z_j = (z_j - e_j) * w_j + e_j for w_j != 1; weight-1 rows untouched.
    std::vector<float> z{1.0f, 2.0f, 3.0f, 4.0f, 5.0f, 6.0f}, e{0.5f, -1.0f, 1.0f, 1.0f, 0.0f, 0.25f};
    apply_t5_token_weights(z.data(), e.data(), {2.0f, 1.0f, 0.5f}, 3, 2);
    EXPECT_EQ(z, (std::vector<float>{1.5f, 5.0f, 3.0f, 4.0f, 2.5f, 3.125f}));
}

TEST(T5PromptErrors, BadWeightsLengthsAndSyntax) {
    const T5Tokenizer& tok = T5Tokenizer::builtin();
    EXPECT_THAT(error_of([&] { tokenize_t5_weighted(tok, "a", 0); }), HasSubstr("max_length 0 is outside"));
    EXPECT_THAT(error_of([&] { tokenize_t5_weighted(tok, "(a:1.2.3)", 8); }), HasSubstr("1.2.3"));
    std::vector<float> z(4), e(4);
    EXPECT_THAT(error_of([&] { apply_t5_token_weights(z.data(), e.data(), {1.0f}, 2, 2); }),
                HasSubstr("1 weights for 2 tokens"));
}

}  // namespace
}  // namespace nuance
