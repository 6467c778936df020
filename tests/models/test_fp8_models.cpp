// FP8 model files (flux1-dev-fp8, sd3.5_large_fp8_scaled, SDXL fp8 checkpoints): their matrices stay FP8 bytes in
// memory (quantized-weight handles, widened per product) in every family, ComfyUI's scaled FP8 files carry their
// per-tensor scale in the handle, and the images equal those of an F16 file holding the same values.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>

#include "../raw_safetensors.h"
#include "../test_util.h"
#include "adapters/lora.h"
#include "backends/backend.h"
#include "core/dtype.h"
#include "core/fp8.h"
#include "core/quantized_weight.h"
#include "io/image.h"
#include "io/safetensors.h"
#include "io/weights.h"

namespace nuance {
namespace {

using ::testing::HasSubstr;

std::string tmp(const std::string& name) { return std::string(NUANCE_SCRATCH_DIR) + "/nuance_fp8m_" + name; }

using Raw = test::RawTensor;
constexpr auto write_raw = test::write_raw_safetensors;

std::vector<float> values(const Tensor& t) { return t.f32().contiguous().to_vector(); }

float e4m3(uint8_t c) { return f16_to_f32(f8e4m3fn_to_f16(c)); }

// `src` (F32/F16 file) written twice: `fp8` with every float matrix (rank >= 2) as float8_e4m3fn codes (scaled: of
// w / s, s a power of two per tensor, with X.scale_weight and the scaled_fp8 marker, as ComfyUI's scaled files), and
// `ref` with the very values the FP8 file means, as F16 (exact: FP8 values times a power of two are f16 values here).
void write_fp8_pair(const std::string& src, const std::string& fp8, const std::string& ref, bool scaled) {
    const WeightFile w = load_safetensors(src);
    std::vector<Raw> a, b;
    if (scaled) a.push_back({"model.diffusion_model.scaled_fp8", "F8_E4M3", {0}, ""});
    for (const auto& [k, t] : w.tensors) {
        const Tensor c = t.f32().contiguous();
        const float* p = c.data<float>();
        const int64_t n = c.numel();
        if (c.dim() < 2 || n == 0) {
            const std::string raw((const char*)p, (size_t)n * 4);
            a.push_back({k, "F32", c.shape(), raw});
            b.push_back({k, "F32", c.shape(), raw});
            continue;
        }
        // ComfyUI scales the Linear / conv weights (X.weight); other FP8 tensors have no scale.
        const bool has_scale = scaled && k.size() > 7 && k.compare(k.size() - 7, 7, ".weight") == 0;
        float s = 1.0f;
        if (has_scale) {
            float m = 0;
            for (int64_t i = 0; i < n; ++i) m = std::max(m, std::fabs(p[i]));
            s = m > 0 ? std::ldexp(1.0f, (int)std::ceil(std::log2(m / 448.0f))) : 1.0f;
        }
        std::string codes((size_t)n, '\0'), h((size_t)n * 2, '\0');
        for (int64_t i = 0; i < n; ++i) {
            const uint8_t code = f32_to_f8e4m3fn(p[i] / s);
            codes[(size_t)i] = (char)code;
            const uint16_t x = f32_to_f16(e4m3(code) * s);
            ASSERT_EQ(f16_to_f32(x), e4m3(code) * s) << k;  // exact
            std::memcpy(&h[2 * (size_t)i], &x, 2);
        }
        a.push_back({k, "F8_E4M3", c.shape(), codes});
        if (has_scale)
            a.push_back({k.substr(0, k.size() - 7) + ".scale_weight", "F32", {1}, std::string((const char*)&s, 4)});
        b.push_back({k, "F16", c.shape(), h});
    }
    write_raw(fp8, a);
    write_raw(ref, b);
}

std::string make_random(const std::string& fam, const std::string& extra = "") {
    const std::string p = tmp("src_" + fam + ".safetensors");
    const test::CliRun r = test::run_cli(" make-random --tiny --dtype f32 --family " + fam + extra + " -o " + p);
    EXPECT_EQ(r.code, 0) << r.out;
    return p;
}

Image generate_png(const std::string& args, const std::string& out) {
    const test::CliRun r = test::run_cli(" generate -q -t 1 --steps 2 -s 3 -o " + out + " " + args);
    EXPECT_EQ(r.code, 0) << args << "\n" << r.out;
    return read_image(out);
}

int max_pixel_diff(const Image& a, const Image& b) {
    EXPECT_EQ(a.pixels.size(), b.pixels.size());
    int m = 0;
    for (size_t i = 0; i < std::min(a.pixels.size(), b.pixels.size()); ++i)
        m = std::max(m, std::abs((int)a.pixels[i] - (int)b.pixels[i]));
    return m;
}

TEST(Fp8Encode, NearestCodeTiesToEven) {
    // torch 2.5.1: torch.tensor([0.1, -0.3, 1.0, 447.0, 2**-10, 3 * 2**-10, 0.0025]).to(torch.float8_e4m3fn)
    // .view(torch.uint8) = [29, 170, 56, 126, 0, 2, 1].
    EXPECT_EQ(f32_to_f8e4m3fn(0.1f), 29);
    EXPECT_EQ(f32_to_f8e4m3fn(-0.3f), 170);
    EXPECT_EQ(f32_to_f8e4m3fn(1.0f), 56);
    EXPECT_EQ(f32_to_f8e4m3fn(447.0f), 126);
    EXPECT_EQ(f32_to_f8e4m3fn(0.0009765625f), 0);
    EXPECT_EQ(f32_to_f8e4m3fn(0.0029296875f), 2);
    EXPECT_EQ(f32_to_f8e4m3fn(0.0025f), 1);
    EXPECT_EQ(f32_to_f8e4m3fn(1e6f), 0x7e);   // saturates
    EXPECT_EQ(f32_to_f8e4m3fn(-1e6f), 0xfe);
    EXPECT_EQ(f32_to_f8e4m3fn(NAN), 0x7f);
    // Every code maps to itself, and the midpoints between neighbours go to the even code.
    for (int c = 0; c < 0x7f; ++c) {
        EXPECT_EQ(f32_to_f8e4m3fn(e4m3((uint8_t)c)), c);
        EXPECT_EQ(f32_to_f8e4m3fn(-e4m3((uint8_t)c)), c | 0x80);
        if (c + 1 < 0x7f) {
            const float mid = 0.5f * (e4m3((uint8_t)c) + e4m3((uint8_t)(c + 1)));
            EXPECT_EQ(f32_to_f8e4m3fn(mid), (c & 1) ? c + 1 : c) << c;
        }
    }
}

// A scale travels with the handle: dequantization, products (f32 and bf16) and lookups apply it; a second scale
// multiplies; a bad one is refused.
TEST(Fp8Scaled, HandleScaleAppliesEverywhere) {
    const std::string p = tmp("scale.safetensors");
    std::string codes(64, '\0');
    for (int i = 0; i < 64; ++i) codes[(size_t)i] = (char)((i * 7) % 0x7e);
    write_raw(p, {{"w", "F8_E4M3", {4, 16}, codes}});
    const WeightFile f = load_safetensors(p, Fp8Load::KeepMatrices);
    const Tensor h = quantized_weight_with_scale(f.tensors.at("w"), 0.3f);
    EXPECT_EQ(quantized_weight_str(h), "F8_E4M3[4, 16]*0.3");
    const Tensor d = dequantize_weight(h);
    for (int i = 0; i < 64; ++i) EXPECT_EQ(d.data<float>()[i], e4m3((uint8_t)codes[(size_t)i]) * 0.3f) << i;
    const Tensor twice = quantized_weight_with_scale(h, 2.0f);
    EXPECT_EQ(dequantize_weight(twice).data<float>()[5], e4m3((uint8_t)codes[5]) * (0.3f * 2.0f));
    EXPECT_EQ(dequantize_weight(f.tensors.at("w")).data<float>()[5], e4m3((uint8_t)codes[5]));  // unchanged
    const Tensor x = Tensor::from_vector(std::vector<float>(32, 0.5f), {2, 16});
    Backend& cpu = backend_for(Device::cpu());
    for (Precision pr : {Precision::FP32, Precision::BF16}) {
        const Tensor y = cpu.linear(x, h, Tensor(), pr, DType::F32);
        const Tensor want = cpu.linear(x, d.to(pr == Precision::BF16 ? DType::BF16 : DType::F32).f32(), Tensor(),
                                       Precision::FP32, DType::F32);
        for (int64_t i = 0; i < y.numel(); ++i)
            EXPECT_NEAR(y.data<float>()[i], want.data<float>()[i], 1e-5f * (1 + std::fabs(want.data<float>()[i])));
    }
    const Tensor e = cpu.embedding(Tensor::from_ids({2}, {1}), h);
    for (int k = 0; k < 16; ++k) EXPECT_EQ(e.data<float>()[k], d.data<float>()[32 + k]);
    EXPECT_THAT(test::error_of([&] { quantized_weight_with_scale(h, 0.0f); }), HasSubstr("not a finite, non-zero"));
    EXPECT_THAT(test::error_of([&] { quantized_weight_with_scale(h, NAN); }), HasSubstr("not a finite, non-zero"));
    EXPECT_THAT(test::error_of([&] { quantized_weight_with_scale(Tensor::zeros({2, 2}), 2.0f); }),
                HasSubstr("is not a quantized weight"));
}

TEST(Fp8Scaled, FileScalesAreFoldedAndErrorsNamed) {
    const std::string p = tmp("scaled.safetensors");
    std::string codes(32, '\0');
    for (int i = 0; i < 32; ++i) codes[(size_t)i] = (char)(i + 40);
    const float s = 0.0123f;
    const std::string sb((const char*)&s, 4);
    std::vector<Raw> ts = {{"scaled_fp8", "F8_E4M3", {0}, ""},
                           {"a.weight", "F8_E4M3", {2, 16}, codes},
                           {"a.scale_weight", "F32", {1}, sb},
                           {"a.scale_input", "F32", {1}, sb},
                           {"b.weight", "F8_E4M3", {32}, codes},
                           {"b.scale_weight", "F32", {}, sb}};
    write_raw(p, ts);
    for (Fp8Load mode : {Fp8Load::KeepMatrices, Fp8Load::ToF16}) {
        const WeightFile f = load_safetensors(p, mode);
        EXPECT_EQ(f.tensors.size(), 2u);  // the marker, scales and input scales are gone
        const Tensor a = dequantize_weight(f.tensors.at("a.weight")).f32();
        const Tensor b = f.tensors.at("b.weight").f32();  // rank 1: widened, scaled into F16
        for (int i = 0; i < 32; ++i) {
            const float v = e4m3((uint8_t)codes[(size_t)i]) * s;
            if (mode == Fp8Load::KeepMatrices) EXPECT_EQ(a.data<float>()[i], v) << i;
            else EXPECT_EQ(a.data<float>()[i], f16_to_f32(f32_to_f16(v))) << i;
            EXPECT_EQ(b.data<float>()[i], f16_to_f32(f32_to_f16(v))) << i;
        }
        EXPECT_EQ(is_quantized_storage(f.tensors.at("a.weight")), mode == Fp8Load::KeepMatrices);
    }
    // Without the marker nothing is folded (a model may name a tensor scale_weight).
    write_raw(p, {ts[1], ts[2]});
    EXPECT_EQ(load_safetensors(p).tensors.size(), 2u);
    // An orphan scale, a scale of two values, a scale that overflows f16.
    write_raw(p, {ts[0], {"c.scale_weight", "F32", {1}, sb}});
    EXPECT_THAT(test::error_of([&] { load_weights(p); }),
                HasSubstr("'c.scale_weight' scales 'c.weight', which is not in the file"));
    write_raw(p, {ts[0], ts[1], {"a.scale_weight", "F32", {2}, sb + sb}});
    EXPECT_THAT(test::error_of([&] { load_weights(p); }), HasSubstr("'a.scale_weight' must be one float"));
    const float big = 1e30f;
    write_raw(p, {ts[0], ts[1], {"a.scale_weight", "F32", {1}, std::string((const char*)&big, 4)}});
    EXPECT_THAT(test::error_of([&] { load_weights(p); }),
                HasSubstr("'a.weight' times its scale_weight 1e+30 is not finite in f16"));
}

// Every family's files with FP8 matrices (transformers, UNets, text encoders, VAEs) load with the matrices kept as
// FP8, and generate the image of an F16 file of the same values; the scaled variant too.
struct Fp8Case {
    std::string name;
    std::vector<std::string> files;  // [0] the model, then component files as "--flag=path"
    std::string args;
};

Fp8Case fp8_case(const std::string& name) {
    if (name == "sd35") return {name, {make_random("sd35-medium", " --with-text-encoders")}, "-p 'a fox' -W 32 -H 32"};
    if (name == "flux")
        return {name,
                {make_random("flux-schnell"), "--clip-l=" + make_random("clip-l"), "--t5xxl=" + make_random("t5xxl"),
                 "--vae=" + make_random("vae16")},
                "-p 'a fox' -W 32 -H 32"};
    if (name == "dit") return {name, {make_random("dit-xl-2-256"), "--vae=" + make_random("vae")}, "--class-label 3 -W 16 -H 16"};
    if (name == "sd15") return {name, {make_random("sd15")}, "-p 'a fox' -W 32 -H 32"};
    return {name, {make_random("sdxl")}, "-p 'a fox' -W 64 -H 64"};
}

class Fp8Models : public ::testing::TestWithParam<std::string> {};

TEST_P(Fp8Models, KeepFp8AndDrawTheF16FilesImage) {
    const Fp8Case c = fp8_case(GetParam());
    for (bool scaled : {false, true}) {
        SCOPED_TRACE(c.name + (scaled ? " scaled" : ""));
        std::string fp8_args = c.args, ref_args = c.args;
        for (size_t i = 0; i < c.files.size(); ++i) {
            std::string flag, src = c.files[i];
            if (i > 0) {
                flag = src.substr(0, src.find('='));
                src = src.substr(src.find('=') + 1);
            }
            const std::string tag = c.name + std::to_string(i) + (scaled ? "s" : "");
            const std::string f8 = tmp(tag + "_fp8.safetensors"), f16 = tmp(tag + "_f16.safetensors");
            write_fp8_pair(src, f8, f16, scaled && i == 0);
            fp8_args += " " + (i == 0 ? std::string("-m") : flag) + " " + f8;
            ref_args += " " + (i == 0 ? std::string("-m") : flag) + " " + f16;
            if (i == 0) {  // the model file's matrices are kept as FP8 handles
                const WeightFile w = load_weights(f8);
                int64_t kept = 0;
                for (const auto& [k, t] : w.tensors) kept += is_quantized_storage(t);
                EXPECT_GT(kept, 0);
            }
        }
        // fp32: the same values in the same precision (the products' summation order may differ: 1 level).
        const Image a32 = generate_png(fp8_args + " --precision fp32", tmp(c.name + "_a32.png"));
        const Image b32 = generate_png(ref_args + " --precision fp32", tmp(c.name + "_b32.png"));
        EXPECT_LE(max_pixel_diff(a32, b32), 1);
        // bf16: the FP8 weights take the quantized-weight kernels (widened per call, unpacked products, convolutions
        // through im2col), whose bf16 roundings fall elsewhere than the packed F16 path's, so the images differ by
        // bf16's own error: at most twice what bf16 changes in the F16 file's image (measured: SDXL 5 and 12 vs 8 and
        // 9 levels; 0-1 for the others).
        const Image a16 = generate_png(fp8_args + " --precision bf16", tmp(c.name + "_a16.png"));
        const Image b16 = generate_png(ref_args + " --precision bf16", tmp(c.name + "_b16.png"));
        EXPECT_LE(max_pixel_diff(a16, b16), 2 * std::max(1, max_pixel_diff(b32, b16)));
    }
}

// make-random --dtype fp8: the drawn weight matrices as F8_E4M3 (the nearest codes of the values a bf16 file of the
// same seed holds), the rest bf16; the file runs; families without FP8 files are refused.
TEST(Fp8MakeRandom, MatricesAreTheNearestCodesAndTheFileRuns) {
    const std::string f8 = tmp("mr_fp8.safetensors"), bf = tmp("mr_bf16.safetensors");
    for (const auto& [path, dtype] : {std::pair{f8, std::string("fp8")}, std::pair{bf, std::string("bf16")}}) {
        const test::CliRun r = test::run_cli(" make-random --tiny --family flux-schnell --dtype " + dtype + " -o " + path);
        ASSERT_EQ(r.code, 0) << r.out;
    }
    const WeightFile a = load_safetensors(f8, Fp8Load::KeepMatrices), b = load_safetensors(bf);
    ASSERT_EQ(a.tensors.size(), b.tensors.size());
    int64_t kept = 0;
    for (const auto& [k, t] : a.tensors) {
        const Tensor want = b.tensors.at(k).f32().contiguous();
        if (!is_quantized_storage(t)) {
            EXPECT_EQ(t.dtype(), DType::BF16) << k;
            continue;
        }
        ++kept;
        EXPECT_TRUE(k.size() > 7 && k.compare(k.size() - 7, 7, ".weight") == 0) << k;
        const Tensor got = dequantize_weight(t).contiguous();
        for (int64_t i = 0; i < got.numel(); ++i) {
            const float w = want.data<float>()[i], g = got.data<float>()[i];
            ASSERT_LE(std::fabs(g - w), std::fabs(w) / 16 + std::ldexp(1.0f, -10)) << k << " " << i;  // half a step
        }
    }
    EXPECT_GT(kept, 10);
    const std::string parts = " --clip-l " + make_random("clip-l") + " --t5xxl " + make_random("t5xxl") + " --vae " +
                              make_random("vae16");
    const test::CliRun info = test::run_cli(" info " + f8 + parts);
    EXPECT_EQ(info.code, 0) << info.out;
    EXPECT_THAT(info.out, HasSubstr("F8_E4M3="));  // the stored type, not the handle's U8
    EXPECT_THAT(info.out, ::testing::Not(HasSubstr("U8=")));
    const test::CliRun g =
        test::run_cli(" generate -q -t 1 --steps 1 -W 32 -H 32 -p x -m " + f8 + parts + " -o " + tmp("mr.png"));
    EXPECT_EQ(g.code, 0) << g.out;
    const test::CliRun bad = test::run_cli(" make-random --tiny --family sd15 --dtype fp8 -o " + tmp("x.safetensors"));
    EXPECT_EQ(bad.code, 2) << bad.out;
    EXPECT_THAT(bad.out, HasSubstr("--dtype fp8 is for the transformer families"));
}

// An FP8 LoRA file (kohya names, up/down in float8_e4m3fn) reads as the F16 file of the same values: the adapter
// matrices are widened at load (small, and the LoRA math reads them).
TEST(Fp8Lora, Fp8LoraFileReadsAsItsF16Values) {
    const std::string src = std::string(NUANCE_TEST_DATA) + "/golden/lora/lora_sd15_kohya.safetensors";
    const std::string f8 = tmp("lora_fp8.safetensors"), f16 = tmp("lora_f16.safetensors");
    write_fp8_pair(src, f8, f16, false);
    const LoraFile a = load_lora(f8), b = load_lora(f16);
    ASSERT_EQ(a.modules.size(), b.modules.size());
    ASSERT_GT(a.modules.size(), 0u);
    for (size_t i = 0; i < a.modules.size(); ++i) {
        ASSERT_EQ(a.modules[i].name, b.modules[i].name);
        for (const auto& [role, t] : a.modules[i].t) {
            EXPECT_FALSE(is_quantized_storage(t)) << a.modules[i].name << " " << role;
            EXPECT_EQ(values(t), values(b.modules[i].t.at(role))) << a.modules[i].name << " " << role;
        }
        EXPECT_EQ(a.modules[i].scale(), b.modules[i].scale());
    }
}

INSTANTIATE_TEST_SUITE_P(Families, Fp8Models, ::testing::Values("sd35", "flux", "dit", "sd15", "sdxl"));

}  // namespace
}  // namespace nuance
