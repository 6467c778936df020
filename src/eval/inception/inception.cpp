// pytorch-fid's FID Inception v3 (see inception.h). Activations are [N, C, H, W] tensors stored channels-last
// (N, H, W, C), so oneDNN runs its direct NHWC kernels, and the pools and concatenations below walk contiguous
// channel rows.
#include "eval/inception/inception.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "core/error.h"
#include "io/weights.h"
#include "ops/conv.h"

namespace nuance {

namespace {

constexpr double kBnEps = 0.001;  // torchvision BasicConv2d's BatchNorm2d(eps=0.001)

struct ConvBN {
    Tensor w, b;  // BN folded in: w [O, C, kh, kw] F32, b [O] F32
    Conv2dParams p;
};

class Loader {
public:
    Loader(const std::map<std::string, Tensor>& t, const std::string& source) : t_(t), source_(source) {}

    Tensor get(const std::string& name, const Shape& shape) const {
        auto it = t_.find(name);
        NUANCE_CHECK(it != t_.end(), "inception weights '", source_, "': missing tensor '", name,
                     "' (expected pytorch-fid's pt_inception / torchvision Inception3 key names)");
        NUANCE_CHECK(it->second.shape() == shape, "inception weights '", source_, "': tensor '", name, "' has shape ",
                     shape_str(it->second.shape()), ", expected ", shape_str(shape));
        NUANCE_CHECK(dtype_is_float(it->second.dtype()), "inception weights '", source_, "': tensor '", name,
                     "' has dtype ", dtype_name(it->second.dtype()), ", expected a float type");
        return it->second;
    }
    bool has(const std::string& name) const { return t_.count(name) > 0; }
    const Tensor& find(const std::string& name) const { return t_.at(name); }
    const std::string& source() const { return source_; }

