// Weights quantized in memory as a model loads (ModelLoadOptions::weight_type, `--type`): the same blocks as the file
// `nuance quantize --layout full` writes, the recipe rules on the model's own rows and names, every family, errors.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <sstream>

#include "../test_util.h"
#include "backends/cpu/ggml_quants.h"
#include "core/quantized_weight.h"
#include "io/gguf_quantize.h"
#include "io/weights.h"
#include "models/model_family.h"
#include "models/quantize_weights.h"
#include "models/random_families.h"
#include "models/random_model.h"
#include "nn/module.h"
#include "pipelines/generate.h"

using namespace nuance;
using ::testing::HasSubstr;
using test::error_of;

namespace {

std::string temp_path(const std::string& name) {
    return (std::filesystem::path(NUANCE_SCRATCH_DIR) / ("nuance_qw_" + name)).string();
}

// "module/param" -> the param's tensor, for the modules that hold product weights (and the VAE).
std::map<std::string, Tensor> params_of(DiffusionModel& m) {
    std::map<std::string, Tensor> out;
    for (auto& [mod_name, mod] : m.modules())
        if (mod)
            for_each_param(*mod, [&](const std::string& n, Param& p) {
                if (p.value.defined()) out[mod_name + "/" + n] = p.value;
            });
    return out;
}

std::vector<uint8_t> blocks_of(const QuantizedWeightView& v) {
    std::vector<uint8_t> b;
    for (int64_t r = 0; r < v.rows; ++r) b.insert(b.end(), v.data + r * v.row_bytes, v.data + (r + 1) * v.row_bytes);
    return b;
}

std::vector<uint8_t> image_of(const DiffusionModel& m) {
    GenerateParams p;
    p.prompt = "a cat";
    p.width = p.height = 64;
    p.steps = 3;
    p.seed = 11;
    p.sampler = "euler";
    const auto out = generate(m, p);
    return out.size() == 1 ? out[0].image.pixels : std::vector<uint8_t>();
}

std::string tiny_sd(const std::string& family, DType dtype, const std::string& name) {
    const std::string path = temp_path(name);
    RandomModelOptions ro;
    ro.family = family;
    ro.tiny = true;
    ro.dtype = dtype;
    ro.seed = 5;
    write_random_checkpoint(path, ro);
    return path;
}

}  // namespace

// An SD1.5 checkpoint (f16 and f32) loaded with --type q8_0 / q4_0 holds exactly the blocks of the GGUF file that
// `nuance quantize --layout full` writes from it (same tensors quantized, same types, byte for byte), the VAE and the
// embeddings as they were, and so generates the very image that file does.
TEST(QuantizeWeights, LoadsTheBlocksTheQuantizedFileHolds) {
    for (const DType dt : {DType::F16, DType::F32}) {
        const std::string src = tiny_sd("sd15", dt, std::string("sd15_") + dtype_name(dt) + ".safetensors");
        for (const char* type : {"q8_0", "q4_0"}) {
            SCOPED_TRACE(str(dtype_name(dt), " ", type));
            const std::string gguf = temp_path(str("sd15_", type, ".gguf"));
            quantize_to_gguf(load_weights(src), gguf, *parse_quantize_recipe(type), GgufLayout::Full);
            ModelLoadOptions lo;
            lo.precision = Precision::FP32;
            const std::unique_ptr<DiffusionModel> from_file = load_model(gguf, lo);
            lo.weight_type = type;
            const std::unique_ptr<DiffusionModel> in_memory = load_model(src, lo);
            const auto a = params_of(*in_memory), b = params_of(*from_file);
            ASSERT_EQ(a.size(), b.size());
            int quantized = 0, te = 0;
            for (const auto& [name, t] : a) {
                ASSERT_TRUE(b.count(name)) << name;
                const auto va = quantized_weight_view(t), vb = quantized_weight_view(b.at(name));
                ASSERT_EQ(va.has_value(), vb.has_value()) << name;
                if (name.rfind("vae/", 0) == 0 || name.find("embedding") != std::string::npos) EXPECT_FALSE(va) << name;
                if (!va) continue;
                ++quantized;
                te += name.rfind("text_encoder/", 0) == 0;
                EXPECT_EQ(va->ggml_type, vb->ggml_type) << name;
                EXPECT_EQ(t.shape(), b.at(name).shape()) << name;
                EXPECT_TRUE(blocks_of(*va) == blocks_of(*vb)) << name;
            }
            EXPECT_GT(quantized, 40);
            EXPECT_GT(te, 8);
            // The file also stores the layers it does not quantize as F16: from an f16 checkpoint the same image,
            // from an f32 one nearly.
            const std::vector<uint8_t> ia = image_of(*in_memory), ib = image_of(*from_file);
            ASSERT_EQ(ia.size(), ib.size());
            if (dt == DType::F16) EXPECT_EQ(ia, ib);
            double diff = 0;
            for (size_t i = 0; i < ia.size(); ++i) diff += std::abs((int)ia[i] - (int)ib[i]);
            EXPECT_LT(diff / (double)ia.size(), 0.5);
        }
    }
}

