#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <random>
#include <vector>

#include "../test_util.h"
#include "backends/cpu/ggml_quants.h"
#include "eval/golden_case.h"
#include "io/gguf.h"
#include "io/gguf_quantize.h"
#include "io/safetensors.h"
#include "models/unet/unet2d.h"
#include "core/quantized_weight.h"
#include "io/weights.h"
#include "models/random_model.h"
#include "models/sd/stable_diffusion.h"
#include "pipelines/generate.h"

using namespace nuance;
using ::testing::HasSubstr;

namespace {
const std::string kData = std::string(NUANCE_TEST_DATA);
const GgmlType kTypes[] = {GgmlType::Q8_0, GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q5_0, GgmlType::Q5_1};

std::string tmp(const std::string& name) { return std::string(NUANCE_SCRATCH_DIR) + "/nuance_gguf_q_" + name; }
}  // namespace

// Bytes written by gguf-py 0.19 quants.quantize (tools/make_gguf_quant_ref.py): zeros, ties, tiny and huge values.
TEST(GgufQuantize, BlocksMatchGgufPyByteForByte) {
    const GgufFile g = read_gguf(kData + "/gguf_quant/ref.gguf");
    Tensor src;
    for (const auto& t : g.tensors)
        if (t.name == "src") src = g.view(t);
    ASSERT_TRUE(src.defined());
    size_t checked = 0;
    for (const auto& t : g.tensors) {
        if (t.name == "src" || t.name.rfind("deq.", 0) == 0) continue;
        const GgmlType type = parse_ggml_type(t.name);
        const QuantizedTensor q = quantize(src, type);
        ASSERT_EQ(q.packed.nbytes(), t.nbytes) << t.name;
        const uint8_t* want = g.storage->data() + t.offset;
        const uint8_t* got = q.packed.data<uint8_t>();
        size_t first_bad = SIZE_MAX;
        for (size_t i = 0; i < t.nbytes && first_bad == SIZE_MAX; ++i)
            if (got[i] != want[i]) first_bad = i;
        EXPECT_EQ(first_bad, SIZE_MAX) << t.name << ": first differing byte " << first_bad;
        ++checked;
    }
    EXPECT_EQ(checked, 7u);
}

// Quantize -> write -> read back with the C++ reader: every tensor is exactly the dequantized quantization, under
// its name and torch shape.
TEST(GgufQuantize, RoundTripThroughTheReader) {
    const WeightFile in = load_safetensors(kData + "/golden/unet_sd15/unet.safetensors");
    for (GgmlType type : kTypes) {
        const std::string out = tmp(std::string(ggml_type_info(type).name) + ".gguf");
        const GgufQuantizeSummary s = quantize_to_gguf(in, out, type);
        EXPECT_EQ(s.architecture, "sd1");
        EXPECT_GT(s.tensors_per_type.at(ggml_type_info(type).name), 0);
        const WeightFile back = load_gguf(out);
        ASSERT_EQ(back.tensors.size(), in.tensors.size());
        EXPECT_EQ(back.metadata.at("general.architecture"), "sd1");
        const GgufFile g = read_gguf(out);
        for (const auto& t : g.tensors) {
            const Tensor& orig = in.tensors.at(t.name);
            const Tensor& got = back.tensors.at(t.name);
            ASSERT_EQ(got.shape(), orig.shape()) << t.name;
            const GgmlType stored = (GgmlType)t.type;
            const Tensor want = quantize(orig.f32().contiguous().view(t.shape), stored).dequantize();
            EXPECT_EQ(got.f32().to_vector(), want.to_vector()) << t.name;
            if (stored == GgmlType::F32) EXPECT_EQ(got.to_vector(), orig.to_vector()) << t.name;
        }
    }
}

// The ComfyUI-GGUF rules reproduce the reference file's choices tensor by tensor: type, stored shape, orig_shape.
TEST(GgufQuantize, ComfyLayoutMatchesTheReferenceFile) {
    const std::string ref = kData + "/golden/gguf/unet_sd15_comfy_Q8_0.gguf";
    const std::string out = tmp("comfy_again.gguf");
    quantize_to_gguf(load_gguf(ref), out, GgmlType::Q8_0);
    const GgufFile a = read_gguf(ref), b = read_gguf(out);
    ASSERT_EQ(a.tensors.size(), b.tensors.size());
    std::map<std::string, const GgufTensorInfo*> bt;
    for (const auto& t : b.tensors) bt[t.name] = &t;
    for (const auto& t : a.tensors) {
        ASSERT_TRUE(bt.count(t.name)) << t.name;
        EXPECT_EQ(bt[t.name]->type, t.type) << t.name;
        EXPECT_EQ(bt[t.name]->ne, t.ne) << t.name;
        const GgufValue* oa = a.find("comfy.gguf.orig_shape." + t.name);
        const GgufValue* ob = b.find("comfy.gguf.orig_shape." + t.name);
        ASSERT_EQ(oa == nullptr, ob == nullptr) << t.name;
        if (oa) EXPECT_EQ(oa->to_string(), ob->to_string()) << t.name;
    }
    for (const char* k : {"general.architecture", "general.quantization_version", "general.file_type"})
        EXPECT_EQ(a.find(k)->to_string(), b.find(k)->to_string()) << k;
}

TEST(GgufQuantize, OriginalCheckpointKeepsOnlyTheDiffusionModel) {
    WeightFile in;
    in.path = "x.safetensors";
    in.tensors["model.diffusion_model.input_blocks.1.1.proj_in.weight"] = Tensor::full({64, 64}, 0.5f);
    in.tensors["first_stage_model.decoder.conv_in.weight"] = Tensor::zeros({4});
    in.tensors["cond_stage_model.transformer.text_model.final_layer_norm.weight"] = Tensor::zeros({4});
    const std::string out = tmp("orig.gguf");
    const GgufQuantizeSummary s = quantize_to_gguf(in, out, GgmlType::Q4_0);
    EXPECT_EQ(s.dropped, 2);
    const GgufFile g = read_gguf(out);
    ASSERT_EQ(g.tensors.size(), 1u);
    EXPECT_EQ(g.tensors[0].name, "input_blocks.1.1.proj_in.weight");
    EXPECT_EQ(ggml_type_info(g.tensors[0].type)->name, std::string("Q4_0"));
    EXPECT_EQ(test::error_of([&] { quantize_to_gguf(in, out, GgmlType::Q8_1); }),
              "quantize: type Q8_1 has no quantizer (available: q8_0, q4_0, q4_1, q5_0, q5_1, q2_k, q3_k, q4_k, q5_k, "
              "q6_k, iq4_nl, iq4_xs, q3_k_s, q3_k_m, q3_k_l, q4_k_s, q4_k_m, q5_k_s, q5_k_m, f16, bf16)");
}

