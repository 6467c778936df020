#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "../test_util.h"
#include "backends/cpu/ggml_quants.h"
#include "eval/golden_case.h"
#include "io/gguf.h"
#include "io/gguf_quantize.h"
#include "io/safetensors.h"
#include "models/unet/unet2d.h"

using namespace nuance;
using ::testing::HasSubstr;

namespace {
const std::string kData = std::string(NUANCE_TEST_DATA);
const GgmlType kTypes[] = {GgmlType::Q8_0, GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q5_0, GgmlType::Q5_1};

std::string tmp(const std::string& name) { return ::testing::TempDir() + "/nuance_gguf_q_" + name; }
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
    EXPECT_EQ(test::error_of([&] { quantize_to_gguf(in, out, GgmlType::Q2_K); }),
              "quantize: type Q2_K has no quantizer yet (available: q8_0, q4_0, q4_1, q5_0, q5_1, f16, bf16)");
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
    for (GgmlType type : {GgmlType::Q8_0, GgmlType::Q5_1, GgmlType::Q5_0, GgmlType::Q4_1, GgmlType::Q4_0}) {
        const std::string out = tmp(std::string("err_") + ggml_type_info(type).name + ".gguf");
        quantize_to_gguf(in, out, type);
        const std::vector<float> got = run(load_gguf(out).tensors).to_vector();
        double max_abs = 0, sum = 0;
        for (size_t i = 0; i < got.size(); ++i) {
            const double e = std::fabs((double)got[i] - ref[i]);
            max_abs = std::max(max_abs, e);
            sum += e;
        }
        std::printf("[ quant err ] %-5s max_abs %.6f mean_abs %.6f (eps max |ref| ~3.5)\n", ggml_type_info(type).name,
                    max_abs, sum / (double)got.size());
        EXPECT_TRUE(std::isfinite(max_abs));
        EXPECT_LT(max_abs, 1.0) << ggml_type_info(type).name;
        if (type == GgmlType::Q8_0) EXPECT_LT(max_abs, 0.1);
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
    EXPECT_THAT(bad.out, HasSubstr("--type 'q3': expected q8_0, q4_0, q4_1, q5_0, q5_1, f16 or bf16"));
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
