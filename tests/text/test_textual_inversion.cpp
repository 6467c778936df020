// Textual-inversion embeddings (text/embedding_library.h): every file layout (A1111 .pt, the original
// implementation's ParameterDict .pt, emb_params .safetensors, diffusers .bin, SDXL clip_l/clip_g) against the
// reference of tests/data/textual_inversion/make_reference.py (A1111's tokenize_line + EmbeddingsWithFixes on
// transformers' CLIPTextModel with the golden tiny encoders), and the errors: wrong width, SDXL vs one encoder,
// a hostile pickle, more vectors than a 77-token window holds, a file that is no embedding.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <unistd.h>

#include "eval/golden_case.h"
#include "io/safetensors.h"
#include "models/sd/sd_conditioning.h"
#include "ops/ops.h"
#include "text/embedding_library.h"
#include "text/prompt_parser.h"
#include "../test_util.h"

namespace nuance {
namespace {

namespace fs = std::filesystem;
using test::error_of;

const std::string kData = std::string(NUANCE_TEST_DATA) + "/textual_inversion/";
const std::string kGolden = std::string(NUANCE_TEST_DATA) + "/golden/";

const std::map<std::string, Tensor>& reference() {
    static const auto* r = new std::map<std::string, Tensor>(load_safetensors(kData + "reference.safetensors").tensors);
    return *r;
}

// A folder holding the named files of tests/data/textual_inversion (so each test sees only what it means to).
struct Folder {
    fs::path path;
    explicit Folder(const std::vector<std::string>& files) {
        path = fs::path(NUANCE_SCRATCH_DIR) / ("nuance_ti_" + std::to_string(::getpid()) + "_" +
                                            ::testing::UnitTest::GetInstance()->current_test_info()->name());
        fs::create_directories(path);
        for (const auto& f : files) fs::copy_file(kData + f, path / f, fs::copy_options::overwrite_existing);
    }
    ~Folder() {
        std::error_code ec;
        fs::remove_all(path, ec);
    }
};

ModelLoadOptions configs(bool xl) {
    ModelLoadOptions o;
    const GoldenCase clip = GoldenCase::load(kGolden + "clip_text");
    o.configs["text_encoder"] = clip.model_config("clip_l");
    if (xl) o.configs["text_encoder_2"] = clip.model_config("clip_g");
    return o;
}

const StableDiffusionModel& sd15() {
    static auto* m = new StableDiffusionModel(
        load_stable_diffusion(kGolden + "original_format/sd15_original.safetensors", configs(false)));
    return *m;
}
const StableDiffusionModel& sdxl() {
    static auto* m = new StableDiffusionModel(
        load_stable_diffusion(kGolden + "original_format/sdxl_original.safetensors", configs(true)));
    return *m;
}

TEST(TextualInversion, ReadsEveryFileLayout) {
    const TextualInversion a = load_textual_inversion(kData + "tiny-style.pt");  // A1111 .pt
    EXPECT_EQ(a.name, "tiny-style");
    EXPECT_EQ(a.count, 3);
    EXPECT_EQ(a.vectors.at("").shape(), Shape({3, 32}));
    EXPECT_EQ(a.step, 1500);
    EXPECT_EQ(a.checkpoint_name, "tiny-sd15");
    EXPECT_EQ(load_textual_inversion(kData + "origstyle.pt").vectors.at("").shape(), Shape({2, 32}));  // ParameterDict
    EXPECT_EQ(load_textual_inversion(kData + "charb.safetensors").vectors.at("").shape(), Shape({2, 32}));
    const TextualInversion d = load_textual_inversion(kData + "cattoy.bin");  // diffusers {"<cat-toy>": [D]}
    EXPECT_EQ(d.count, 1);
    EXPECT_EQ(d.vectors.at("").shape(), Shape({1, 32}));
    const TextualInversion x = load_textual_inversion(kData + "xl-style.safetensors");
    EXPECT_EQ(x.vectors.at("clip_l").shape(), Shape({2, 32}));
    EXPECT_EQ(x.vectors.at("clip_g").shape(), Shape({2, 48}));
}

TEST(TextualInversion, ChunkerPlacesTheVectorsAsA1111) {
    // Hand-checked: "a tiny-style cat" with a 3-vector embedding named by 3 tokens ("tiny", "-", "style").
    const ClipTokenizer& tok = ClipTokenizer::builtin();
    std::vector<PromptEmbeddingName> names{{tok.encode("tiny-style"), 3, "tiny-style"}};
    ASSERT_EQ(names[0].ids.size(), 3u);
    const PromptChunks c = tokenize_weighted(tok, "a (tiny-style:1.5) cat", 49407, 75, &names);
    ASSERT_EQ(c.ids.size(), 1u);
    const std::vector<int64_t> want_head{49406, tok.encode("a")[0], 0, 0, 0, tok.encode("cat")[0], 49407};
    EXPECT_EQ(std::vector<int64_t>(c.ids[0].begin(), c.ids[0].begin() + 7), want_head);
    ASSERT_EQ(c.fixes[0].size(), 1u);
    EXPECT_EQ(c.fixes[0][0].offset, 2);
    EXPECT_EQ(c.fixes[0][0].vectors, 3);
    EXPECT_FLOAT_EQ(c.weights[0][2], 1.5f);
    EXPECT_FLOAT_EQ(c.weights[0][4], 1.5f);
    EXPECT_FLOAT_EQ(c.weights[0][5], 1.0f);
    // A longer name wins over its prefix; comma back-tracking carries the fix to the next chunk.
    std::vector<PromptEmbeddingName> two{{tok.encode("tiny"), 1, "tiny"}, {tok.encode("tiny-style"), 2, "tiny-style"}};
    std::string p;
    for (int i = 0; i < 70; ++i) p += "house ";
    p += ", tiny-style tiny dog cat";  // 70 + comma + 2 + 1 + 2 = 76 tokens: the words after the comma move on
    const PromptChunks d = tokenize_weighted(tok, p, 49407, 75, &two);
    ASSERT_EQ(d.ids.size(), 2u);
    EXPECT_TRUE(d.fixes[0].empty());
    ASSERT_EQ(d.fixes[1].size(), 2u);
    EXPECT_EQ(d.fixes[1][0].name, "tiny-style");
    EXPECT_EQ(d.fixes[1][0].offset, 1);
    EXPECT_EQ(d.fixes[1][1].name, "tiny");
    EXPECT_EQ(d.fixes[1][1].offset, 3);
    EXPECT_EQ(d.ids[1][4], tok.encode("dog")[0]);
    // Too many vectors for one window.
    std::vector<PromptEmbeddingName> big{{tok.encode("huge"), 76, "huge"}};
    EXPECT_NE(error_of([&] { tokenize_weighted(tok, "huge", 49407, 75, &big); }).find("at most 75 fit"),
              std::string::npos);
}

TEST(TextualInversion, Sd15ConditioningMatchesReference) {
    Folder dir({"tiny-style.pt", "origstyle.pt", "charb.safetensors", "cattoy.bin", "wide.safetensors",
                "toolong.safetensors", "evil.pt"});
    const auto lib = EmbeddingLibrary::scan(dir.path.string());
    EXPECT_EQ(lib->names().size(), 7u);
    ConditioningOptions o;
    o.embeddings = lib.get();
    const std::map<std::string, std::string> prompts = {
        {"sd15_plain", "a photo of tiny-style in a garden"},
        {"sd15_weighted", "charb and (tiny-style:1.3), cattoy, origstyle"},
        {"sd15_boundary", [] {
             std::string s;
             for (int i = 0; i < 73; ++i) s += (i ? " " : "") + std::string("house");
             return s + " tiny-style";
         }()},
    };
    for (const auto& [name, prompt] : prompts) {
        const Tensor ref = reference().at(name + ".context");
        const Tensor got = encode_prompt(sd15(), prompt, o).context;
        ASSERT_EQ(got.shape(), ref.shape()) << name;
        EXPECT_LT(max_abs_diff(got, ref), 1e-4f) << name;
        // The same prompt without the embeddings is something else (the vectors were really used).
        EXPECT_GT(max_abs_diff(encode_prompt(sd15(), prompt, {}).context.slice(1, 0, 77), ref.slice(1, 0, 77)), 1e-2f)
            << name;
        // The ids the chunker made are the reference's.
        std::vector<PromptEmbeddingName> names;
        for (const auto& ti : lib->mentioned(prompt))
            names.push_back({ClipTokenizer::builtin().encode(ti->name), ti->count, ti->name});
        const PromptChunks pc = tokenize_weighted(ClipTokenizer::builtin(), prompt, 49407, 75, &names);
        std::vector<int64_t> flat;
        for (const auto& c : pc.ids) flat.insert(flat.end(), c.begin(), c.end());
        EXPECT_EQ(flat, reference().at(name + ".ids").to_ids()) << name;
    }
    // The negative side of a request takes them the same way (the model's encode(), as generate() calls it).
    ConditioningRequest r;
    r.text = "a photo of tiny-style in a garden";
    r.negative = true;
    r.embeddings = lib;
    EXPECT_LT(max_abs_diff(sd15().encode(r).at("context"), reference().at("sd15_plain.context")), 1e-4f);
}

TEST(TextualInversion, SdxlUsesClipLAndClipG) {
    Folder dir({"xl-style.safetensors"});
    const auto lib = EmbeddingLibrary::scan(dir.path.string());
    ConditioningOptions o;
    o.embeddings = lib.get();
    o.zero_empty = true;
    const SDConditioning c = encode_prompt(sdxl(), "xl-style, a cat", o);
    ASSERT_EQ(c.context.shape(), reference().at("sdxl.context").shape());
    EXPECT_LT(max_abs_diff(c.context, reference().at("sdxl.context")), 1e-4f);
    EXPECT_LT(max_abs_diff(c.pooled, reference().at("sdxl.pooled")), 1e-4f);
}

TEST(TextualInversion, ErrorsNameTheFileAndTheProblem) {
    Folder dir({"wide.safetensors", "xl-style.safetensors", "tiny-style.pt", "toolong.safetensors", "evil.pt"});
    const auto lib = EmbeddingLibrary::scan(dir.path.string());
    ConditioningOptions o;
    o.embeddings = lib.get();
    // A 48-wide embedding on SD1.5's 32-wide encoder.
    std::string e = error_of([&] { encode_prompt(sd15(), "a wide house", o); });
    EXPECT_NE(e.find("'wide'"), std::string::npos) << e;
    EXPECT_NE(e.find("width 48"), std::string::npos) << e;
    EXPECT_NE(e.find("is 32 wide"), std::string::npos) << e;
    // SDXL embedding on a one-encoder model, and a one-encoder embedding on SDXL.
    e = error_of([&] { encode_prompt(sd15(), "xl-style", o); });
    EXPECT_NE(e.find("SDXL"), std::string::npos) << e;
    e = error_of([&] { encode_prompt(sdxl(), "tiny-style", o); });
    EXPECT_NE(e.find("two text encoders"), std::string::npos) << e;
    // 76 vectors.
    e = error_of([&] { encode_prompt(sd15(), "toolong", o); });
    EXPECT_NE(e.find("76 vectors"), std::string::npos) << e;
    EXPECT_NE(e.find("77-token"), std::string::npos) << e;
    // A pickle that would call os.system: refused by the safe unpickler, nothing runs.
    e = error_of([&] { load_textual_inversion(kData + "evil.pt"); });
    EXPECT_NE(e.find("system"), std::string::npos) << e;
    EXPECT_NE(e.find("evil.pt"), std::string::npos) << e;
    e = error_of([&] { encode_prompt(sd15(), "evil", o); });
    EXPECT_NE(e.find("system"), std::string::npos) << e;
    // Not an embedding, a missing folder, a missing name.
    e = error_of([&] { load_textual_inversion(kGolden + "clip_text/clip_l.safetensors"); });
    EXPECT_NE(e.find("no textual-inversion file"), std::string::npos) << e;
    e = error_of([&] { EmbeddingLibrary::scan("/nonexistent/embeddings"); });
    EXPECT_NE(e.find("is not a folder"), std::string::npos) << e;
    e = error_of([&] { lib->get("nothing"); });
    EXPECT_NE(e.find("no embedding 'nothing'"), std::string::npos) << e;
    // A truncated file.
    const std::string cut = (dir.path / "cut.pt").string();
    {
        std::ifstream in(kData + "tiny-style.pt", std::ios::binary);
        std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
        std::ofstream(cut, std::ios::binary) << bytes.substr(0, bytes.size() / 2);
    }
    EXPECT_NE(error_of([&] { load_textual_inversion(cut); }), "(no error)");
}

}  // namespace
}  // namespace nuance