// Issue 14 item 5: each type's effect on the tiny SD1.5 UNet's output (golden unet_sd15 input) vs the f32 weights.
TEST(GgufQuantize, UNetOutputErrorPerType) {
    const GoldenCase gc = GoldenCase::load(kData + "/golden/unet_sd15");
    const WeightFile in = load_safetensors(gc.path("unet.safetensors"));
    UNetConfig cfg = UNetConfig::detect(in.tensors);
    cfg.apply_json(gc.model_config(gc.models().at(0).first));
    auto run = [&](const std::map<std::string, Tensor>& w) {
        UNet2DConditionModel unet(cfg);
        load_module(unet, w, gc.load_options(gc.path("unet.safetensors")));
        return unet.forward(gc.tensor("sample"), gc.tensor("timestep"), gc.tensor("encoder_hidden_states"));
    };
    const std::vector<float> ref = run(in.tensors).to_vector();
    double prev_max = 0;
    for (const char* recipe : {"q8_0", "q6_k", "q5_k_m", "q5_k", "q5_1", "q5_0", "q4_k_m", "q4_k", "q4_1", "q4_0",
                               "q3_k_m", "q3_k", "q2_k"}) {
        const QuantizeRecipe r = *parse_quantize_recipe(recipe);
        const GgmlType type = r.type;
        const std::string out = tmp(std::string("err_") + recipe + ".gguf");
        quantize_to_gguf(in, out, r);
        const std::vector<float> got = run(load_gguf(out).tensors).to_vector();
        double max_abs = 0, sum = 0;
        for (size_t i = 0; i < got.size(); ++i) {
            const double e = std::fabs((double)got[i] - ref[i]);
            max_abs = std::max(max_abs, e);
            sum += e;
        }
        std::printf("[ quant err ] %-6s max_abs %.6f mean_abs %.6f (eps max |ref| ~3.5)\n", recipe, max_abs,
                    sum / (double)got.size());
        EXPECT_TRUE(std::isfinite(max_abs));
        EXPECT_LT(max_abs, type == GgmlType::Q2_K ? 2.5 : type == GgmlType::Q3_K ? 1.5 : 1.0) << recipe;
        if (type == GgmlType::Q8_0) EXPECT_LT(max_abs, 0.1) << recipe;
        if (type == GgmlType::Q6_K) EXPECT_LT(max_abs, 0.3) << recipe;  // 6 bits: about 4x Q8_0's step
        prev_max = max_abs;
    }
    (void)prev_max;
}

TEST(GgufQuantize, Cli) {
    const std::string out = tmp("cli.gguf");
    const test::CliRun r = test::run_cli("quantize -m " + kData + "/golden/unet_sd15/unet.safetensors -o " + out +
                                         " --type q5_0");
    EXPECT_EQ(r.code, 0) << r.out;
    EXPECT_THAT(r.out, HasSubstr("architecture sd1"));
    EXPECT_THAT(r.out, HasSubstr("Q5_0"));
    const test::CliRun i = test::run_cli("info " + out);
    EXPECT_THAT(i.out, HasSubstr("general.file_type: 8 (MOSTLY_Q5_0)"));
    const test::CliRun bad = test::run_cli("quantize -m x -o y --type q3");
    EXPECT_EQ(bad.code, 2);
    EXPECT_THAT(bad.out, HasSubstr("--type 'q3': expected one of q8_0, q4_0, q4_1, q5_0, q5_1, q2_k, q3_k, q4_k, q5_k, "
                                   "q6_k, iq4_nl, iq4_xs, q3_k_s, q3_k_m, q3_k_l, q4_k_s, q4_k_m, q5_k_s, q5_k_m, f16, bf16"));
}

// Dequantizers of the types the golden case lacks (IQ4_NL, IQ4_XS) and every K type on random blocks, bit for bit
// against gguf-py's quants.dequantize (tools/make_gguf_quant_ref.py).
TEST(GgufQuantize, DequantizeRandomBlocksLikeGgufPy) {
    const WeightFile wf = load_gguf(kData + "/gguf_quant/ref.gguf");
    size_t n = 0;
    for (const char* t : {"iq4_nl", "iq4_xs", "q2_k", "q3_k", "q4_k", "q5_k", "q6_k"}) {
        const std::string k = std::string("deq.") + t;
        ASSERT_TRUE(wf.tensors.count(k) && wf.tensors.count(k + ".f32")) << k;
        const std::vector<float> got = wf.tensors.at(k).to_vector(), want = wf.tensors.at(k + ".f32").to_vector();
        ASSERT_EQ(got.size(), want.size()) << k;
        EXPECT_EQ(std::memcmp(got.data(), want.data(), got.size() * 4), 0) << k;
        ++n;
    }
    EXPECT_EQ(n, 7u);
}

// `--layout full`: every component of an original checkpoint under its full key; `nuance generate` runs from the
// file alone, with the UNet's and text encoder's weights kept quantized (products on the blocks), and makes nearly
// the image of the f32 checkpoint.
// Mean |pixel difference| (of 255) between the images of two models (64², 3 Euler steps, fp32 products).
double mean_pixel_diff(const StableDiffusionModel& a_model, const StableDiffusionModel& b_model) {
    GenerateParams p;
    p.prompt = "a cat";
    p.width = p.height = 64;
    p.steps = 3;
    p.seed = 7;
    p.sampler = "euler";
    const auto a = generate(a_model, p), b = generate(b_model, p);
    EXPECT_EQ(a.size(), 1u);
    EXPECT_EQ(b.size(), 1u);
    if (a.size() != 1 || b.size() != 1 || a[0].image.pixels.size() != b[0].image.pixels.size()) return 1e9;
    double sum = 0;
    for (size_t i = 0; i < a[0].image.pixels.size(); ++i)
        sum += std::abs((int)a[0].image.pixels[i] - (int)b[0].image.pixels[i]);
    return sum / (double)a[0].image.pixels.size();
}