// The rules on the model's own rows: a K-quant whose rows (in features, C * kh * kw) are not whole 256-value
// super-blocks falls back as llama-quantize does; the recipes' value-projection / feed-forward rules; kept layers
// per family (their diffusers names); text encoders' embeddings; 1-D and non-weight tensors.
TEST(QuantizeWeights, RecipeRulesOnTheModelsOwnRows) {
    const QuantizeRecipe q4km = *parse_quantize_recipe("q4_k_m"), q8 = *parse_quantize_recipe("q8_0");
    const QuantizeRecipe q4ks = *parse_quantize_recipe("q4_k_s");
    const auto D = GgufComponent::Denoiser, T = GgufComponent::TextEncoder;
    auto type = [](const std::string& arch, const std::string& name, const Shape& s, GgufComponent c,
                   const QuantizeRecipe& r) {
        int seen = 0;
        return std::string(ggml_type_info(resident_tensor_type(arch, name, s, c, r, seen)).name);
    };
    const std::string v = "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_v.weight";
    EXPECT_EQ(type("sd1", v, {640, 1280}, D, q4km), "Q6_K");         // attn_v -> Q6_K
    EXPECT_EQ(type("sd1", v, {320, 320}, D, q4km), "Q8_0");          // 320 is not whole super-blocks: Q6_K -> Q8_0
    EXPECT_EQ(type("sd1", "down_blocks.0.resnets.0.conv1.weight", {320, 320, 3, 3}, D, q4km), "Q5_0");  // 2880 % 256
    EXPECT_EQ(type("sd1", "mid_block.resnets.0.conv1.weight", {1280, 1280, 3, 3}, D, q4km), "Q4_K");  // 11520
    EXPECT_EQ(type("sd1", "mid_block.resnets.0.conv1.weight", {1280, 1280, 3, 3}, D, q8), "Q8_0");
    EXPECT_EQ(type("sd1", "up_blocks.0.attentions.0.transformer_blocks.0.ff.net.2.weight", {1280, 5120}, D, q4km),
              "Q6_K");
    EXPECT_EQ(type("sd1", "up_blocks.0.attentions.0.proj_in.weight", {1280, 1280}, D, q4km), "Q4_K");
    for (const char* kept : {"conv_in.weight", "conv_out.weight", "time_embedding.linear_1.weight"})
        EXPECT_EQ(type("sd1", kept, {1280, 320}, D, q8), "F32") << kept;
    EXPECT_EQ(type("sdxl", "add_embedding.linear_1.weight", {1280, 2816}, D, q8), "F32");
    for (const char* kept : {"x_embedder.weight", "time_text_embed.timestep_embedder.linear_1.weight",
                             "norm_out.linear.weight", "proj_out.weight"})
        EXPECT_EQ(type("flux", kept, {3072, 256}, D, q8), "F32") << kept;
    EXPECT_EQ(type("flux", "transformer_blocks.0.attn.to_q.weight", {3072, 3072}, D, q8), "Q8_0");
    EXPECT_EQ(type("flux", "context_embedder.weight", {3072, 4096}, D, q8), "Q8_0");  // txt_in: Comfy quantizes it
    for (const char* kept : {"pos_embed.proj.weight", "context_embedder.weight", "proj_out.weight"})
        EXPECT_EQ(type("sd3", kept, {1536, 4096}, D, q8), "F32") << kept;
    EXPECT_EQ(type("dit", "transformer_blocks.3.norm1.emb.timestep_embedder.linear_1.weight", {1152, 256}, D, q8), "F32");
    EXPECT_EQ(type("dit", "transformer_blocks.3.attn1.to_k.weight", {1152, 1152}, D, q8), "Q8_0");
    EXPECT_EQ(type("sd1", "text_model.embeddings.token_embedding.weight", {49408, 768}, T, q8), "F32");
    EXPECT_EQ(type("sd1", "text_model.encoder.layers.0.self_attn.v_proj.weight", {768, 768}, T, q4km), "Q6_K");
    EXPECT_EQ(type("sd1", "down_blocks.0.resnets.0.norm1.weight", {320}, D, q8), "F32");
    EXPECT_EQ(type("sd1", "down_blocks.0.resnets.0.conv1.bias", {320, 32}, D, q8), "F32");
    EXPECT_EQ(type("sd1", "some.weight", {320, 33}, D, q8), "F32");  // rows of 33: no whole block
    // q4_k_s: the first four value projections (in the order counted) Q5_K, the rest the base type.
    int seen = 0;
    std::vector<std::string> got;
    for (int i = 0; i < 6; ++i)
        got.push_back(ggml_type_info(resident_tensor_type("sd1", v, {1280, 1280}, D, q4ks, seen)).name);
    EXPECT_EQ(got, (std::vector<std::string>{"Q5_K", "Q5_K", "Q5_K", "Q5_K", "Q4_K", "Q4_K"}));
}