    // BasicConv2d `prefix`: conv (no bias) + BatchNorm(eps 0.001), folded.
    ConvBN conv(const std::string& prefix, int64_t in, int64_t out, int64_t kh, int64_t kw, int64_t stride = 1,
                int64_t ph = 0, int64_t pw = 0) const {
        const std::vector<float> w = get(prefix + ".conv.weight", {out, in, kh, kw}).to_vector();
        const std::vector<float> g = get(prefix + ".bn.weight", {out}).to_vector();
        const std::vector<float> be = get(prefix + ".bn.bias", {out}).to_vector();
        const std::vector<float> mean = get(prefix + ".bn.running_mean", {out}).to_vector();
        const std::vector<float> var = get(prefix + ".bn.running_var", {out}).to_vector();
        ConvBN c;
        c.w = Tensor::empty({out, in, kh, kw});
        c.b = Tensor::empty({out});
        float* wd = c.w.data<float>();
        float* bd = c.b.data<float>();
        const int64_t per = in * kh * kw;
        for (int64_t o = 0; o < out; ++o) {
            const double v = (double)var[(size_t)o] + kBnEps;
            NUANCE_CHECK(std::isfinite(v) && v > 0, "inception weights '", source_, "': ", prefix,
                         ".bn.running_var[", o, "] = ", var[(size_t)o], " (must be > -eps and finite)");
            const double s = (double)g[(size_t)o] / std::sqrt(v);
            for (int64_t i = 0; i < per; ++i) wd[o * per + i] = (float)((double)w[(size_t)(o * per + i)] * s);
            bd[o] = (float)((double)be[(size_t)o] - (double)mean[(size_t)o] * s);
        }
        c.p.stride = stride;
        c.p.padding = {ph, pw, ph, pw};
        return c;
    }

private:
    const std::map<std::string, Tensor>& t_;
    std::string source_;
};

// ---- channels-last helpers ----

Tensor relu_(Tensor y) {
    float* d = y.data<float>();
    const int64_t n = y.numel();
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; ++i) d[i] = d[i] > 0.0f ? d[i] : 0.0f;
    return y;
}

Tensor run_conv(const ConvBN& c, const Tensor& x, Precision compute) {
    Tensor y = conv2d(x, c.w, c.b, c.p, compute);
    if (!y.is_channels_last() || y.is_contiguous()) y = y.channels_last();  // tiny maps may come back plain
    return relu_(y);
}

// [N, C, H, W] channels-last -> pooled, channels-last. Max ignores padding; avg divides by the count of real
// elements in the window when !count_pad (count_include_pad=False), by k*k otherwise.
Tensor pool2d(const Tensor& x, int64_t k, int64_t stride, int64_t pad, bool is_max, bool count_pad = false) {
    const int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
    const int64_t Ho = (H + 2 * pad - k) / stride + 1, Wo = (W + 2 * pad - k) / stride + 1;
    NUANCE_CHECK(Ho > 0 && Wo > 0, "inception: a ", H, "x", W, " map is too small for a ", k, "x", k, " pool");
    Tensor y = Tensor::empty_channels_last({N, C, Ho, Wo});
    const float* xd = x.data<float>();
    float* yd = y.data<float>();
#pragma omp parallel for collapse(2) schedule(static)
    for (int64_t n = 0; n < N; ++n)
        for (int64_t oh = 0; oh < Ho; ++oh)
            for (int64_t ow = 0; ow < Wo; ++ow) {
                float* out = yd + ((n * Ho + oh) * Wo + ow) * C;
                const int64_t h0 = oh * stride - pad, w0 = ow * stride - pad;
                const int64_t ha = std::max<int64_t>(h0, 0), hb = std::min<int64_t>(h0 + k, H);
                const int64_t wa = std::max<int64_t>(w0, 0), wb = std::min<int64_t>(w0 + k, W);
                if (is_max) {
                    for (int64_t c = 0; c < C; ++c) out[c] = -std::numeric_limits<float>::infinity();
                    for (int64_t h = ha; h < hb; ++h)
                        for (int64_t w = wa; w < wb; ++w) {
                            const float* in = xd + ((n * H + h) * W + w) * C;
                            for (int64_t c = 0; c < C; ++c) out[c] = std::max(out[c], in[c]);
                        }
                } else {
                    for (int64_t c = 0; c < C; ++c) out[c] = 0.0f;
                    for (int64_t h = ha; h < hb; ++h)
                        for (int64_t w = wa; w < wb; ++w) {
                            const float* in = xd + ((n * H + h) * W + w) * C;
                            for (int64_t c = 0; c < C; ++c) out[c] += in[c];
                        }
                    const float div = count_pad ? (float)(k * k) : (float)((hb - ha) * (wb - wa));
                    for (int64_t c = 0; c < C; ++c) out[c] /= div;
                }
            }
    return y;
}

// Channel concatenation of channels-last maps of the same N, H, W.
Tensor cat_channels(const std::vector<Tensor>& parts) {
    const int64_t N = parts[0].size(0), H = parts[0].size(2), W = parts[0].size(3);
    int64_t C = 0;
    for (const Tensor& p : parts) C += p.size(1);
    Tensor y = Tensor::empty_channels_last({N, C, H, W});
    float* yd = y.data<float>();
    const int64_t pixels = N * H * W;
    int64_t off = 0;
    for (const Tensor& p : parts) {
        const int64_t c = p.size(1);
        const float* pd = p.data<float>();
#pragma omp parallel for schedule(static)
        for (int64_t i = 0; i < pixels; ++i) std::memcpy(yd + i * C + off, pd + i * c, (size_t)c * sizeof(float));
        off += c;
    }
    return y;
}

// Adaptive average pool to 1x1: [N, C, H, W] channels-last -> [N, C] (double accumulation).
Tensor global_pool(const Tensor& x) {
    const int64_t N = x.size(0), C = x.size(1), HW = x.size(2) * x.size(3);
    Tensor y = Tensor::empty({N, C});
    const float* xd = x.data<float>();
    float* yd = y.data<float>();
    std::vector<double> acc((size_t)C);
    for (int64_t n = 0; n < N; ++n) {
        std::fill(acc.begin(), acc.end(), 0.0);
        for (int64_t i = 0; i < HW; ++i)
            for (int64_t c = 0; c < C; ++c) acc[(size_t)c] += xd[(n * HW + i) * C + c];
        for (int64_t c = 0; c < C; ++c) yd[n * C + c] = (float)(acc[(size_t)c] / (double)HW);
    }
    return y;
}

// ---- blocks (torchvision Inception3 / pytorch-fid FIDInception*) ----

struct BlockA {  // FIDInceptionA
    ConvBN b1, b5_1, b5_2, d1, d2, d3, pool;
    BlockA(const Loader& l, const std::string& p, int64_t in, int64_t pool_features)
        : b1(l.conv(p + ".branch1x1", in, 64, 1, 1)),
          b5_1(l.conv(p + ".branch5x5_1", in, 48, 1, 1)),
          b5_2(l.conv(p + ".branch5x5_2", 48, 64, 5, 5, 1, 2, 2)),
          d1(l.conv(p + ".branch3x3dbl_1", in, 64, 1, 1)),
          d2(l.conv(p + ".branch3x3dbl_2", 64, 96, 3, 3, 1, 1, 1)),
          d3(l.conv(p + ".branch3x3dbl_3", 96, 96, 3, 3, 1, 1, 1)),
          pool(l.conv(p + ".branch_pool", in, pool_features, 1, 1)) {}
    Tensor operator()(const Tensor& x, Precision pr) const {
        Tensor a = run_conv(b1, x, pr);
        Tensor b = run_conv(b5_2, run_conv(b5_1, x, pr), pr);
        Tensor c = run_conv(d3, run_conv(d2, run_conv(d1, x, pr), pr), pr);
        Tensor d = run_conv(pool, pool2d(x, 3, 1, 1, false), pr);
        return cat_channels({a, b, c, d});
    }
};

struct BlockB {  // InceptionB (Mixed_6a)
    ConvBN b3, d1, d2, d3;
    BlockB(const Loader& l, const std::string& p, int64_t in)
        : b3(l.conv(p + ".branch3x3", in, 384, 3, 3, 2)),
          d1(l.conv(p + ".branch3x3dbl_1", in, 64, 1, 1)),
          d2(l.conv(p + ".branch3x3dbl_2", 64, 96, 3, 3, 1, 1, 1)),
          d3(l.conv(p + ".branch3x3dbl_3", 96, 96, 3, 3, 2)) {}
    Tensor operator()(const Tensor& x, Precision pr) const {
        Tensor a = run_conv(b3, x, pr);
        Tensor b = run_conv(d3, run_conv(d2, run_conv(d1, x, pr), pr), pr);
        return cat_channels({a, b, pool2d(x, 3, 2, 0, true)});
    }
};

struct BlockC {  // FIDInceptionC
    ConvBN b1, s1, s2, s3, d1, d2, d3, d4, d5, pool;
    BlockC(const Loader& l, const std::string& p, int64_t in, int64_t c7)
        : b1(l.conv(p + ".branch1x1", in, 192, 1, 1)),
          s1(l.conv(p + ".branch7x7_1", in, c7, 1, 1)),
          s2(l.conv(p + ".branch7x7_2", c7, c7, 1, 7, 1, 0, 3)),
          s3(l.conv(p + ".branch7x7_3", c7, 192, 7, 1, 1, 3, 0)),
          d1(l.conv(p + ".branch7x7dbl_1", in, c7, 1, 1)),
          d2(l.conv(p + ".branch7x7dbl_2", c7, c7, 7, 1, 1, 3, 0)),
          d3(l.conv(p + ".branch7x7dbl_3", c7, c7, 1, 7, 1, 0, 3)),
          d4(l.conv(p + ".branch7x7dbl_4", c7, c7, 7, 1, 1, 3, 0)),
          d5(l.conv(p + ".branch7x7dbl_5", c7, 192, 1, 7, 1, 0, 3)),
          pool(l.conv(p + ".branch_pool", in, 192, 1, 1)) {}
    Tensor operator()(const Tensor& x, Precision pr) const {
        Tensor a = run_conv(b1, x, pr);
        Tensor b = run_conv(s3, run_conv(s2, run_conv(s1, x, pr), pr), pr);
        Tensor c = run_conv(d1, x, pr);
        for (const ConvBN* cv : {&d2, &d3, &d4, &d5}) c = run_conv(*cv, c, pr);
        Tensor d = run_conv(pool, pool2d(x, 3, 1, 1, false), pr);
        return cat_channels({a, b, c, d});
    }
};

struct BlockD {  // InceptionD (Mixed_7a)
    ConvBN t1, t2, s1, s2, s3, s4;
    BlockD(const Loader& l, const std::string& p, int64_t in)
        : t1(l.conv(p + ".branch3x3_1", in, 192, 1, 1)),
          t2(l.conv(p + ".branch3x3_2", 192, 320, 3, 3, 2)),
          s1(l.conv(p + ".branch7x7x3_1", in, 192, 1, 1)),
          s2(l.conv(p + ".branch7x7x3_2", 192, 192, 1, 7, 1, 0, 3)),
          s3(l.conv(p + ".branch7x7x3_3", 192, 192, 7, 1, 1, 3, 0)),
          s4(l.conv(p + ".branch7x7x3_4", 192, 192, 3, 3, 2)) {}
    Tensor operator()(const Tensor& x, Precision pr) const {
        Tensor a = run_conv(t2, run_conv(t1, x, pr), pr);
        Tensor b = run_conv(s4, run_conv(s3, run_conv(s2, run_conv(s1, x, pr), pr), pr), pr);
        return cat_channels({a, b, pool2d(x, 3, 2, 0, true)});
    }
};

struct BlockE {  // FIDInceptionE_1 (avg pool, count_include_pad=False) / FIDInceptionE_2 (max pool)
    ConvBN b1, t1, t2a, t2b, d1, d2, d3a, d3b, pool;
    bool max_pool;
    BlockE(const Loader& l, const std::string& p, int64_t in, bool max_pool_)
        : b1(l.conv(p + ".branch1x1", in, 320, 1, 1)),
          t1(l.conv(p + ".branch3x3_1", in, 384, 1, 1)),
          t2a(l.conv(p + ".branch3x3_2a", 384, 384, 1, 3, 1, 0, 1)),
          t2b(l.conv(p + ".branch3x3_2b", 384, 384, 3, 1, 1, 1, 0)),
          d1(l.conv(p + ".branch3x3dbl_1", in, 448, 1, 1)),
          d2(l.conv(p + ".branch3x3dbl_2", 448, 384, 3, 3, 1, 1, 1)),
          d3a(l.conv(p + ".branch3x3dbl_3a", 384, 384, 1, 3, 1, 0, 1)),
          d3b(l.conv(p + ".branch3x3dbl_3b", 384, 384, 3, 1, 1, 1, 0)),
          pool(l.conv(p + ".branch_pool", in, 192, 1, 1)),
          max_pool(max_pool_) {}
    Tensor operator()(const Tensor& x, Precision pr) const {
        Tensor a = run_conv(b1, x, pr);
        Tensor t = run_conv(t1, x, pr);
        Tensor d = run_conv(d2, run_conv(d1, x, pr), pr);
        Tensor p = run_conv(pool, pool2d(x, 3, 1, 1, max_pool), pr);
        return cat_channels({a, run_conv(t2a, t, pr), run_conv(t2b, t, pr), run_conv(d3a, d, pr),
                             run_conv(d3b, d, pr), p});
    }
};

}  // namespace