TEST(GgufQuantize, FullLayoutGeneratesFromQuantizedWeights) {
    const std::string src = tmp("full_src.safetensors"), out = tmp("full_q8.gguf");
    RandomModelOptions ro;
    ro.tiny = true;
    ro.dtype = DType::F32;
    write_random_checkpoint(src, ro);
    const WeightFile in = load_weights(src);
    const GgufQuantizeSummary s = quantize_to_gguf(in, out, GgmlType::Q8_0, GgufLayout::Full);
    EXPECT_EQ(s.dropped, 0);
    const GgufFile g = read_gguf(out);
    EXPECT_EQ(g.tensors.size(), in.tensors.size());
    std::map<std::string, std::string> type;
    for (const auto& t : g.tensors) type[t.name] = ggml_type_info(t.type)->name;
    // Some linear of each quantized component, the token embedding and the VAE kept as floats.
    int unet_q = 0, te_q = 0, vae_q = 0;
    for (const auto& [k, ty] : type) {
        const bool q = ty == "Q8_0";
        if (k.rfind("model.diffusion_model.", 0) == 0) unet_q += q;
        if (k.rfind("cond_stage_model.", 0) == 0) te_q += q;
        if (k.rfind("first_stage_model.", 0) == 0) vae_q += q;
        if (k.find("token_embedding") != std::string::npos) EXPECT_NE(ty, "Q8_0") << k;
    }
    EXPECT_GT(unet_q, 10);
    EXPECT_GT(te_q, 4);
    EXPECT_EQ(vae_q, 0);
    ModelLoadOptions lo;
    lo.precision = Precision::FP32;
    const StableDiffusionModel fm = load_stable_diffusion(src, lo), qm = load_stable_diffusion(out, lo);
    int handles = 0;
    for_each_param(*qm.unet, [&](const std::string&, Param& p) { handles += quantized_weight_view(p.value).has_value(); });
    EXPECT_GT(handles, 10);
    const double diff = mean_pixel_diff(fm, qm);
    std::printf("[ full q8_0 ] mean |pixel diff| vs f32 checkpoint: %.3f / 255\n", diff);
    EXPECT_LT(diff, 4.0);
    EXPECT_THAT(test::error_of([&] { quantize_to_gguf(load_weights(kData + "/golden/unet_sd15/unet.safetensors"), out,
                                                      GgmlType::Q8_0, GgufLayout::Full); }),
                HasSubstr("--layout full needs an original single-file checkpoint"));
}

// --layout full on SDXL: both text encoders (conditioner.embedders.0 CLIP-L, .1 OpenCLIP bigG with its fused
// in_proj) are quantized like SD1's cond_stage_model, and the model generates from the file.
TEST(GgufQuantize, FullLayoutQuantizesSdxlTextEncoders) {
    const std::string src = tmp("full_sdxl_src.safetensors"), out = tmp("full_sdxl_q8.gguf");
    RandomModelOptions ro;
    ro.family = "sdxl";
    ro.tiny = true;
    ro.dtype = DType::F32;
    write_random_checkpoint(src, ro);
    quantize_to_gguf(load_weights(src), out, GgmlType::Q8_0, GgufLayout::Full);
    const GgufFile g = read_gguf(out);
    int te0 = 0, te1 = 0;
    for (const auto& t : g.tensors) {
        const bool q = std::string(ggml_type_info(t.type)->name) == "Q8_0";
        if (t.name.rfind("conditioner.embedders.0.", 0) == 0) te0 += q;
        if (t.name.rfind("conditioner.embedders.1.", 0) == 0) te1 += q;
        if (t.name.find("token_embedding") != std::string::npos) EXPECT_FALSE(q) << t.name;
    }
    EXPECT_GT(te0, 4);
    EXPECT_GT(te1, 4);
    ModelLoadOptions lo;
    lo.precision = Precision::FP32;
    const StableDiffusionModel fm = load_stable_diffusion(src, lo), qm = load_stable_diffusion(out, lo);
    EXPECT_LT(mean_pixel_diff(fm, qm), 4.0);
}

