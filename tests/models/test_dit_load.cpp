// DiT file layouts: the original facebookresearch .pt (safe unpickler) and its safetensors twin, diffusers
// folders; incomplete, truncated and foreign files. Fixtures: tools/make_dit_original.py (tests/data/dit).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "io/safetensors.h"
#include "io/weights.h"
#include "models/dit/dit_load.h"
#include "../test_util.h"

using namespace nuance;
using ::testing::HasSubstr;
using nuance::test::error_of;
namespace fs = std::filesystem;

namespace {

const std::string kData = std::string(NUANCE_TEST_DATA) + "/dit";
const std::string kGolden = std::string(NUANCE_TEST_DATA) + "/golden/dit";

DiTLoadOptions heads2() {
    DiTLoadOptions o;
    o.heads = 2;  // width 32 is no preset: the tiny model states its heads
    return o;
}

std::map<std::string, Tensor> io(const std::string& path) { return load_safetensors(path).tensors; }

Tensor run(const LoadedDiT& d, const std::map<std::string, Tensor>& io) {
    return d.model->forward(io.at("hidden_states"), io.at("timestep"), io.at("class_labels"));
}

struct TempDir {
    fs::path path;
    explicit TempDir(const std::string& tag) {
        path = fs::path(NUANCE_SCRATCH_DIR) / ("nuance_dit_" + tag + "_" + std::to_string(::getpid()));
        fs::remove_all(path);
        fs::create_directories(path);
    }
    ~TempDir() { fs::remove_all(path); }
    std::string str(const std::string& sub = "") const { return sub.empty() ? path.string() : (path / sub).string(); }
};

void write_text(const std::string& path, const std::string& text) { std::ofstream(path) << text; }

void save(const std::string& path, const std::map<std::string, Tensor>& t) {
    std::vector<std::pair<std::string, Tensor>> v(t.begin(), t.end());
    save_safetensors(path, v);
}

std::string golden_config_json() {
    return R"({"_class_name": "DiTTransformer2DModel", "num_attention_heads": 2, "attention_head_dim": 16,
               "in_channels": 4, "out_channels": 8, "num_layers": 2, "sample_size": 8, "patch_size": 2,
               "num_embeds_ada_norm": 10, "norm_type": "ada_norm_zero", "norm_eps": 1e-05})";
}

}  // namespace

TEST(DiTOriginal, PtFileMatchesTheOriginalForward) {
    const LoadedDiT d = load_dit(kData + "/dit_original.pt", heads2());
    EXPECT_EQ(d.layout, DiTLayout::Original);
    const DiTConfig& c = d.model->config();
    EXPECT_EQ(c.sample_size, 8);  // from the pos_embed buffer: 16 tokens * patch 2
    EXPECT_EQ(c.depth, 2);
    EXPECT_EQ(c.num_classes, 10);
    EXPECT_EQ(c.freq_shift, 0.0f);
    EXPECT_EQ(c.mlp_norm_eps, 1e-6f);
    const auto ref = io(kData + "/dit_original_io.safetensors");
    EXPECT_LT(max_abs_diff(run(d, ref), ref.at("out")), 5e-5f);
}

TEST(DiTOriginal, SafetensorsTwinGivesTheSameOutput) {
    const auto ref = io(kData + "/dit_original_io.safetensors");
    const Tensor a = run(load_dit(kData + "/dit_original.pt", heads2()), ref);
    const Tensor b = run(load_dit(kData + "/dit_original.safetensors", heads2()), ref);
    EXPECT_EQ(max_abs_diff(a, b), 0.0f);
}

TEST(DiTOriginal, KeyMapIsTheInverseOfDiffusersConverter) {
    int64_t s = -1;
    const auto m = dit_original_to_diffusers(io(kData + "/dit_original.safetensors"), "f", &s);
    EXPECT_EQ(s, 8);
    const auto g = io(kGolden + "/dit.safetensors");
    // Everything but block 1's own embedders (the original has one, block 0's) is the golden's tensor.
    for (const auto& [k, v] : g) {
        ASSERT_TRUE(m.count(k)) << k;
        if (k.rfind("transformer_blocks.1.norm1.emb.", 0) == 0) continue;
        EXPECT_EQ(max_abs_diff(m.at(k), v), 0.0f) << k;
    }
    EXPECT_EQ(m.size(), g.size());
}

TEST(DiTOriginal, IncompleteFileNamesTheMissingTensor) {
    TempDir dir("missing");
    for (const char* key : {"blocks.1.attn.qkv.bias", "t_embedder.mlp.2.weight", "final_layer.linear.bias",
                            "y_embedder.embedding_table.weight"}) {
        auto t = io(kData + "/dit_original.safetensors");
        t.erase(key);
        save(dir.str("m.safetensors"), t);
        EXPECT_THAT(error_of([&] { load_dit(dir.str("m.safetensors"), heads2()); }),
                    HasSubstr("DiT original checkpoint '" + dir.str("m.safetensors") + "' is missing tensor '" + key +
                              "'"));
    }
}