struct InceptionV3::Impl {
    ConvBN c1a, c2a, c2b, c3b, c4a;
    BlockA m5b, m5c, m5d;
    BlockB m6a;
    BlockC m6b, m6c, m6d, m6e;
    BlockD m7a;
    BlockE m7b, m7c;
    std::vector<float> fc_w, fc_b;  // [K, 2048], [K]; empty without a head
    int64_t classes = 0;
    Precision compute = Precision::FP32;

    explicit Impl(const Loader& l)
        : c1a(l.conv("Conv2d_1a_3x3", 3, 32, 3, 3, 2)),
          c2a(l.conv("Conv2d_2a_3x3", 32, 32, 3, 3)),
          c2b(l.conv("Conv2d_2b_3x3", 32, 64, 3, 3, 1, 1, 1)),
          c3b(l.conv("Conv2d_3b_1x1", 64, 80, 1, 1)),
          c4a(l.conv("Conv2d_4a_3x3", 80, 192, 3, 3)),
          m5b(l, "Mixed_5b", 192, 32),
          m5c(l, "Mixed_5c", 256, 64),
          m5d(l, "Mixed_5d", 288, 64),
          m6a(l, "Mixed_6a", 288),
          m6b(l, "Mixed_6b", 768, 128),
          m6c(l, "Mixed_6c", 768, 160),
          m6d(l, "Mixed_6d", 768, 160),
          m6e(l, "Mixed_6e", 768, 192),
          m7a(l, "Mixed_7a", 768),
          m7b(l, "Mixed_7b", 1280, false),
          m7c(l, "Mixed_7c", 2048, true) {
        const bool w = l.has("fc.weight"), b = l.has("fc.bias");
        NUANCE_CHECK(w == b, "inception weights '", l.source(), "': fc.weight and fc.bias must come together (",
                     w ? "fc.bias" : "fc.weight", " is missing)");
        if (!w) return;
        const Tensor& fw = l.find("fc.weight");
        NUANCE_CHECK(fw.dim() == 2 && fw.size(1) == 2048 && fw.size(0) >= 1 && fw.size(0) <= 100000,
                     "inception weights '", l.source(), "': fc.weight has shape ", shape_str(fw.shape()),
                     ", expected [classes, 2048] with 1 <= classes <= 100000");
        classes = fw.size(0);
        fc_w = l.get("fc.weight", {classes, 2048}).to_vector();
        fc_b = l.get("fc.bias", {classes}).to_vector();
    }