// --layout sdcpp: stable-diffusion.cpp's converter rule (tensors keep their shapes; a weight is quantized only where
// its last dimension is whole blocks and its name is not one sd.cpp keeps), no comfy reshape key; nuance runs it.
TEST(GgufQuantize, SdcppLayoutKeepsShapesAndConvolutionsF16) {
    const std::string src = tmp("sdcpp_src.safetensors"), out = tmp("sdcpp_q8.gguf");
    RandomModelOptions ro;
    ro.tiny = true;
    ro.dtype = DType::F32;
    write_random_checkpoint(src, ro);
    const WeightFile in = load_weights(src);
    const GgufQuantizeSummary s = quantize_to_gguf(in, out, GgmlType::Q8_0, GgufLayout::SdCpp);
    EXPECT_EQ(s.dropped, 0);
    const GgufFile g = read_gguf(out);
    ASSERT_EQ(g.tensors.size(), in.tensors.size());
    for (const auto& [k, v] : g.kv) EXPECT_EQ(k.find("orig_shape"), std::string::npos) << k;
    int quantized = 0;
    for (const auto& t : g.tensors) {
        const Tensor& orig = in.tensors.at(t.name);
        EXPECT_EQ(t.shape, orig.shape()) << t.name;  // every tensor in its own shape
        const std::string ty = ggml_type_info(t.type)->name;
        const bool want_q = sdcpp_quantizes(t.name, orig.shape(), GgmlType::Q8_0);
        EXPECT_EQ(ty == "Q8_0", want_q) << t.name << " " << ty;
        quantized += want_q;
        if (!want_q) EXPECT_EQ(ty, orig.dim() <= 1 ? "F32" : "F16") << t.name;
        if (orig.dim() == 4) EXPECT_NE(ty, "Q8_0") << t.name;  // convolutions: ne0 = kw
    }
    EXPECT_GT(quantized, 20);
    // The rule itself, on sd.cpp's names.
    EXPECT_TRUE(sdcpp_quantizes("model.diffusion_model.input_blocks.1.1.proj_in.weight", {320, 320}, GgmlType::Q8_0));
    EXPECT_FALSE(sdcpp_quantizes("model.diffusion_model.input_blocks.1.1.proj_in.weight", {320, 320, 1, 1}, GgmlType::Q8_0));
    EXPECT_FALSE(sdcpp_quantizes("model.diffusion_model.time_embed.0.weight", {1280, 320}, GgmlType::Q8_0));
    EXPECT_FALSE(sdcpp_quantizes("cond_stage_model.transformer.text_model.embeddings.token_embedding.weight",
                                 {49408, 768}, GgmlType::Q8_0));
    EXPECT_FALSE(sdcpp_quantizes("double_blocks.0.img_attn.proj.bias", {3072}, GgmlType::Q8_0));
    EXPECT_FALSE(sdcpp_quantizes("final_layer.linear.weight", {64, 3072}, GgmlType::Q8_0));
    EXPECT_FALSE(sdcpp_quantizes("x.weight", {64, 48}, GgmlType::Q4_K));  // 48 is not a multiple of 256
    // nuance generates from it, close to the f32 checkpoint.
    ModelLoadOptions lo;
    lo.precision = Precision::FP32;
    const StableDiffusionModel fm = load_stable_diffusion(src, lo), qm = load_stable_diffusion(out, lo);
    EXPECT_LT(mean_pixel_diff(fm, qm), 4.0);
    EXPECT_THAT(test::error_of([&] { quantize_to_gguf(load_weights(kData + "/golden/unet_sd15/unet.safetensors"), out,
                                                      GgmlType::Q8_0, GgufLayout::SdCpp); }),
                HasSubstr("--layout sdcpp needs an original single-file checkpoint"));
    const test::CliRun bad = test::run_cli("quantize -m " + src + " --type q8_0 --layout sd -o " + out);
    EXPECT_EQ(bad.code, 2);
    EXPECT_THAT(bad.out, HasSubstr("expected comfy, full or sdcpp"));
}

// The same quantized files through the quantized kernels (weights kept as blocks) and through dequantized F32
// weights: at FP32 the products differ only in summation order.
TEST(GgufQuantize, UNetQuantizedPathMatchesDequantizedWeights) {
    const GoldenCase gc = GoldenCase::load(kData + "/golden/unet_sd15");
    const WeightFile in = load_safetensors(gc.path("unet.safetensors"));
    UNetConfig cfg = UNetConfig::detect(in.tensors);
    cfg.apply_json(gc.model_config(gc.models().at(0).first));
    auto run = [&](const std::map<std::string, Tensor>& w, Precision p) {
        UNet2DConditionModel unet(cfg);
        LoadOptions o = gc.load_options(gc.path("unet.safetensors"));
        o.matrices_as_stored = true;
        o.matrix_compute = p;
        load_module(unet, w, o);
        return unet.forward(gc.tensor("sample"), gc.tensor("timestep"), gc.tensor("encoder_hidden_states"))
            .to_vector();
    };
    for (GgmlType type : {GgmlType::Q8_0, GgmlType::Q4_0, GgmlType::Q5_1}) {
        const std::string out = tmp(std::string("qpath_") + ggml_type_info(type).name + ".gguf");
        quantize_to_gguf(in, out, type);
        const WeightFile packed = load_gguf(out, /*keep_quantized=*/true), plain = load_gguf(out);
        int handles = 0;
        for (const auto& [k, v] : packed.tensors) handles += quantized_weight_view(v).has_value();
        EXPECT_GT(handles, 20) << ggml_type_info(type).name;
        const std::vector<float> ref = run(plain.tensors, Precision::FP32);
        for (const Precision p : {Precision::FP32, Precision::BF16}) {
            const std::vector<float> got = run(packed.tensors, p);
            double max_abs = 0;
            for (size_t i = 0; i < got.size(); ++i) max_abs = std::max(max_abs, std::fabs((double)got[i] - ref[i]));
            std::printf("[ quant path ] %-5s %s max_abs vs dequantized f32 %.2e\n", ggml_type_info(type).name,
                        p == Precision::FP32 ? "fp32" : "bf16", max_abs);
            EXPECT_LT(max_abs, p == Precision::FP32 ? 1e-4 : 0.1) << ggml_type_info(type).name;
        }
    }
}

// K-quant quantizers against llama.cpp's own quantize_row_q{4,5,6}_K_ref (tools/make_kquant_ref.c wrote the bytes,
// both sides without FMA contraction): byte for byte on 8 rows of test values (normal, tiny, large, a zero
// super-block, constant with an outlier, heavy tail, all positive, ramps with spikes).
TEST(GgufQuantize, KQuantsMatchLlamaCppReferenceByteForByte) {
    FILE* f = std::fopen((kData + "/gguf_quant/kquant_ref.bin").c_str(), "rb");
    ASSERT_NE(f, nullptr);
    std::vector<float> src(8 * 512);
    ASSERT_EQ(std::fread(src.data(), 4, src.size(), f), src.size());
    const Tensor x = Tensor::from_vector(src, {8, 512});
    for (const GgmlType t : {GgmlType::Q4_K, GgmlType::Q5_K, GgmlType::Q6_K}) {
        const GgmlTypeInfo& ti = ggml_type_info(t);
        std::vector<uint8_t> want((size_t)(8 * 2 * ti.bytes));
        ASSERT_EQ(std::fread(want.data(), 1, want.size(), f), want.size()) << ti.name;
        const QuantizedTensor q = quantize(x, t);
        ASSERT_EQ(q.packed.nbytes(), want.size());
        const uint8_t* got = q.packed.data<uint8_t>();
        for (int64_t b = 0; b < 16; ++b)
            EXPECT_EQ(std::memcmp(got + b * ti.bytes, want.data() + b * ti.bytes, (size_t)ti.bytes), 0)
                << ti.name << " row " << b / 2 << " super-block " << b % 2;
        // Round trip: the reference's own error, hence no worse than llama.cpp's (and bounded: the 6-bit type
        // within 2% of each row's range, the 4-bit one within 15%, for rows without a spike).
        const std::vector<float> back = q.dequantize().to_vector();
        for (int r = 0; r < 8; ++r) {
            float lo = src[(size_t)r * 512], hi = lo, worst = 0;
            for (int i = 0; i < 512; ++i) {
                lo = std::min(lo, src[(size_t)(r * 512 + i)]);
                hi = std::max(hi, src[(size_t)(r * 512 + i)]);
                worst = std::max(worst, std::fabs(back[(size_t)(r * 512 + i)] - src[(size_t)(r * 512 + i)]));
            }
            const float frac = t == GgmlType::Q6_K ? 0.02f : t == GgmlType::Q5_K ? 0.08f : 0.15f;
            if (r != 5 && r != 7) EXPECT_LE(worst, frac * (hi - lo) + 1e-7f) << ti.name << " row " << r;
        }
    }
    std::fclose(f);
}