// A mixed recipe on a whole model: the summary counts every product weight once (quantized, kept, or blocks
// already), quantizing again changes nothing, and generation runs on the blocks.
TEST(QuantizeWeights, MixedRecipeAndBlocksThatAreThereAlready) {
    const std::string src = tiny_sd("sd15", DType::F32, "sd15_mixed.safetensors");
    ModelLoadOptions lo;
    lo.precision = Precision::FP32;
    std::unique_ptr<DiffusionModel> m = load_model(src, lo);
    int64_t matrices = 0;
    for (auto& [n, mod] : m->modules())
        if (n != "vae")
            for_each_param(*mod, [&](const std::string&, Param& p) { matrices += p.matrix && p.value.defined(); });
    const QuantizeWeightsSummary s = quantize_model_weights(*m, *parse_quantize_recipe("q4_k_m"));
    int64_t quantized = 0;
    for (const auto& [t, c] : s.tensors_per_type) quantized += c;
    EXPECT_EQ(quantized + s.kept, matrices);
    EXPECT_GT(quantized, 40);
    EXPECT_GT(s.kept, 0);  // conv_in, conv_out, the time embedding
    EXPECT_EQ(s.already_quantized, 0);
    EXPECT_LT(s.bytes_after * 4, s.bytes_before);  // f32 -> ~4.5-6.6 bits
    EXPECT_THAT(s.describe(), HasSubstr("q4_k_m: "));
    const QuantizeWeightsSummary again = quantize_model_weights(*m, *parse_quantize_recipe("q8_0"));
    EXPECT_EQ(again.already_quantized, quantized);
    EXPECT_TRUE(again.tensors_per_type.empty());
    const std::vector<uint8_t> img = image_of(*m);
    EXPECT_EQ(img.size(), 64u * 64u * 3u);
}