    Tensor blocks01(const Tensor& x, Tensor* b0) const {
        Tensor y = run_conv(c2b, run_conv(c2a, run_conv(c1a, x, compute), compute), compute);
        y = pool2d(y, 3, 2, 0, true);
        if (b0) *b0 = y;
        y = run_conv(c4a, run_conv(c3b, y, compute), compute);
        return pool2d(y, 3, 2, 0, true);
    }
};

InceptionV3::InceptionV3() = default;
InceptionV3::~InceptionV3() = default;
InceptionV3::InceptionV3(InceptionV3&&) noexcept = default;
InceptionV3& InceptionV3::operator=(InceptionV3&&) noexcept = default;

InceptionV3 InceptionV3::from_tensors(const std::map<std::string, Tensor>& tensors, const std::string& source) {
    InceptionV3 m;
    m.impl_ = std::make_unique<Impl>(Loader(tensors, source));
    return m;
}

InceptionV3 InceptionV3::load(const std::string& path) {
    const WeightFile f = load_weights(path);
    return from_tensors(f.tensors, path);
}

bool InceptionV3::has_fc() const { return impl_ && impl_->classes > 0; }
int64_t InceptionV3::num_classes() const { return impl_ ? impl_->classes : 0; }
void InceptionV3::set_compute(Precision p) {
    NUANCE_CHECK(impl_, "inception: no weights loaded");
    impl_->compute = p == Precision::BF16 ? Precision::BF16 : Precision::FP32;
}