// ComfyUI-GGUF's recipes (tools/lcpp.patch, img_tensor_get_type): which tensors go higher, per recipe.
TEST(GgufQuantize, MixedRecipesFollowComfyUiGguf) {
    EXPECT_FALSE(parse_quantize_recipe("q3").has_value());
    EXPECT_FALSE(parse_quantize_recipe("q8_1").has_value());
    EXPECT_FALSE(parse_quantize_recipe("f32").has_value());
    const std::string v = "input_blocks.1.1.transformer_blocks.0.attn1.to_v.weight";
    const std::string q = "input_blocks.1.1.transformer_blocks.0.attn1.to_q.weight";
    const std::string ff = "output_blocks.3.1.transformer_blocks.0.ff.net.2.weight";
    const std::string qkv = "double_blocks.0.img_attn.qkv.weight";
    const std::string out_proj = "output_blocks.3.1.proj_out.weight";
    struct Want {
        const char* recipe;
        GgmlType base, v1, v3, v5, qkv, ff;
        uint32_t ftype;
    };
    using T = GgmlType;
    const Want wants[] = {
        // recipe     base     1st to_v 3rd to_v 5th to_v fused qkv ff.net.2 ftype
        {"q2_k", T::Q2_K, T::Q3_K, T::Q3_K, T::Q3_K, T::Q2_K, T::Q2_K, 10},
        {"q3_k", T::Q3_K, T::Q3_K, T::Q3_K, T::Q3_K, T::Q3_K, T::Q3_K, 11},
        {"q3_k_s", T::Q3_K, T::Q3_K, T::Q3_K, T::Q3_K, T::Q3_K, T::Q3_K, 11},
        {"Q3_K_M", T::Q3_K, T::Q5_K, T::Q4_K, T::Q4_K, T::Q4_K, T::Q4_K, 12},
        {"q3_k_l", T::Q3_K, T::Q5_K, T::Q5_K, T::Q5_K, T::Q4_K, T::Q5_K, 13},
        {"q4_k", T::Q4_K, T::Q4_K, T::Q4_K, T::Q4_K, T::Q4_K, T::Q4_K, 14},
        {"q4_k_s", T::Q4_K, T::Q5_K, T::Q5_K, T::Q4_K, T::Q4_K, T::Q5_K, 14},
        {"q4_k_m", T::Q4_K, T::Q6_K, T::Q6_K, T::Q6_K, T::Q5_K, T::Q6_K, 15},
        {"q5_k_s", T::Q5_K, T::Q5_K, T::Q5_K, T::Q5_K, T::Q5_K, T::Q5_K, 16},
        {"q5_k_m", T::Q5_K, T::Q6_K, T::Q6_K, T::Q6_K, T::Q6_K, T::Q6_K, 17},
        {"q4_0", T::Q4_0, T::Q4_0, T::Q4_0, T::Q4_0, T::Q4_0, T::Q4_0, 2},
    };
    for (const Want& w : wants) {
        const auto r = parse_quantize_recipe(w.recipe);
        ASSERT_TRUE(r.has_value()) << w.recipe;
        EXPECT_EQ(r->type, w.base) << w.recipe;
        EXPECT_EQ(r->file_type, w.ftype) << w.recipe;
        int seen = 0;
        std::vector<GgmlType> vs;
        for (int i = 0; i < 5; ++i) vs.push_back(recipe_tensor_type(*r, v, seen));
        EXPECT_EQ(seen, 5) << w.recipe;
        EXPECT_EQ(vs[0], w.v1) << w.recipe;
        EXPECT_EQ(vs[2], w.v3) << w.recipe;
        EXPECT_EQ(vs[4], w.v5) << w.recipe;
        EXPECT_EQ(recipe_tensor_type(*r, qkv, seen), w.qkv) << w.recipe;
        EXPECT_EQ(recipe_tensor_type(*r, ff, seen), w.ff) << w.recipe;
        EXPECT_EQ(recipe_tensor_type(*r, q, seen), w.base) << w.recipe;
        EXPECT_EQ(recipe_tensor_type(*r, out_proj, seen), w.base) << w.recipe;
        EXPECT_EQ(seen, 5) << w.recipe;
    }
    // A whole file: Q3_K_M on the tiny SD1.5 UNet (sorted names: the first two value projections at Q5_K).
    const WeightFile in = load_safetensors(kData + "/golden/unet_sd15/unet.safetensors");
    const std::string out = tmp("q3km.gguf");
    const GgufQuantizeSummary s = quantize_to_gguf(in, out, *parse_quantize_recipe("q3_k_m"));
    EXPECT_GT(s.tensors_per_type.at("Q3_K"), 0);
    const GgufFile g = read_gguf(out);
    EXPECT_EQ(g.find("general.file_type")->to_string(), "12");
    // The tiny model's narrow rows take llama-quantize's fallbacks (Q5_K -> Q5_1, Q3_K / Q4_K -> Q5_0) or stay
    // floats (rows of 8 or 16 values).
    auto stored = [](GgmlType want, const GgufTensorInfo& t) -> std::string {
        if (t.ne[0] % 256 == 0) return ggml_type_info(want).name;
        if (t.ne[0] % 32 == 0) return want == GgmlType::Q5_K ? "Q5_1" : "Q5_0";
        return "float";
    };
    int n_v = 0, k_quants = 0;
    for (const auto& t : g.tensors) {  // written in name order
        std::string ty = ggml_type_info(t.type)->name;
        if (ty == "F16" || ty == "F32") ty = "float";
        k_quants += t.ne[0] % 256 == 0 && ty != "float";
        if (t.name.find(".to_v.weight") != std::string::npos)
            EXPECT_EQ(ty, stored(n_v++ < 2 ? GgmlType::Q5_K : GgmlType::Q4_K, t)) << t.name;
        else if (t.name.find(".ff.net.2.weight") != std::string::npos) EXPECT_EQ(ty, stored(GgmlType::Q4_K, t)) << t.name;
        else if (t.shape.size() == 1) EXPECT_EQ(ty, "float") << t.name;
        else if (ty != "float") EXPECT_EQ(ty, stored(GgmlType::Q3_K, t)) << t.name;
    }
    EXPECT_GT(n_v, 2);
    EXPECT_GT(k_quants, 50);
    // Round trip through the reader: the dequantized K blocks of every tensor.
    const WeightFile back = load_gguf(out);
    int checked = 0;
    for (const auto& t : g.tensors) {
        const GgmlType ty = (GgmlType)t.type;
        if (ty != GgmlType::Q3_K && ty != GgmlType::Q4_K && ty != GgmlType::Q5_K) continue;
        const Tensor want = quantize(in.tensors.at(t.name).f32().contiguous().view(t.shape), ty).dequantize();
        EXPECT_EQ(back.tensors.at(t.name).f32().contiguous().view(t.shape).to_vector(), want.to_vector()) << t.name;
        ++checked;
    }
    EXPECT_GT(checked, 10);
}

