// The A1111 prompt syntax on SD3 and Flux conditioning (issue 13 leftovers), against references built by hand from
// the same tiny encoders: CLIP-L + CLIP-G windows with A1111's emphasis (each token's columns scaled by its weight,
// the window's mean restored; SD3ClipLG in A1111's sd3_cond.py), T5 tokens moved away from the empty prompt's
// encoding as ComfyUI does ((z - e) * w + e), Flux's CLIP-L pooled output from the parsed text. A prompt without
// syntax gives exactly what PromptSyntax::Literal (diffusers) gives.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "../test_util.h"
#include "models/flux/flux_model.h"
#include "models/mmdit/mmdit_presets.h"
#include "models/mmdit/sd3_model.h"
#include "models/t5/t5_loader.h"
#include "text/prompt_parser.h"
#include "text/t5_prompt.h"

namespace nuance {
namespace {

using test::error_of;
using ::testing::HasSubstr;

std::vector<float> values(const Tensor& t) { return t.f32().contiguous().to_vector(); }

ClipTextConfig tiny_clip(int64_t hidden, int64_t projection) {
    ClipTextConfig c;
    c.hidden = hidden;
    c.intermediate = 2 * hidden;
    c.layers = 2;
    c.heads = ClipTextConfig::default_heads(hidden);
    c.act = ClipTextConfig::default_act(hidden);
    c.projection_dim = projection;
    return c;
}

std::unique_ptr<T5EncoderModel> tiny_t5(uint64_t seed) {
    T5Config c;
    c.d_model = 32;
    c.d_kv = 8;
    c.heads = 4;
    c.d_ff = 16;
    c.layers = 1;
    auto m = std::make_unique<T5EncoderModel>(c);
    init_random(*m, seed, 0.2f);
    return m;
}

// SD3 with the mmdit 'tiny' preset (context 32, pooled 8 + 16): only the text side is used here.
const SD3Model& sd3() {
    static const std::unique_ptr<SD3Model> m = [] {
        auto s = std::make_unique<SD3Model>();
        s->clip_l.model = std::make_unique<ClipTextModel>(tiny_clip(8, 8));
        s->clip_g.model = std::make_unique<ClipTextModel>(tiny_clip(16, 16));
        s->clip_g.pad_id = 0;
        init_random(*s->clip_l.model, 1, 0.2f);
        init_random(*s->clip_g.model, 2, 0.2f);
        s->t5 = tiny_t5(3);
        s->transformer = std::make_unique<SD3Transformer2DModel>(mmdit_preset("tiny"));
        return s;
    }();
    return *m;
}

const FluxModel& flux() {
    static const std::unique_ptr<FluxModel> m = [] {
        auto f = std::make_unique<FluxModel>();
        f->clip_l = std::make_unique<ClipTextModel>(tiny_clip(24, 0));
        init_random(*f->clip_l, 4, 0.2f);
        f->t5 = tiny_t5(5);
        f->max_sequence_length = 64;
        return f;
    }();
    return *m;
}

// ComfyUI's T5 weighting by hand: z = T5(ids); e = T5([</s>, <pad>...]); rows of weight != 1 -> (z - e) * w + e.
std::vector<float> t5_reference(const T5EncoderModel& t5, const std::string& prompt, int L) {
    const T5Tokenizer& tok = T5Tokenizer::builtin();
    const T5WeightedIds w = tokenize_t5_weighted(tok, prompt, L);
    std::vector<float> z = values(t5.forward(Tensor::from_ids(w.ids, {1, L})).last_hidden_state);
    std::vector<int64_t> empty((size_t)L, tok.pad_id());
    empty[0] = tok.eos_id();
    const std::vector<float> e = values(t5.forward(Tensor::from_ids(empty, {1, L})).last_hidden_state);
    const int64_t D = t5.config().d_model;
    for (int64_t j = 0; j < L; ++j)
        for (int64_t d = 0; d < D; ++d)
            if (w.weights[(size_t)j] != 1.0f) {
                float& v = z[(size_t)(j * D + d)];
                v = (v - e[(size_t)(j * D + d)]) * w.weights[(size_t)j] + e[(size_t)(j * D + d)];
            }
    return z;
}

void expect_same(const Conditioning& a, const Conditioning& b) {
    for (const char* name : {"context", "pooled"}) {
        ASSERT_EQ(a.at(name).shape(), b.at(name).shape()) << name;
        EXPECT_EQ(values(a.at(name)), values(b.at(name))) << name;
    }
}

TEST(SD3Prompts, WithoutSyntaxTheConditioningIsBitIdenticalToDiffusers) {
    for (const std::string& p : {std::string(""), std::string("a red fox in the snow, at dusk"),
                                 std::string("photo of a cat holding a sign that says hello world")}) {
        const Conditioning a = sd3().encode({.text = p});
        const Conditioning l = sd3().encode({.text = p, .syntax = PromptSyntax::Literal});
        EXPECT_EQ(a.at("context").shape(), (Shape{1, 77 + 256, 32}));
        expect_same(a, l);
    }
    // Literal keeps the syntax as text (diffusers has none): different tokens, different output.
    EXPECT_NE(values(sd3().encode({.text = "a (red:1.5) fox", .syntax = PromptSyntax::Literal}).at("pooled")),
              values(sd3().encode({.text = "a red fox"}).at("pooled")));
}

TEST(SD3Prompts, WeightsFollowA1111OnClipAndComfyUIOnT5) {
    const SD3Model& m = sd3();
    const std::string prompt = "a (red:1.5) [fox] in the ((snow))";
    const Conditioning c = m.encode({.text = prompt});
    const std::vector<float> got = values(c.at("context"));
    ASSERT_EQ(c.at("context").shape(), (Shape{1, 77 + 256, 32}));

    // CLIP window by hand: L hidden[-2] (8 wide) | G hidden[-2] (16) | zeros (8); token j's columns x w_j; x mean ratio.
    const PromptChunks pl = tokenize_weighted(ClipTokenizer::builtin(), prompt, 49407, 75);
    const PromptChunks pg = tokenize_weighted(ClipTokenizer::builtin(), prompt, 0, 75);
    ASSERT_EQ(pl.ids.size(), 1u);
    EXPECT_EQ(pl.ids[0], ClipTokenizer::builtin().encode_padded("a red fox in the snow", 49407));
    const ClipTextOutput ol = m.clip_l.model->forward(Tensor::from_ids(pl.ids[0], {1, 77}));
    const ClipTextOutput og = m.clip_g.model->forward(Tensor::from_ids(pg.ids[0], {1, 77}));
    const std::vector<float> hl = values(ol.hidden_states[1]), hg = values(og.hidden_states[1]);
    const std::vector<float>& w = pl.weights[0];
    EXPECT_FLOAT_EQ(w[2], 1.5f);                       // "red"
    EXPECT_FLOAT_EQ(w[3], (float)(1 / 1.1));           // "fox"
    EXPECT_FLOAT_EQ(w[6], (float)(1.1 * 1.1));         // "snow"
    double before = 0, after = 0;
    std::vector<float> want(77 * 24);
    for (int64_t l = 0; l < 77; ++l)
        for (int64_t d = 0; d < 24; ++d) {
            const float v = d < 8 ? hl[(size_t)(l * 8 + d)] : hg[(size_t)(l * 16 + d - 8)];
            before += v;
            want[(size_t)(l * 24 + d)] = v * w[(size_t)l];
            after += want[(size_t)(l * 24 + d)];
        }
    const float ratio = (float)(before / after);
    for (int64_t l = 0; l < 77; ++l)
        for (int64_t d = 0; d < 32; ++d) {
            const float v = d < 24 ? want[(size_t)(l * 24 + d)] * ratio : 0.0f;
            ASSERT_NEAR(got[(size_t)(l * 32 + d)], v, 1e-6f * (1 + std::fabs(v))) << l << "," << d;
        }
    // T5 part: exactly ComfyUI's formula on the same encoder.
    const std::vector<float> t5 = t5_reference(*m.t5, prompt, 256);
    for (size_t i = 0; i < t5.size(); ++i) ASSERT_EQ(got[77 * 32 + i], t5[i]) << i;
    // ... which changed the weighted tokens and nothing else.
    const std::vector<float> plain = values(m.encode({.text = "a red fox in the snow"}).at("context"));
    const T5WeightedIds tw = tokenize_t5_weighted(T5Tokenizer::builtin(), prompt, 256);
    for (int64_t j = 0; j < 256; ++j) {
        bool same = true;
        for (int64_t d = 0; d < 32; ++d) same = same && got[(size_t)((77 + j) * 32 + d)] == plain[(size_t)((77 + j) * 32 + d)];
        EXPECT_EQ(same, tw.weights[(size_t)j] == 1.0f) << j;
    }
    // Pooled: the unweighted first window, as A1111.
    EXPECT_EQ(values(c.at("pooled")), values(m.encode({.text = "a red fox in the snow"}).at("pooled")));
}

TEST(SD3Prompts, LongPromptsAndBreakMakeMoreWindowsAndBatchesMatch) {
    const SD3Model& m = sd3();
    std::string long_prompt;
    for (int i = 0; i < 90; ++i) long_prompt += "cat ";
    const Conditioning two = m.encode({.text = long_prompt});
    EXPECT_EQ(two.at("context").shape(), (Shape{1, 2 * 77 + 256, 32}));
    EXPECT_EQ(m.encode({.text = "a fox BREAK a cat"}).at("context").shape(), (Shape{1, 2 * 77 + 256, 32}));
    EXPECT_EQ(m.encode({.text = long_prompt, .syntax = PromptSyntax::Literal}).at("context").shape(),
              (Shape{1, 77 + 256, 32}));  // diffusers truncates

    Conditioning cond = two, uncond = m.encode({.text = "", .negative = true});
    const std::vector<float> u = values(uncond.at("context"));
    m.match_for_batch({&uncond, &cond}, {.text = long_prompt});
    EXPECT_EQ(values(cond.at("context")), values(two.at("context")));
    ASSERT_EQ(uncond.at("context").shape(), (Shape{1, 2 * 77 + 256, 32}));
    const std::vector<float> padded = values(uncond.at("context"));
    const std::vector<float> empty = values(m.encode_clip("", true, nullptr));  // [1, 77, 32]
    const size_t W = 77 * 32;
    for (size_t i = 0; i < W; ++i) ASSERT_EQ(padded[i], u[i]) << i;           // its own window
    for (size_t i = 0; i < W; ++i) ASSERT_EQ(padded[W + i], empty[i]) << i;   // an empty-prompt window
    for (size_t i = 0; i < 256 * 32; ++i) ASSERT_EQ(padded[2 * W + i], u[W + i]) << i;  // T5 part last
    const Conditioning batch = m.batch_conditioning({&uncond, &cond});
    EXPECT_EQ(batch.at("context").shape(), (Shape{2, 2 * 77 + 256, 32}));
}

TEST(SD3Prompts, BadSyntaxIsAnError) {
    EXPECT_THAT(error_of([] { sd3().encode({.text = "a (fox:1.2.3)"}); }), HasSubstr("invalid weight '1.2.3'"));
}

TEST(FluxPrompts, WeightsOnT5AndTheParsedTextForThePooledClip) {
    const FluxModel& m = flux();
    for (const std::string& p : {std::string(""), std::string("a lighthouse on a cliff, oil painting")})
        expect_same(m.encode({.text = p}), m.encode({.text = p, .syntax = PromptSyntax::Literal}));
    const std::string prompt = "a (lighthouse:1.4) on a [cliff], BREAK oil painting";
    const Conditioning c = m.encode({.text = prompt});
    ASSERT_EQ(c.at("context").shape(), (Shape{1, 64, 32}));
    EXPECT_EQ(values(c.at("context")), t5_reference(*m.t5, prompt, 64));
    // CLIP-L pooled: the first window of the parsed prompt, no per-token weights (BREAK ends it).
    const std::vector<int64_t> ids = ClipTokenizer::builtin().encode_padded("a lighthouse on a cliff,", 49407);
    EXPECT_EQ(values(c.at("pooled")), values(m.clip_l->forward(Tensor::from_ids(ids, {1, 77})).pooled));
}

}  // namespace
}  // namespace nuance