TEST(DiTOriginal, BadShapesAndStrayTensorsAreNamed) {
    TempDir dir("shapes");
    const std::string f = dir.str("m.safetensors");
    auto t = io(kData + "/dit_original.safetensors");
    t["blocks.0.attn.qkv.weight"] = Tensor::zeros({90, 32});
    save(f, t);
    EXPECT_THAT(error_of([&] { load_dit(f, heads2()); }),
                HasSubstr("'blocks.0.attn.qkv' must be [96, 32] + [96] for width 32, got [90, 32] + [96]"));
    t = io(kData + "/dit_original.safetensors");
    t["pos_embed"] = Tensor::zeros({1, 15, 32});
    save(f, t);
    EXPECT_THAT(error_of([&] { load_dit(f, heads2()); }), HasSubstr("'pos_embed' has 15 tokens, not a square grid"));
    t = io(kData + "/dit_original.safetensors");
    t["blocks.7.mlp.fc1.weight"] = Tensor::zeros({4});
    save(f, t);
    EXPECT_THAT(error_of([&] { load_dit(f, heads2()); }),
                HasSubstr("unexpected tensor 'blocks.7.mlp.fc1.weight' (2 blocks found: blocks.0 .. blocks.1)"));
    t = io(kData + "/dit_original.safetensors");
    t["blocks.1.mlp.fc2.weight"] = Tensor::zeros({32, 100});
    save(f, t);
    EXPECT_THAT(error_of([&] { load_dit(f, heads2()); }),
                HasSubstr("DiT checkpoint '" + f + "': tensor 'blocks.1.mlp.fc2.weight': expected [32, 128] for the "
                          "detected config (width 32, MLP 128, 2 blocks), got [32, 100]"));
    t = io(kData + "/dit_original.safetensors");
    t["y_embedder.embedding_table.weight"] = Tensor::zeros({11, 32});
    t["blocks.0.adaLN_modulation.1.weight"] = Tensor::zeros({190, 32});
    save(f, t);
    EXPECT_THAT(error_of([&] { load_dit(f, heads2()); }),
                HasSubstr("tensor 'blocks.0.adaLN_modulation.1.weight': expected [192, 32]"));
}

TEST(DiTOriginal, TruncatedPtNamesTheFile) {
    TempDir dir("trunc");
    const std::string f = dir.str("DiT-XL-2-256x256.pt");
    const auto size = fs::file_size(kData + "/dit_original.pt");
    for (const auto keep : {size / 2, size - 100, (decltype(size))30}) {
        fs::copy_file(kData + "/dit_original.pt", f, fs::copy_options::overwrite_existing);
        fs::resize_file(f, keep);
        const std::string e = error_of([&] { load_dit(f, heads2()); });
        EXPECT_THAT(e, HasSubstr(f)) << keep;
        EXPECT_THAT(e, HasSubstr("truncated")) << keep;
    }
}

TEST(DiTOriginal, ForeignFileListsWhatWasExpected) {
    TempDir dir("foreign");
    save(dir.str("unet.safetensors"), {{"conv_in.weight", Tensor::zeros({4, 4, 3, 3})}});
    EXPECT_THAT(error_of([&] { load_dit(dir.str("unet.safetensors")); }),
                HasSubstr("is not a DiT checkpoint: expected the original layout (x_embedder.proj.weight, "
                          "blocks.0.adaLN_modulation.1.weight, ...) or diffusers' DiTTransformer2DModel"));
    EXPECT_THAT(error_of([&] { load_dit(dir.str("unet.safetensors")); }), HasSubstr("its tensors: conv_in.weight"));
    EXPECT_THAT(error_of([&] { load_dit(dir.str("absent.pt")); }), HasSubstr("absent.pt"));
}

TEST(DiTDiffusers, TransformerFolderAndPipelineFolderLoad) {
    TempDir dir("folder");
    fs::create_directories(dir.path / "transformer");
    fs::copy_file(kGolden + "/dit.safetensors", dir.str("transformer/diffusion_pytorch_model.safetensors"));
    write_text(dir.str("transformer/config.json"), golden_config_json());
    const auto ref = io(kGolden + "/io.safetensors");
    for (const std::string p : {dir.str(), dir.str("transformer")}) {
        const LoadedDiT d = load_dit(p);  // heads and sample_size from config.json
        EXPECT_EQ(d.layout, DiTLayout::Diffusers);
        EXPECT_EQ(d.model->config().heads, 2);
        EXPECT_EQ(d.model->config().sample_size, 8);
        EXPECT_LT(max_abs_diff(run(d, ref), ref.at("out")), 4.31e-5f) << p;
    }
}