// Q2_K / Q3_K quantizers against llama.cpp's own quantize_row_q2_K_ref / quantize_row_q3_K_ref (ggml-org/ggml at
// d99724f, src/ggml-quants.c compiled with gcc -O2 -ffp-contract=off outside this repository, like our file):
// The head of the reference files below: u32 rows (12) | f32 src[rows][512].
static void read_ref_rows(FILE* f, uint32_t& rows, std::vector<float>& src) {
    ASSERT_EQ(std::fread(&rows, 4, 1, f), 1u);
    ASSERT_EQ(rows, 12u);
    src.resize((size_t)rows * 512);
    ASSERT_EQ(std::fread(src.data(), 4, src.size(), f), src.size());
}

// kquant_q23_ref.bin = u32 rows | f32 src[rows][512] | Q2_K bytes | Q3_K bytes. Rows 0-7 are kquant_ref.bin's; rows
// 8-11 add all-negative values, exact ties on a 0.25 grid, alternating all-zero sub-blocks and one spike per
// sub-block.
TEST(GgufQuantize, Q2KQ3KMatchLlamaCppReferenceByteForByte) {
    FILE* f = std::fopen((kData + "/gguf_quant/kquant_q23_ref.bin").c_str(), "rb");
    ASSERT_NE(f, nullptr);
    uint32_t rows = 0;
    std::vector<float> src;
    read_ref_rows(f, rows, src);
    if (::testing::Test::HasFatalFailure()) return;
    const Tensor x = Tensor::from_vector(src, {(int64_t)rows, 512});
    for (const GgmlType t : {GgmlType::Q2_K, GgmlType::Q3_K}) {
        const GgmlTypeInfo& ti = ggml_type_info(t);
        std::vector<uint8_t> want((size_t)(rows * 2 * ti.bytes));
        ASSERT_EQ(std::fread(want.data(), 1, want.size(), f), want.size()) << ti.name;
        const QuantizedTensor q = quantize(x, t);
        ASSERT_EQ(q.packed.nbytes(), want.size());
        const uint8_t* got = q.packed.data<uint8_t>();
        for (int64_t b = 0; b < rows * 2; ++b)
            EXPECT_EQ(std::memcmp(got + b * ti.bytes, want.data() + b * ti.bytes, (size_t)ti.bytes), 0)
                << ti.name << " row " << b / 2 << " super-block " << b % 2;
        // The round trip is the reference's own: bounded by a fraction of each smooth row's range (2 and 3 bits).
        const std::vector<float> back = q.dequantize().to_vector();
        for (int r : {0, 1, 2, 6, 8}) {
            float lo = src[(size_t)r * 512], hi = lo, worst = 0;
            for (int i = 0; i < 512; ++i) {
                const float v = src[(size_t)(r * 512 + i)];
                lo = std::min(lo, v);
                hi = std::max(hi, v);
                worst = std::max(worst, std::fabs(back[(size_t)(r * 512 + i)] - v));
            }
            EXPECT_LE(worst, (t == GgmlType::Q3_K ? 0.3f : 0.5f) * (hi - lo)) << ti.name << " row " << r;
        }
    }
    uint8_t extra;
    EXPECT_EQ(std::fread(&extra, 1, 1, f), 0u);  // the whole file was read
    std::fclose(f);
    // A row that is not whole super-blocks is refused with the sizes named.
    std::vector<uint8_t> dst(200);
    EXPECT_EQ(test::error_of([&] { quantize_row(GgmlType::Q3_K, src.data(), dst.data(), 100); }),
              "quantize: a Q3_K row of 100 values is not a whole number of 256-value blocks");
}