// SDXL (two text encoders), SD3 (three, T5 included) and DiT: the denoiser and the text encoders are quantized, the
// layers each family keeps are not, and each generates with bf16 products (W8A8 where the CPU has VNNI).
TEST(QuantizeWeights, EveryFamilyLoadsQuantizedAndGenerates) {
    struct Case {
        std::string name, path, vae, keep;
    };
    std::vector<Case> cases;
    cases.push_back({"sdxl", tiny_sd("sdxl", DType::F16, "sdxl.safetensors"), "", "unet/conv_in.weight"});
    {
        RandomFamilyOptions o;
        o.family = "sd35-medium";
        o.tiny = true;
        o.dtype = DType::F32;
        o.with_text_encoders = true;
        const std::string p = temp_path("sd35.safetensors");
        write_random_family(p, o);
        cases.push_back({"sd3", p, "", "transformer/pos_embed.proj.weight"});
    }
    {
        RandomFamilyOptions o;
        o.family = "dit-xl-2-256";
        o.tiny = true;
        o.dtype = DType::F32;
        const std::string p = temp_path("dit.safetensors");
        write_random_family(p, o);
        o.family = "vae";
        const std::string v = temp_path("dit_vae.safetensors");
        write_random_family(v, o);
        cases.push_back({"dit", p, v, "transformer/pos_embed.proj.weight"});
    }
    for (const Case& c : cases) {
        SCOPED_TRACE(c.name);
        ModelLoadOptions lo;
        lo.precision = Precision::BF16;
        lo.vae_path = c.vae;
        lo.weight_type = "q8_0";
        std::unique_ptr<DiffusionModel> m;
        ASSERT_NO_THROW(m = load_model(c.path, lo));
        EXPECT_EQ(m->family_name(), c.name);
        const auto ps = params_of(*m);
        std::map<std::string, int> q;
        for (const auto& [n, t] : ps)
            if (quantized_weight_view(t)) ++q[n.substr(0, n.find('/'))];
        EXPECT_GT(q[c.name == "sdxl" ? "unet" : "transformer"], 4);
        if (c.name != "dit") {  // (the tiny CLIPs' layers are mostly narrower than a block)
            EXPECT_GE(q["text_encoder"], 1);
            EXPECT_GE(q["text_encoder_2"], 1);
        }
        if (c.name == "sd3") EXPECT_GT(q["text_encoder_3"], 2);  // T5
        EXPECT_EQ(q["vae"], 0);
        ASSERT_TRUE(ps.count(c.keep)) << c.keep;
        EXPECT_FALSE(quantized_weight_view(ps.at(c.keep))) << c.keep;
        GenerateParams p;
        p.prompt = c.name == "dit" ? "1" : "a cat";
        p.width = p.height = c.name == "sdxl" ? 64 : c.name == "dit" ? 16 : 32;
        p.steps = 2;
        p.seed = 3;
        p.sampler = "euler";
        std::vector<GeneratedImage> out;
        ASSERT_NO_THROW(out = generate(*m, p));
        ASSERT_EQ(out.size(), 1u);
        EXPECT_FALSE(out[0].image.pixels.empty());
    }
}

TEST(QuantizeWeights, RefusesWhatIsNotABlockType) {
    EXPECT_THAT(error_of([] { parse_weight_type("q9_0"); }),
                HasSubstr("--type 'q9_0' is not a quantized type; one of: q8_0, q4_0"));
    EXPECT_THAT(error_of([] { parse_weight_type("f16"); }), HasSubstr("--type 'f16' is not a quantized type"));
    EXPECT_THAT(error_of([] { parse_weight_type("bf16"); }), HasSubstr("f16 / bf16 / f32 change nothing"));
    EXPECT_THAT(error_of([] { parse_weight_type(""); }), HasSubstr("is not a quantized type"));
    EXPECT_EQ(parse_weight_type("Q4_K_M").name, "q4_k_m");
    // Checked before the file is opened: the type is what is wrong, whatever the path.
    ModelLoadOptions lo;
    lo.weight_type = "q7";
    EXPECT_THAT(error_of([&] { load_model(temp_path("does_not_exist.safetensors"), lo); }),
                HasSubstr("--type 'q7' is not a quantized type"));
}

// The CLI: --type on generate (the built-in model: its UNet rows allow q8_0), a usage error for a bad value.
TEST(QuantizeWeights, GenerateTakesTypeOnTheCommandLine) {
    const std::string out = temp_path("cli_q8.png");
    const test::CliRun r =
        test::run_cli(" generate -v --steps 2 -W 32 -H 32 -p \"red apple\" --type q8_0 -o " + out);
    ASSERT_EQ(r.code, 0) << r.out;
    EXPECT_THAT(r.out, HasSubstr("weights quantized in memory (--type q8_0: "));
    EXPECT_TRUE(std::filesystem::exists(out));
    const test::CliRun bad = test::run_cli(" generate --steps 2 -p apple --type int3 -o " + out);
    EXPECT_EQ(bad.code, 2) << bad.out;
    EXPECT_THAT(bad.out, HasSubstr("usage: --type 'int3' is not a quantized type"));
    // nuance info --type: what generate --type would hold, per weight with --tensors
    const std::string model = tiny_sd("sd15", DType::F16, "sd15_info.safetensors");
    const test::CliRun info = test::run_cli(" info " + model + " --type q4_k_m --tensors");
    ASSERT_EQ(info.code, 0) << info.out;
    EXPECT_THAT(info.out, HasSubstr("with --type q4_k_m: "));
    EXPECT_THAT(info.out, HasSubstr("unet/conv_in.weight F16[")) ;  // kept
    EXPECT_THAT(info.out, ::testing::ContainsRegex("unet/down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_v.weight "
                                                   "Q[0-9A-Z_]+\\["));
    EXPECT_EQ(test::run_cli(" info " + model + " --type q3").code, 2);
    // bench counts a quantized weight's blocks (not one byte per value) in weights_mb
    auto weights_mb = [&](const std::string& extra) {
        const test::CliRun b = test::run_cli(" bench --json --res 32 --steps 1 --repeat 1 -t 1 --parts text -m " +
                                             model + extra);
        EXPECT_EQ(b.code, 0) << b.out;
        std::istringstream in(b.out);
        for (std::string line; std::getline(in, line);)
            if (line.rfind("{", 0) == 0 && line.find("\"summary\"") != std::string::npos)
                return nlohmann::json::parse(line).at("weights_mb").get<double>();
        return -1.0;
    };
    const double f16 = weights_mb(""), q8 = weights_mb(" --type q8_0"), q4 = weights_mb(" --type q4_0");
    EXPECT_GT(f16, 0.0);
    EXPECT_LT(q8, f16);
    EXPECT_LT(q4, q8);
}

