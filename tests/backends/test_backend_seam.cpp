// The backend seam (backends/backend.h): a recording backend registered for the test device wraps the CPU one and
// counts its calls per kernel; a tiny UNet, MMDiT and Flux run on that device. Every kernel call of the forward must
// reach it (the CPU backend, also wrapped, sees only the calls whose operands all live on the host), and the outputs
// equal the CPU ones bit for bit. Also: host access to device memory is refused naming the op and the device, and
// mixing two devices in one op is an error.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <string>

#include "backends/backend.h"
#include "eval/golden_case.h"
#include "io/weights.h"
#include "models/flux/flux_load.h"
#include "models/flux/flux_transformer.h"
#include "models/mmdit/mmdit_load.h"
#include "models/unet/unet2d.h"
#include "nn/module.h"
#include "ops/ops.h"
#include "../test_util.h"

namespace nuance {
namespace {

using ::testing::HasSubstr;

const std::string kGolden = std::string(NUANCE_TEST_DATA) + "/golden/";
constexpr Device kTest{DeviceType::Test, 0};

thread_local int t_depth = 0;  // > 0 while a recording kernel runs (its nested CPU calls are not counted again)

// Host view of test-device memory: the device storage keeps the host storage it wraps as its keepalive.
Tensor host_alias(const Tensor& t) {
    if (!t.defined() || t.device().is_cpu()) return t;
    return t.with_storage(std::static_pointer_cast<Storage>(t.storage()->keepalive()));
}
Tensor device_alias(const Tensor& t) {
    if (!t.defined() || !t.device().is_cpu()) return t;
    const auto& s = t.storage();
    return t.with_storage(Storage::wrap_device(s->data(), s->size(), s, kTest));
}

// Wraps the built-in CPU backend. retag: operands on the test device are handed to the CPU kernels as host views and
// results come back on the test device (the test device's memory is host memory that only this backend reads).
class RecordingBackend final : public Backend {
public:
    explicit RecordingBackend(bool retag) : retag_(retag) {}
    std::map<std::string, int64_t> calls() const {
        std::lock_guard<std::mutex> l(mu_);
        return calls_;
    }
    void reset() {
        std::lock_guard<std::mutex> l(mu_);
        calls_.clear();
    }
    const char* name() const override { return retag_ ? "recording-test" : "recording-cpu"; }

    std::shared_ptr<Storage> allocate(size_t bytes, Device device) override {
        auto host = Storage::allocate(bytes);
        return Storage::wrap_device(host->data(), bytes, host, device);
    }
    void copy(const Tensor& dst, const Tensor& src) override {
        Tensor d = host_alias(dst);
        d.copy_(host_alias(src));
    }
    Precision default_precision() const override { return cpu().default_precision(); }
    void clear_packed_weights() override {}  // shares the CPU's caches (cleared through the CPU backend)
    size_t packed_weights_bytes() const override { return 0; }

