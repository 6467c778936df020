// Products with Q8_0 and Q4_0 weights (GGUF blocks kept as stored) at Stable Diffusion 1.5 shapes, against the same
// product with a bf16 weight: W8A8 (activations quantized per 32-block, int8 products on AVX-512 VNNI; the default
// where the CPU has VNNI) and weight-only (the layer dequantized to bf16 per call, then oneDNN). Shape letters as in
// bench_matmul.cpp / bench_conv.cpp.
#include <string>

#include "backends/cpu/ggml_quants.h"
#include "backends/cpu/quantized_matmul.h"
#include "bench_util.h"
#include "ops/conv.h"
#include "ops/matmul.h"

namespace nuance::bench {
namespace {

enum class Mode { BF16Weight, Q8WeightOnly, Q8W8A8, Q4WeightOnly, Q4W8A8 };
const char* mode_tag(Mode m) {
    switch (m) {
        case Mode::BF16Weight: return "bf16";
        case Mode::Q8WeightOnly: return "q8_0_wonly";
        case Mode::Q8W8A8: return "q8_0_w8a8";
        case Mode::Q4WeightOnly: return "q4_0_wonly";
        default: return "q4_0_w8a8";
    }
}
bool is_w8a8(Mode m) { return m == Mode::Q8W8A8 || m == Mode::Q4W8A8; }

Tensor weight_for(const Tensor& w, Mode m) {
    if (m == Mode::BF16Weight) return w.to(DType::BF16);
    const Shape s = w.shape();
    const int64_t rows = s[0], cols = w.numel() / rows;
    const GgmlType t = m == Mode::Q8WeightOnly || m == Mode::Q8W8A8 ? GgmlType::Q8_0 : GgmlType::Q4_0;
    return quantized_weight_tensor(quantize(w.reshape({rows, cols}), t), s);
}

struct Mode8A8 {  // W8A8 (on by default with VNNI) on or off for the benchmark's duration
    bool was = cpu::q8_w8a8();
    explicit Mode8A8(bool on) { cpu::set_q8_w8a8(on); }
    ~Mode8A8() { cpu::set_q8_w8a8(was); }
};

struct QLinearCase {
    const char* name;
    int64_t M, K, N;
};
constexpr QLinearCase kLinear[] = {
    {"attn_qkv_8192x320x320", 8192, 320, 320},
    {"ff_out_8192x1280x320", 8192, 1280, 320},
    {"geglu_2048x640x5120", 2048, 640, 5120},
    {"attn_512x1280x1280", 512, 1280, 1280},
};

void bm_qlinear(benchmark::State& state, QLinearCase c, Mode m) {
    const Tensor x = randn({c.M, c.K}, 1);
    const Tensor w = weight_for(randn({c.N, c.K}, 2), m);
    const Tensor b = randn({c.N}, 3);
    Mode8A8 on(is_w8a8(m));
    for (auto _ : state) {
        Tensor y = linear(x, w, b, Precision::BF16);
        benchmark::DoNotOptimize(y);
    }
    report_flops(state, 2.0 * (double)c.M * (double)c.K * (double)c.N);
}

struct QConvCase {
    const char* name;
    int64_t N, C, O, H, W;
};
constexpr QConvCase kConv[] = {
    {"unet_320_64x64_n2", 2, 320, 320, 64, 64},
    {"unet_1280_16x16_n2", 2, 1280, 1280, 16, 16},
};

void bm_qconv(benchmark::State& state, QConvCase c, Mode m) {
    const Tensor x = randn({c.N, c.C, c.H, c.W}, 1).channels_last();
    const Tensor w = weight_for(randn({c.O, c.C, 3, 3}, 2), m);
    const Tensor b = randn({c.O}, 3);
    Mode8A8 on(is_w8a8(m));
    for (auto _ : state) {
        Tensor y = conv2d(x, w, b, Conv2dParams::same(1), Precision::BF16);
        benchmark::DoNotOptimize(y);
    }
    report_flops(state, 2.0 * (double)c.N * (double)c.O * (double)c.H * (double)c.W * (double)c.C * 9.0);
}

// The block quantizers (what `nuance quantize` and `--type` run per weight): one 1280 x 2560 f32 weight (SD1.5's
// largest linear rows), values per second of input.
void bm_quantize(benchmark::State& state, GgmlType t) {
    const Tensor w = randn({1280, 2560}, 4);
    for (auto _ : state) {
        QuantizedTensor q = quantize(w, t);
        benchmark::DoNotOptimize(q);
    }
    report_bytes(state, 4.0 * (double)w.numel());
}

const int kRegistered = [] {
    for (GgmlType t : {GgmlType::Q8_0, GgmlType::Q4_0, GgmlType::Q5_0, GgmlType::Q2_K, GgmlType::Q3_K, GgmlType::Q4_K,
                       GgmlType::Q5_K, GgmlType::Q6_K, GgmlType::IQ4_NL, GgmlType::IQ4_XS})
        add(std::string("quantize/") + ggml_type_info(t).name, [t](benchmark::State& s) { bm_quantize(s, t); });
    for (Mode m : {Mode::BF16Weight, Mode::Q8WeightOnly, Mode::Q8W8A8, Mode::Q4WeightOnly, Mode::Q4W8A8}) {
        for (const QLinearCase& c : kLinear)
            add(std::string("qlinear/") + c.name + "/" + mode_tag(m), [c, m](benchmark::State& s) { bm_qlinear(s, c, m); });
        for (const QConvCase& c : kConv)
            add(std::string("qconv3x3/") + c.name + "/" + mode_tag(m), [c, m](benchmark::State& s) { bm_qconv(s, c, m); });
    }
    return 0;
}();

}  // namespace
}  // namespace nuance::bench
