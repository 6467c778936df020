// The A1111 prompt syntax on SD3 and Flux conditioning (issue 13 leftovers), against references built by hand from
// the same tiny encoders: CLIP-L + CLIP-G windows with A1111's emphasis (each token's columns scaled by its weight,
// the window's mean restored; SD3ClipLG in A1111's sd3_cond.py), T5 tokens moved away from the empty prompt's
// encoding as ComfyUI does ((z - e) * w + e), Flux's CLIP-L pooled output from the parsed text. A prompt without
// syntax gives exactly what PromptSyntax::Literal (diffusers) gives.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>

#include "../test_util.h"
#include "io/safetensors.h"
#include "text/embedding_library.h"
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
                // torch's separate roundings (no fused multiply-add, whatever the compiler would contract)
                const volatile float scaled = (v - e[(size_t)(j * D + d)]) * w.weights[(size_t)j];
                v = scaled + e[(size_t)(j * D + d)];
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

// A folder of textual-inversion files: "sdxlemb" (clip_l [2, 8], clip_g [2, 16]: SD3's tiny widths; clip_l [2, 24]
// would be Flux's), "fluxemb" (SDXL layout at Flux's widths), "sd1emb" (emb_params [2, 24]).
std::shared_ptr<EmbeddingLibrary> embedding_dir() {
    static const std::shared_ptr<EmbeddingLibrary> lib = [] {
        const std::string dir = (std::filesystem::path(NUANCE_SCRATCH_DIR) / "sd3_flux_embeddings").string();
        std::filesystem::remove_all(dir);
        std::filesystem::create_directories(dir);
        auto ramp = [](int64_t n, int64_t d, float base) {
            std::vector<float> v((size_t)(n * d));
            for (size_t i = 0; i < v.size(); ++i) v[i] = base + 0.01f * (float)i;
            return Tensor::from_vector(v, {n, d});
        };
        save_safetensors(dir + "/sdxlemb.safetensors", {{"clip_l", ramp(2, 8, -0.3f)}, {"clip_g", ramp(2, 16, 0.2f)}});
        save_safetensors(dir + "/fluxemb.safetensors", {{"clip_l", ramp(2, 24, 0.1f)}, {"clip_g", ramp(2, 32, 0.0f)}});
        save_safetensors(dir + "/sd1emb.safetensors", {{"emb_params", ramp(2, 24, -0.2f)}});
        return EmbeddingLibrary::scan(dir);
    }();
    return lib;
}

// A window's token embeddings by hand: the ids' rows with the embedding's vectors at [offset, offset + n).
Tensor embeds_by_hand(const ClipTextModel& m, const std::vector<int64_t>& ids, int64_t offset, const Tensor& v) {
    Tensor e = m.embed_tokens(Tensor::from_ids(ids, {1, (int64_t)ids.size()})).clone();
    const int64_t D = e.size(2);
    const std::vector<float> vv = values(v);
    for (size_t i = 0; i < vv.size(); ++i) e.data<float>()[offset * D + (int64_t)i] = vv[i];
    return e;
}

TEST(SD3Prompts, TextualInversionOnClipLAndClipG) {
    const SD3Model& m = sd3();
    const auto lib = embedding_dir();
    const std::string prompt = "a photo of sdxlemb";
    const Conditioning c = m.encode({.text = prompt, .embeddings = lib});
    // By hand: BOS a photo of [v0 v1] EOS pad...; each encoder gets its own vectors; no weights, so no emphasis.
    std::vector<int64_t> ids_l = ClipTokenizer::builtin().encode_padded("a photo of", 49407);
    std::vector<int64_t> ids_g = ClipTokenizer::builtin().encode_padded("a photo of", 0);
    ids_l.insert(ids_l.begin() + 4, {0, 0});
    ids_l.resize(77);
    ids_l[6] = 49407;  // EOS after the two placeholders, EOS padding
    ids_g.insert(ids_g.begin() + 4, {0, 0});
    ids_g.resize(77);
    ids_g[6] = 49407;  // G pads with 0 after its EOS
    const auto ti = lib->get("sdxlemb");
    const ClipTextOutput ol = m.clip_l.model->forward(Tensor::from_ids(ids_l, {1, 77}), -1,
                                                       embeds_by_hand(*m.clip_l.model, ids_l, 4, ti->vectors.at("clip_l")));
    const ClipTextOutput og = m.clip_g.model->forward(Tensor::from_ids(ids_g, {1, 77}), -1,
                                                       embeds_by_hand(*m.clip_g.model, ids_g, 4, ti->vectors.at("clip_g")));
    const std::vector<float> hl = values(ol.hidden_states[1]), hg = values(og.hidden_states[1]);
    const std::vector<float> got = values(c.at("context"));
    for (int64_t l = 0; l < 77; ++l)
        for (int64_t d = 0; d < 24; ++d)
            ASSERT_EQ(got[(size_t)(l * 32 + d)], d < 8 ? hl[(size_t)(l * 8 + d)] : hg[(size_t)(l * 16 + d - 8)])
                << l << "," << d;
    std::vector<float> pooled = values(ol.text_embeds), pg = values(og.text_embeds);
    pooled.insert(pooled.end(), pg.begin(), pg.end());
    EXPECT_EQ(values(c.at("pooled")), pooled);
    // Without the library (or with the literal syntax) the name is just text.
    EXPECT_NE(values(m.encode({.text = prompt}).at("pooled")), pooled);
    EXPECT_EQ(values(m.encode({.text = prompt, .syntax = PromptSyntax::Literal, .embeddings = lib}).at("pooled")),
              values(m.encode({.text = prompt, .syntax = PromptSyntax::Literal}).at("pooled")));
    // SD3 needs both encoders' vectors: an SD1.x embedding is refused by name; SDXL vectors of other widths too.
    EXPECT_THAT(error_of([&] { m.encode({.text = "sd1emb", .embeddings = lib}); }),
                HasSubstr("needs an SDXL embedding with both"));
    EXPECT_THAT(error_of([&] { m.encode({.text = "fluxemb", .embeddings = lib}); }),
                HasSubstr("has vectors of width 24 for clip_l but SD3's text encoder clip_l is 8 wide"));
}

TEST(FluxPrompts, TextualInversionOnClipL) {
    const FluxModel& m = flux();
    const auto lib = embedding_dir();
    std::vector<int64_t> ids = ClipTokenizer::builtin().encode_padded("a photo of", 49407);
    ids.insert(ids.begin() + 4, {0, 0});
    ids.resize(77);
    ids[6] = 49407;
    for (const char* name : {"fluxemb", "sd1emb"}) {  // SDXL files give their clip_l vectors, SD1.x files their one set
        const auto ti = lib->get(name);
        const Tensor& v = ti->vectors.count("clip_l") ? ti->vectors.at("clip_l") : ti->vectors.at("");
        const Tensor want = m.clip_l->forward(Tensor::from_ids(ids, {1, 77}), -1, embeds_by_hand(*m.clip_l, ids, 4, v)).pooled;
        const Conditioning c = m.encode({.text = std::string("a photo of ") + name, .embeddings = lib});
        EXPECT_EQ(values(c.at("pooled")), values(want)) << name;
        // T5 takes the text as it is (T5 has no embeddings).
        EXPECT_EQ(values(c.at("context")), values(m.encode({.text = std::string("a photo of ") + name}).at("context")));
    }
    EXPECT_THAT(error_of([&] { m.encode({.text = "sdxlemb", .embeddings = lib}); }),
                HasSubstr("has vectors of width 8 for clip_l but Flux's text encoder clip_l is 24 wide"));
}

}  // namespace
}  // namespace nuance