// The streamed writer (what quantize_to_gguf uses): a producer that returns other bytes than planned is an error
// naming the tensor, and no file (nor temp file) is left behind.
TEST(GgufQuantize, StreamedWriterChecksEachTensorAgainstThePlan) {
    const std::string out = tmp("stream.gguf");
    std::filesystem::remove(out);
    const std::vector<GgufTensorPlan> plan = {{"a", GgmlType::F32, {2, 32}}, {"b", GgmlType::Q8_0, {2, 32}}};
    const Tensor x = Tensor::full({2, 32}, 0.25f);
    int produced = 0;
    EXPECT_EQ(test::error_of([&] {
                  write_gguf(out, {}, plan, [&](size_t i) {
                      ++produced;
                      return quantize(x, i == 0 ? GgmlType::F32 : GgmlType::Q4_0);
                  });
              }),
              "write_gguf '" + out + "': tensor 'b' holds 36 bytes of Q4_0 [2, 32], not the planned 68 of Q8_0 "
              "[2, 32]");
    EXPECT_EQ(produced, 2);
    EXPECT_FALSE(std::filesystem::exists(out));
    for (const auto& e : std::filesystem::directory_iterator(std::filesystem::path(out).parent_path()))
        EXPECT_EQ(e.path().filename().string().find("nuance_gguf_q_stream.gguf."), std::string::npos) << e.path();
    EXPECT_THAT(test::error_of([&] { write_gguf(out, {}, {{"c", GgmlType::Q8_0, {2, 30}}}, [&](size_t) {
                    return quantize(x, GgmlType::Q8_0);
                }); }),
                HasSubstr("tensor 'c' [2, 30]: rows of 30 values are not whole Q8_0 blocks of 32"));
    // The planned bytes written: read back equal.
    write_gguf(out, {}, plan, [&](size_t i) { return quantize(x, plan[i].type); });
    const WeightFile back = load_gguf(out);
    EXPECT_EQ(back.tensors.at("a").to_vector(), x.to_vector());
    EXPECT_EQ(back.tensors.at("b").f32().to_vector(), quantize(x, GgmlType::Q8_0).dequantize().to_vector());
}

// IQ4_NL / IQ4_XS against ggml's quantize_iq4_nl / quantize_iq4_xs (what llama-quantize calls; tools/make_iq4_ref.c
// wrote the bytes, both sides without FMA contraction): byte for byte on kquant_q23_ref.bin's 12 rows (normal, tiny,
// large, zero super-block, outlier, heavy tail, all positive, ramps, all negative, ties, zero sub-blocks, spikes).
// iq4_ref.bin = u32 rows | f32 src[rows][512] | IQ4_NL bytes | IQ4_XS bytes.
TEST(GgufQuantize, Iq4MatchesGgmlByteForByte) {
    FILE* f = std::fopen((kData + "/gguf_quant/iq4_ref.bin").c_str(), "rb");
    ASSERT_NE(f, nullptr);
    uint32_t rows = 0;
    std::vector<float> src;
    read_ref_rows(f, rows, src);
    if (::testing::Test::HasFatalFailure()) return;
    const Tensor x = Tensor::from_vector(src, {(int64_t)rows, 512});
    for (const GgmlType t : {GgmlType::IQ4_NL, GgmlType::IQ4_XS}) {
        const GgmlTypeInfo& ti = ggml_type_info(t);
        const int64_t blocks = rows * 512 / ti.block;
        std::vector<uint8_t> want((size_t)(blocks * ti.bytes));
        ASSERT_EQ(std::fread(want.data(), 1, want.size(), f), want.size()) << ti.name;
        const QuantizedTensor q = quantize(x, t);
        ASSERT_EQ(q.packed.nbytes(), want.size());
        const uint8_t* got = q.packed.data<uint8_t>();
        int bad = 0;
        for (int64_t b = 0; b < blocks; ++b)
            if (std::memcmp(got + b * ti.bytes, want.data() + b * ti.bytes, (size_t)ti.bytes) != 0 && ++bad <= 5)
                ADD_FAILURE() << ti.name << " block " << b << " (row " << b * ti.block / 512 << ") differs";
        EXPECT_EQ(bad, 0) << ti.name;
        // The round trip: 4 bits on a non-linear grid, within a fraction of each smooth row's range.
        const std::vector<float> back = q.dequantize().to_vector();
        for (int r : {0, 1, 2, 6, 8}) {
            float lo = src[(size_t)r * 512], hi = lo, worst = 0;
            for (int i = 0; i < 512; ++i) {
                const float v = src[(size_t)(r * 512 + i)];
                lo = std::min(lo, v);
                hi = std::max(hi, v);
                worst = std::max(worst, std::fabs(back[(size_t)(r * 512 + i)] - v));
            }
            EXPECT_LE(worst, 0.15f * (hi - lo)) << ti.name << " row " << r;
        }
    }
    uint8_t extra;
    EXPECT_EQ(std::fread(&extra, 1, 1, f), 0u);
    std::fclose(f);
    // `nuance quantize --type iq4_nl|iq4_xs` recipes, and IQ4_XS rows that are not whole super-blocks fall back to
    // IQ4_NL as llama-quantize does.
    EXPECT_EQ(parse_quantize_recipe("IQ4_XS")->type, GgmlType::IQ4_XS);
    EXPECT_EQ(parse_quantize_recipe("iq4_nl")->file_type, 25u);
    int seen = 0;
    EXPECT_EQ(gguf_tensor_choice("sd1", "down_blocks.0.attentions.0.proj_in.weight", {33, 32}, GgufComponent::Denoiser,
                                 *parse_quantize_recipe("iq4_xs"), seen)
                  .type,
              GgmlType::IQ4_NL);
}