// Where the blocks live: by default in an unlinked scratch file, mapped (file-backed, as a GGUF file's blocks, so
// their pages can leave memory); with the same bytes as in memory. A folder that is missing or a memory file system
// falls back to memory and says why.
TEST(QuantizeWeights, BlocksGoToAScratchFileWhenOneCanBeMade) {
    const std::string src = tiny_sd("sd15", DType::F32, "sd15_spill.safetensors");
    ModelLoadOptions lo;
    lo.precision = Precision::FP32;
    auto quantized = [&](QuantizeWeightsOptions o, QuantizeWeightsSummary* sum) {
        std::unique_ptr<DiffusionModel> m = load_model(src, lo);
        *sum = quantize_model_weights(*m, *parse_quantize_recipe("q8_0"), o);
        return m;
    };
    QuantizeWeightsOptions mem;
    mem.spill = false;
    QuantizeWeightsOptions file;
    file.spill = true;
    file.spill_dir = NUANCE_SCRATCH_DIR;
    QuantizeWeightsSummary sm, sf;
    const auto a = quantized(mem, &sm), b = quantized(file, &sf);
    EXPECT_FALSE(sm.spilled);
    EXPECT_TRUE(sf.spilled) << sf.spill_note;
    EXPECT_THAT(sf.describe(), HasSubstr("blocks in an unlinked scratch file in '"));
    // Nothing is left in the folder: the file has no name.
    for (const auto& e : std::filesystem::directory_iterator(NUANCE_SCRATCH_DIR))
        EXPECT_EQ(e.path().filename().string().find("nuance-blocks-"), std::string::npos) << e.path();
    const auto pa = params_of(*a), pb = params_of(*b);
    int n = 0;
    for (const auto& [name, t] : pa) {
        const auto va = quantized_weight_view(t), vb = quantized_weight_view(pb.at(name));
        ASSERT_EQ(va.has_value(), vb.has_value()) << name;
        if (!va) continue;
        ++n;
        EXPECT_FALSE(va->file_backed) << name;
        EXPECT_TRUE(vb->file_backed) << name;
        EXPECT_EQ(reinterpret_cast<uintptr_t>(vb->data) % 4096, 0u) << name;  // each weight on its own pages
        EXPECT_TRUE(blocks_of(*va) == blocks_of(*vb)) << name;
    }
    EXPECT_GT(n, 40);
    EXPECT_EQ(image_of(*a), image_of(*b));
    QuantizeWeightsOptions missing = file;
    missing.spill_dir = temp_path("no/such/folder");
    QuantizeWeightsSummary s;
    quantized(missing, &s);
    EXPECT_FALSE(s.spilled);
    EXPECT_THAT(s.spill_note, HasSubstr("no scratch file in '"));
    if (std::filesystem::is_directory("/dev/shm")) {  // tmpfs on Linux
        QuantizeWeightsOptions shm = file;
        shm.spill_dir = "/dev/shm";
        quantized(shm, &s);
        EXPECT_FALSE(s.spilled);
        EXPECT_THAT(s.spill_note, HasSubstr("is a memory file system"));
    }
}