TEST(DiTDiffusers, FolderErrors) {
    TempDir dir("folder_err");
    fs::create_directories(dir.path / "transformer");
    EXPECT_THAT(error_of([&] { load_dit(dir.str()); }),
                HasSubstr("DiT folder '" + dir.str() + "': no diffusion_pytorch_model.safetensors (or .bin) in " +
                          dir.str("transformer")));
    fs::copy_file(kGolden + "/dit.safetensors", dir.str("transformer/diffusion_pytorch_model.safetensors"));
    write_text(dir.str("transformer/config.json"), R"({"_class_name": "UNet2DConditionModel"})");
    EXPECT_THAT(error_of([&] { load_dit(dir.str()); }),
                HasSubstr("config.json is a UNet2DConditionModel, not a DiTTransformer2DModel"));
    write_text(dir.str("transformer/config.json"), R"({"num_attention_heads": 2, "attention_head_dim": 16, )");
    EXPECT_THAT(error_of([&] { load_dit(dir.str()); }), HasSubstr("config.json"));
    write_text(dir.str("transformer/config.json"),
               R"({"num_attention_heads": 2, "attention_head_dim": 16, "num_embeds_ada_norm": 1000})");
    EXPECT_THAT(error_of([&] { load_dit(dir.str()); }),
                HasSubstr("DiT config.json: 'num_embeds_ada_norm' is 1000 but the weights' shapes give 10"));
    write_text(dir.str("transformer/config.json"),
               R"({"_class_name": "Transformer2DModel", "num_attention_heads": 2, "attention_head_dim": 16,
                   "norm_type": "ada_norm_single"})");
    EXPECT_THAT(error_of([&] { load_dit(dir.str()); }),
                HasSubstr("DiT config.json: norm_type \"ada_norm_single\" is not supported (only \"ada_norm_zero\")"));
    // No config.json and a width that is no preset: the heads are unknown.
    fs::remove(dir.str("transformer/config.json"));
    EXPECT_THAT(error_of([&] { load_dit(dir.str()); }),
                HasSubstr("width 32 is no DiT preset and 64 does not divide it"));
}

TEST(DiTDiffusers, IncompleteStateDictNamesTheMissingTensor) {
    TempDir dir("dmissing");
    auto t = io(kGolden + "/dit.safetensors");
    t.erase("transformer_blocks.1.attn1.to_v.bias");
    save(dir.str("d.safetensors"), t);
    EXPECT_THAT(error_of([&] { load_dit(dir.str("d.safetensors"), heads2()); }),
                HasSubstr("transformer_blocks.1.attn1.to_v.bias"));
    t = io(kGolden + "/dit.safetensors");
    t["transformer_blocks.0.norm1.emb.class_embedder.embedding_table.weight"] = Tensor::zeros({11, 16});
    save(dir.str("d.safetensors"), t);
    EXPECT_THAT(error_of([&] { load_dit(dir.str("d.safetensors"), heads2()); }),
                HasSubstr("DiT tensor 'transformer_blocks.0.norm1.emb.class_embedder.embedding_table.weight': "
                          "expected [classes + 1, 32], got [11, 16]"));
}

TEST(DiTDiffusers, PersistentPosEmbedBufferGivesTheSampleSize) {
    TempDir dir("posbuf");
    auto t = io(kGolden + "/dit.safetensors");
    t["pos_embed.pos_embed"] = dit_pos_embed(32, 4, 4).unsqueeze(0);
    save(dir.str("d.safetensors"), t);
    const LoadedDiT d = load_dit(dir.str("d.safetensors"), heads2());
    EXPECT_EQ(d.model->config().sample_size, 8);
    const auto ref = io(kGolden + "/io.safetensors");
    EXPECT_LT(max_abs_diff(run(d, ref), ref.at("out")), 4.31e-5f);
    const nlohmann::json cfg{{"sample_size", 16}};
    EXPECT_THAT(error_of([&] { load_dit_tensors(t, "d", heads2(), &cfg); }),
                HasSubstr("DiT config.json: 'sample_size' 16 but the file's position embedding is for 8"));
    t["pos_embed.pos_embed"] = Tensor::zeros({1, 15, 32});
    EXPECT_THAT(error_of([&] { load_dit_tensors(t, "d", heads2()); }),
                HasSubstr("DiT checkpoint 'd': 'pos_embed.pos_embed' must be [1, T, D] with T a square, got [1, 15, 32]"));
}