// Q8_0's vectorised quantizer (AVX-512 where the CPU has it) against gguf-py's algorithm written out here in scalar
// float32 (amax / 127, x * (1 / d) rounded half away from zero), on random blocks, blocks of exact ties (x * id = k +
// 0.5), zeros, denormals, and blocks holding a NaN or an infinity (which take the scalar path): the same bytes.
TEST(GgufQuantize, Q8_0FastPathIsGgufPysArithmetic) {
    auto reference = [](const float* x, uint8_t* y) {
        float amax = 0;
        for (int j = 0; j < 32; ++j) amax = std::fmax(amax, std::fabs(x[j]));
        const float d = amax / 127.0f, id = d == 0 ? 0.0f : 1.0f / d;
        const uint16_t h = f32_to_f16(d);
        std::memcpy(y, &h, 2);
        for (int j = 0; j < 32; ++j) {
            const float n = x[j] * id, a = std::fabs(n), fl = std::floor(a);
            const float b = fl + std::floor(2.0f * (a - fl));
            y[2 + j] = (uint8_t)(int8_t)(n < 0 ? -b : b);
        }
    };
    std::mt19937 rng(3);
    std::normal_distribution<float> nd(0.0f, 1.0f);
    std::vector<float> x;
    const int blocks = 4000;
    for (int b = 0; b < blocks; ++b)
        for (int j = 0; j < 32; ++j) {
            float v = nd(rng) * (b % 7 == 0 ? 1e-3f : b % 11 == 0 ? 1e4f : 1.0f);
            if (b % 5 == 0) v = j == 0 ? 127.0f : (float)((int)(v * 20) % 127) + 0.5f;  // exact ties: d = 1
            if (b % 13 == 0) v = 0.0f;
            if (b % 17 == 0) v = j % 2 ? 1e-40f : -3e-39f;  // denormals
            x.push_back(v);
        }
    std::vector<uint8_t> got((size_t)blocks * 34), want((size_t)blocks * 34);
    quantize_row(GgmlType::Q8_0, x.data(), got.data(), (int64_t)x.size());
    for (int b = 0; b < blocks; ++b) reference(&x[(size_t)b * 32], &want[(size_t)b * 34]);
    for (int b = 0; b < blocks; ++b)
        ASSERT_EQ(std::memcmp(&got[(size_t)b * 34], &want[(size_t)b * 34], 34), 0) << "block " << b;
    // A NaN or an infinity in a block: the scalar code's bytes (its fmax skips the NaN), not a crash.
    std::vector<float> odd(64, 0.25f);
    odd[3] = std::nanf("");
    odd[40] = -INFINITY;
    std::vector<uint8_t> q(68);
    EXPECT_NO_THROW(quantize_row(GgmlType::Q8_0, odd.data(), q.data(), 64));
}

// The K-quant and IQ4 scale searches run 16 sub-blocks per AVX-512 call (ggml_quantize_x16.cpp): the bytes must be
// the scalar code's (itself llama.cpp's, tested above) for every type, on rows whose blocks do not fill the last call
// (one super-block of a pair, 21 IQ4_NL blocks), on values that stress the searches (constant and all-zero
// sub-blocks, a lone spike, exact ties on a 1/4 grid, denormals, values at the 1e-15 zero threshold, 1e4 and 1e-30
// scales, one-signed rows), and on a super-block with a NaN or an infinity (its call takes the scalar code).
TEST(GgufQuantize, VectorSearchesAreTheScalarCodesBytes) {
    std::mt19937 rng(11);
    std::normal_distribution<float> nd(0.0f, 1.0f);
    auto block_values = [&](int kind, int n, std::vector<float>& out) {
        for (int i = 0; i < n; ++i) {
            const float g = nd(rng);
            float v = g;
            switch (kind % 12) {
                case 1: v = g * 1e-3f; break;
                case 2: v = g * 1e4f; break;
                case 3: v = 0.0f; break;
                case 4: v = i % 37 == 5 ? 9.0f : 0.5f; break;  // constant with outliers
                case 5: v = std::fabs(g) + 0.1f; break;
                case 6: v = -std::fabs(g); break;
                case 7: v = std::round(g * 8.0f) / 4.0f; break;  // ties
                case 8: v = (i / 16) % 2 ? 0.0f : g; break;      // alternate all-zero sub-blocks
                case 9: v = i % 16 == 3 ? g * 50.0f : g * 0.01f; break;
                case 10: v = g * (i % 2 ? 1e-38f : 1e-30f); break;  // denormals and tiny scales
                case 11: v = g * 1e-15f; break;                     // at the zero threshold
                default: break;
            }
            out.push_back(v);
        }
    };
    const GgmlType types[] = {GgmlType::Q2_K, GgmlType::Q3_K, GgmlType::Q4_K, GgmlType::Q5_K, GgmlType::Q6_K,
                              GgmlType::IQ4_NL, GgmlType::IQ4_XS, GgmlType::Q8_0, GgmlType::Q4_0, GgmlType::Q5_1};
    for (const GgmlType t : types) {
        const GgmlTypeInfo& ti = ggml_type_info(t);
        for (const int nblocks : {1, 3, 21, 64}) {
            for (int round = 0; round < 4; ++round) {
                std::vector<float> x;
                for (int b = 0; b < nblocks; ++b) block_values(b + round * 5, ti.block, x);
                if (round == 3) {  // a NaN in one block, an infinity in another
                    x[(size_t)ti.block / 2 + 1] = std::nanf("");
                    if (nblocks > 2) x[(size_t)ti.block * 2 + 7] = -INFINITY;
                }
                const int64_t n = (int64_t)x.size();
                std::vector<uint8_t> got((size_t)(nblocks * ti.bytes)), want(got.size());
                quantize_row(t, x.data(), got.data(), n);
                quantize_row_scalar(t, x.data(), want.data(), n);
                for (int b = 0; b < nblocks; ++b)
                    ASSERT_EQ(std::memcmp(&got[(size_t)(b * ti.bytes)], &want[(size_t)(b * ti.bytes)], (size_t)ti.bytes), 0)
                        << ti.name << ", " << nblocks << " blocks, round " << round << ", block " << b;
            }
        }
    }
    // 2,000 random super-blocks of the four searched K types (normal values at random scales).
    std::uniform_real_distribution<float> ud(-20.0f, 10.0f);
    for (const GgmlType t : {GgmlType::Q2_K, GgmlType::Q4_K, GgmlType::Q5_K, GgmlType::Q6_K, GgmlType::IQ4_XS}) {
        const GgmlTypeInfo& ti = ggml_type_info(t);
        std::vector<float> x;
        for (int b = 0; b < 500; ++b) {
            const float scale = std::pow(2.0f, ud(rng));
            for (int i = 0; i < 256; ++i) x.push_back(nd(rng) * scale);
        }
        std::vector<uint8_t> got((size_t)(500 * ti.bytes)), want(got.size());
        quantize_row(t, x.data(), got.data(), (int64_t)x.size());
        quantize_row_scalar(t, x.data(), want.data(), (int64_t)x.size());
        EXPECT_EQ(got, want) << ti.name;
    }
}