    Tensor linear(const Tensor& x, const Tensor& w, const Tensor& b, Precision c, DType o) override {
        return run("linear", [&] { return cpu().linear(h(x), h(w), h(b), c, o); });
    }
    Tensor matmul(const Tensor& a, const Tensor& b, Precision c) override {
        return run("matmul", [&] { return cpu().matmul(h(a), h(b), c); });
    }
    Tensor conv2d(const Tensor& x, const Tensor& w, const Tensor& b, const Conv2dParams& p, Precision c) override {
        return run("conv2d", [&] { return cpu().conv2d(h(x), h(w), h(b), p, c); });
    }
    Conv2dGrads conv2d_backward(const Tensor& x, const Tensor& w, const Tensor& g, const Conv2dParams& p, bool a,
                                bool b, bool c, Precision pr) override {
        count("conv2d_backward");
        Depth d;
        Conv2dGrads r = cpu().conv2d_backward(h(x), h(w), h(g), p, a, b, c, pr);
        return {out(r.dx), out(r.dw), out(r.db)};
    }
    Tensor scaled_dot_product_attention(const Tensor& q, const Tensor& k, const Tensor& v, bool causal, float s,
                                        const Tensor& bias) override {
        return run("sdpa", [&] { return cpu().scaled_dot_product_attention(h(q), h(k), h(v), causal, s, h(bias)); });
    }
    Tensor multi_head_attention(const Tensor& q, const Tensor& k, const Tensor& v, int64_t heads, bool causal,
                                float s, Precision c) override {
        return run("multi_head_attention",
                   [&] { return cpu().multi_head_attention(h(q), h(k), h(v), heads, causal, s, c); });
    }
    Tensor group_norm(const Tensor& x, int64_t g, const Tensor& w, const Tensor& b, float eps, bool silu,
                      DType o) override {
        return run("group_norm", [&] { return cpu().group_norm(h(x), g, h(w), h(b), eps, silu, o); });
    }
    NormGrads group_norm_backward(const Tensor& x, const Tensor& w, const Tensor& b, const Tensor& g, int64_t groups,
                                  float eps, bool silu) override {
        count("group_norm_backward");
        Depth d;
        NormGrads r = cpu().group_norm_backward(h(x), h(w), h(b), h(g), groups, eps, silu);
        return {out(r.dx), out(r.dw), out(r.db)};
    }
    Tensor layer_norm(const Tensor& x, const Tensor& w, const Tensor& b, float eps, DType o) override {
        return run("layer_norm", [&] { return cpu().layer_norm(h(x), h(w), h(b), eps, o); });
    }
    Tensor rms_norm(const Tensor& x, const Tensor& w, float eps) override {
        return run("rms_norm", [&] { return cpu().rms_norm(h(x), h(w), eps); });
    }
    Tensor softmax(const Tensor& x) override { return run("softmax", [&] { return cpu().softmax(h(x)); }); }
    Tensor layer_norm_modulate(const Tensor& x, const Tensor& sh, const Tensor& sc, float eps, DType o) override {
        return run("layer_norm_modulate", [&] { return cpu().layer_norm_modulate(h(x), h(sh), h(sc), eps, o); });
    }
    Tensor gated_residual(const Tensor& x, const Tensor& g, const Tensor& y) override {
        return run("gated_residual", [&] { return cpu().gated_residual(h(x), h(g), h(y)); });
    }
    Tensor unary(UnaryOp op, const Tensor& a, float p0, float p1, DType o) override {
        return run(std::string("unary.") + unary_op_name(op), [&] { return cpu().unary(op, h(a), p0, p1, o); });
    }
    Tensor binary(BinaryOp op, const Tensor& a, const Tensor& b) override {
        return run(std::string("binary.") + binary_op_name(op), [&] { return cpu().binary(op, h(a), h(b)); });
    }
    Tensor geglu(const Tensor& x, DType o) override { return run("geglu", [&] { return cpu().geglu(h(x), o); }); }
    Tensor activation_backward(UnaryOp op, const Tensor& x, const Tensor& g) override {
        return run(std::string("activation_backward.") + unary_op_name(op),
                   [&] { return cpu().activation_backward(op, h(x), h(g)); });
    }
    void add_(Tensor& a, const Tensor& b) override {
        count("add_");
        Depth d;
        Tensor ha = h(a);
        cpu().add_(ha, h(b));
    }
    void mul_(Tensor& a, float s) override {
        count("mul_");
        Depth d;
        Tensor ha = h(a);
        cpu().mul_(ha, s);
    }
    void axpy_(Tensor& a, float alpha, const Tensor& b) override {
        count("axpy_");
        Depth d;
        Tensor ha = h(a);
        cpu().axpy_(ha, alpha, h(b));
    }
    Tensor sum(const Tensor& a, int64_t dim, bool keep) override {
        return run("sum", [&] { return cpu().sum(h(a), dim, keep); });
    }
    double sum_all(const Tensor& a) override {
        count("sum_all");
        Depth d;
        return cpu().sum_all(h(a));
    }
    float max_abs(const Tensor& a) override {
        count("max_abs");
        Depth d;
        return cpu().max_abs(h(a));
    }
    float max_abs_diff(const Tensor& a, const Tensor& b) override {
        count("max_abs_diff");
        Depth d;
        return cpu().max_abs_diff(h(a), h(b));
    }
    Tensor rope_frequencies(const Tensor& ids, const std::vector<int64_t>& axes, double theta) override {
        return run("rope_frequencies", [&] { return cpu().rope_frequencies(h(ids), axes, theta); });
    }
    Tensor apply_rope(const Tensor& x, const Tensor& f, int64_t heads, DType o) override {
        return run("apply_rope", [&] { return cpu().apply_rope(h(x), h(f), heads, o); });
    }
    Tensor rms_norm_rope(const Tensor& x, const Tensor& w, float eps, const Tensor& f, int64_t heads,
                         DType o) override {
        return run("rms_norm_rope", [&] { return cpu().rms_norm_rope(h(x), h(w), eps, h(f), heads, o); });
    }
    Tensor cat(const std::vector<Tensor>& ts, int64_t dim) override {
        return run("cat", [&] {
            std::vector<Tensor> hs;
            for (const Tensor& t : ts) hs.push_back(h(t));
            return cpu().cat(hs, dim);
        });
    }
    Tensor pad2d(const Tensor& x, int64_t l, int64_t r, int64_t t, int64_t b, float v) override {
        return run("pad2d", [&] { return cpu().pad2d(h(x), l, r, t, b, v); });
    }
    Tensor interpolate_nearest(const Tensor& x, int64_t oh, int64_t ow, DType o) override {
        return run("interpolate_nearest", [&] { return cpu().interpolate_nearest(h(x), oh, ow, o); });
    }
    Tensor embedding(const Tensor& ids, const Tensor& w) override {
        return run("embedding", [&] { return cpu().embedding(h(ids), h(w)); });
    }
    Tensor timestep_embedding(const Tensor& t, int64_t dim, bool flip, float shift, float scale,
                              int64_t max_period) override {
        return run("timestep_embedding",
                   [&] { return cpu().timestep_embedding(h(t), dim, flip, shift, scale, max_period); });
    }
    Tensor dequantize(GgmlType type, const Tensor& packed, const Shape& shape) override {
        return run("dequantize", [&] { return cpu().dequantize(type, h(packed), shape); });
    }

private:
    struct Depth {
        Depth() { ++t_depth; }
        ~Depth() { --t_depth; }
    };
    static Backend& cpu() { return cpu_backend(); }
    Tensor h(const Tensor& t) const { return retag_ ? host_alias(t) : t; }
    Tensor out(const Tensor& t) const { return retag_ ? device_alias(t) : t; }
    void count(const std::string& k) {
        if (!retag_ && t_depth > 0) return;  // a CPU call made inside a recorded kernel
        std::lock_guard<std::mutex> l(mu_);
        ++calls_[k];
    }
    template <class F>
    Tensor run(const std::string& k, F&& f) {
        count(k);
        Depth d;
        return out(f());
    }
    bool retag_;
    mutable std::mutex mu_;
    std::map<std::string, int64_t> calls_;
};

// Registers the recording backends for the test device and the CPU for the test's scope.
struct SeamScope {
    RecordingBackend dev{true}, cpu{false};
    SeamScope() {
        register_backend(DeviceType::Test, &dev);
        register_backend(DeviceType::Cpu, &cpu);
    }
    ~SeamScope() {
        register_backend(DeviceType::Cpu, nullptr);
        register_backend(DeviceType::Test, nullptr);
    }
};

std::string calls_str(const std::map<std::string, int64_t>& m) {
    std::string s;
    for (const auto& [k, n] : m) s += k + "=" + std::to_string(n) + " ";
    return s;
}

void expect_bit_equal(const Tensor& dev_out, const Tensor& cpu_out) {
    ASSERT_EQ(dev_out.device(), kTest);
    const Tensor h = dev_out.to(Device::cpu());
    ASSERT_EQ(h.shape(), cpu_out.shape());
    const std::vector<float> a = h.to_vector(), b = cpu_out.to_vector();
    size_t diff = 0;
    for (size_t i = 0; i < a.size(); ++i) diff += std::memcmp(&a[i], &b[i], 4) != 0;
    EXPECT_EQ(diff, 0u) << "of " << a.size() << " values differ";
}

// What may legitimately run on the CPU during a device forward: kernels whose operands are all host tensors that
// the model builds itself (position ids -> rope tables, index tables). Nothing that touches an activation.
void expect_only_host_constants(const std::map<std::string, int64_t>& cpu_calls) {
    for (const auto& [k, n] : cpu_calls)
        EXPECT_TRUE(k == "rope_frequencies" || k == "cat") << "kernel '" << k << "' ran on the CPU " << n
                                                           << " time(s) during a test-device forward";
}

TEST(BackendSeam, UNetForwardRunsOnTheTestDeviceBitExact) {
    const GoldenCase gc = GoldenCase::load(kGolden + "unet_sd15");
    const std::string model = gc.meta()["models"].begin().key();
    const WeightFile wf = load_weights(gc.path("unet.safetensors"));
    UNetConfig cfg = UNetConfig::detect(wf.tensors);
    cfg.apply_json(gc.model_config(model));
    UNet2DConditionModel unet(cfg);
    load_module(unet, wf.tensors, gc.load_options(gc.path("unet.safetensors")));
    const Tensor x = gc.tensor("sample"), t = gc.tensor("timestep"), c = gc.tensor("encoder_hidden_states");
    const Tensor ref = unet.forward(x, t, c);

    SeamScope seam;
    to_device(unet, kTest);
    const Tensor y = unet.forward(x.to(kTest), t.to(kTest), c.to(kTest));
    const auto dev = seam.dev.calls(), host = seam.cpu.calls();
    for (const char* k : {"conv2d", "group_norm", "linear", "layer_norm", "geglu", "timestep_embedding"})
        EXPECT_GT(dev.count(k), 0u) << k << " not seen: " << calls_str(dev);
    EXPECT_GT(dev.count("multi_head_attention") + dev.count("sdpa"), 0u) << calls_str(dev);
    expect_only_host_constants(host);
    expect_bit_equal(y, ref);
}

TEST(BackendSeam, MMDiTForwardRunsOnTheTestDeviceBitExact) {
    const auto m = load_sd3_transformer(kGolden + "sd3_transformer/sd35.safetensors");
    const WeightFile io = load_weights(kGolden + "sd3_transformer/io.safetensors");
    auto in = [&](const char* k) { return io.tensors.at(std::string("sd35.") + k); };
    const Tensor ref = m->forward(in("hidden_states"), in("timestep"), in("encoder_hidden_states"),
                                  in("pooled_projections"));
    SeamScope seam;
    to_device(*m, kTest);
    const Tensor y = m->forward(in("hidden_states").to(kTest), in("timestep").to(kTest),
                                in("encoder_hidden_states").to(kTest), in("pooled_projections").to(kTest));
    const auto dev = seam.dev.calls(), host = seam.cpu.calls();
    for (const char* k : {"conv2d", "linear", "layer_norm_modulate", "gated_residual", "multi_head_attention"})
        EXPECT_GT(dev.count(k), 0u) << k << " not seen: " << calls_str(dev);
    expect_only_host_constants(host);
    expect_bit_equal(y, ref);
}

TEST(BackendSeam, FluxForwardRunsOnTheTestDeviceBitExact) {
    const GoldenCase gc = GoldenCase::load(kGolden + "flux_transformer");
    const std::string wpath = gc.path("flux_dev.safetensors");
    const auto m = build_flux_transformer(load_weights(wpath).tensors, gc.model_config("flux_dev"),
                                          gc.load_options(wpath));
    auto in = [&](const char* k) { return gc.tensor(std::string("flux_dev.") + k); };
    const Tensor ref = m->forward(in("hidden_states"), in("timestep"), in("guidance"), in("encoder_hidden_states"),
                                  in("pooled_projections"), in("img_ids"), in("txt_ids"));
    SeamScope seam;
    to_device(*m, kTest);
    // The position ids stay on the host, as pipelines build them: only the rope table is computed from them there.
    const Tensor y = m->forward(in("hidden_states").to(kTest), in("timestep").to(kTest), in("guidance").to(kTest),
                                in("encoder_hidden_states").to(kTest), in("pooled_projections").to(kTest),
                                in("img_ids"), in("txt_ids"));
    const auto dev = seam.dev.calls(), host = seam.cpu.calls();
    for (const char* k : {"linear", "layer_norm_modulate", "rms_norm_rope", "multi_head_attention"})
        EXPECT_GT(dev.count(k), 0u) << k << " not seen: " << calls_str(dev);
    expect_only_host_constants(host);
    EXPECT_EQ(host.count("rope_frequencies"), 1u) << calls_str(host);
    expect_bit_equal(y, ref);
}

TEST(BackendSeam, HostAccessToDeviceMemoryIsRefusedNamingTheOpAndTheDevice) {
    SeamScope seam;
    const Tensor x = Tensor::full({2, 3}, 1.5f).to(kTest);
    EXPECT_THAT(test::error_of([&] { (void)x.data<float>(); }),
                HasSubstr("host access: tensor F32[2, 3] is on device test:0, which the host cannot read; move it "
                          "with .to(Device::cpu()) first"));
    {
        OpNameScope op("my_kernel");
        EXPECT_THAT(test::error_of([&] { (void)x.raw(); }), HasSubstr("my_kernel: tensor F32[2, 3] is on device test:0"));
    }
    EXPECT_EQ(x.to_vector(), std::vector<float>(6, 1.5f));  // explicit transfers are fine
    EXPECT_EQ(add(x, 1.0f).to_vector(), std::vector<float>(6, 2.5f));
    EXPECT_EQ(add(x, 1.0f).device(), kTest);
}

TEST(BackendSeam, DeviceErrorsAreNamed) {
    const Tensor x = Tensor::full({2, 3}, 1.0f);
    EXPECT_THAT(test::error_of([&] { (void)x.to(kTest); }),
                HasSubstr("empty: no backend is registered for device test:0"));
    EXPECT_THAT(test::error_of([&] { (void)backend_for(Device{DeviceType::Cuda, 1}); }),
                HasSubstr("no backend is registered for device cuda:1 (this build has: cpu)"));
    SeamScope seam;
    RecordingBackend cuda_like{true};
    register_backend(DeviceType::Cuda, &cuda_like);
    Tensor a = x.to(kTest);
    Tensor b = a.with_storage(Storage::wrap_device(a.storage()->data(), a.storage()->size(), a.storage(),
                                                   Device{DeviceType::Cuda, 0}));
    EXPECT_THAT(test::error_of([&] { (void)add(a, b); }), HasSubstr("add: operands on two devices, test:0 and cuda:0"));
    EXPECT_THAT(test::error_of([&] { (void)cat({a, b}, 0); }),
                HasSubstr("cat: operands on two devices, test:0 and cuda:0"));
    register_backend(DeviceType::Cuda, nullptr);
}

TEST(BackendSeam, PrecisionResolvesThroughTheBackend) {
    EXPECT_EQ(resolve_precision(Precision::FP32), Precision::FP32);
    EXPECT_EQ(resolve_precision(Precision::BF16), Precision::BF16);
    EXPECT_EQ(resolve_precision(Precision::Auto), cpu_backend().default_precision());
}

// The layers above the backend reach kernels only through backends/backend.h: no file of theirs includes a
// backends/cpu/ header or oneDNN (so a CUDA backend needs no edit there).
TEST(BackendSeam, LayersAboveTheBackendIncludeNoCpuBackendHeader) {
    const std::filesystem::path src = std::filesystem::path(NUANCE_TEST_DATA) / ".." / ".." / "src";
    ASSERT_TRUE(std::filesystem::is_directory(src / "models")) << src;
    std::vector<std::string> offenders;
    int64_t files = 0;
    for (const char* layer :
         {"ops", "autograd", "nn", "models", "samplers", "pipelines", "train", "eval", "adapters", "control", "dist"}) {
        for (const auto& e : std::filesystem::recursive_directory_iterator(src / layer)) {
            if (!e.is_regular_file()) continue;
            const std::string ext = e.path().extension().string();
            if (ext != ".h" && ext != ".cpp") continue;
            ++files;
            std::ifstream f(e.path());
            std::string line;
            for (int n = 1; std::getline(f, line); ++n)
                if (line.rfind("#include", 0) == 0 &&
                    (line.find("backends/cpu/") != std::string::npos || line.find("dnnl") != std::string::npos))
                    offenders.push_back(std::filesystem::relative(e.path(), src).string() + ":" + std::to_string(n) +
                                        ": " + line);
        }
    }
    EXPECT_GT(files, 100);
    std::string all;
    for (const auto& o : offenders) all += o + "\n";
    EXPECT_TRUE(offenders.empty()) << all;
}

}  // namespace
}  // namespace nuance