InceptionFeatures InceptionV3::forward(const Tensor& x_in, bool want_blocks, bool want_logits) const {
    NUANCE_CHECK(impl_, "inception: no weights loaded");
    NUANCE_CHECK(x_in.dim() == 4 && x_in.size(1) == 3 && x_in.size(2) >= 75 && x_in.size(3) >= 75,
                 "inception: input must be [N, 3, H, W] with H, W >= 75 (299 for FID), got ", shape_str(x_in.shape()));
    const Impl& m = *impl_;
    const Precision pr = m.compute;
    InceptionFeatures f;
    const int64_t N = x_in.size(0);
    if (N == 0) {
        f.pool3 = Tensor::empty({0, 2048});
        return f;
    }
    Tensor x = x_in.f32().channels_last();
    if (x.is_contiguous()) x = x.clone();  // (never for real inputs) keep the layout the helpers expect
    Tensor b0;
    Tensor y = m.blocks01(x, want_blocks ? &b0 : nullptr);
    if (want_blocks) {
        f.block_pool[0] = global_pool(b0);
        f.block_pool[1] = global_pool(y);
        f.block1_full = y.contiguous();
    }
    y = m.m5d(m.m5c(m.m5b(y, pr), pr), pr);
    y = m.m6a(y, pr);
    y = m.m6e(m.m6d(m.m6c(m.m6b(y, pr), pr), pr), pr);
    if (want_blocks) {
        f.block_pool[2] = global_pool(y);
        f.block2_full = y.contiguous();
    }
    y = m.m7c(m.m7b(m.m7a(y, pr), pr), pr);
    f.pool3 = global_pool(y);
    if (want_logits) {
        NUANCE_CHECK(m.classes > 0, "inception: the Inception Score needs the fc head (fc.weight, fc.bias), which ",
                     "these weights lack (pytorch-fid's pt_inception-2015-12-05 .pth has it)");
        const int64_t K = m.classes;
        f.logits = Tensor::empty({N, K});
        f.logits_unbiased = Tensor::empty({N, K});
        const float* p = f.pool3.data<float>();
        float* lo = f.logits.data<float>();
        float* lu = f.logits_unbiased.data<float>();
#pragma omp parallel for schedule(static)
        for (int64_t k = 0; k < K; ++k)
            for (int64_t n = 0; n < N; ++n) {
                double s = 0;
                const float* w = &m.fc_w[(size_t)(k * 2048)];
                for (int64_t j = 0; j < 2048; ++j) s += (double)p[n * 2048 + j] * (double)w[j];
                lu[n * K + k] = (float)s;
                lo[n * K + k] = (float)(s + (double)m.fc_b[(size_t)k]);
            }
    }
    return f;
}

}  // namespace nuance
