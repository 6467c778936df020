// Inception input resizing, bit-for-bit in the reference's arithmetic where it matters: PIL's float resampling
// (coefficients and sums in double, the horizontal pass stored as float32 between passes, Resample.c), torch's
// upsample_bilinear2d (float index math, align_corners=False), TF1's ResizeBilinear (legacy corner alignment).
#include "eval/inception/resize.h"

// Every product and sum rounds on its own, as in the references (an FMA shifts a source index by an ulp, ~3e-5 of
// a pixel at 400 px, which the golden's 1e-6 on the resized input catches).
#pragma GCC optimize("fp-contract=off")

#include <algorithm>
#include <cmath>

#include "core/error.h"

namespace nuance {

InceptionResize parse_inception_resize(const std::string& s, const std::string& what) {
    if (s == "clean") return InceptionResize::Clean;
    if (s == "legacy_pytorch") return InceptionResize::LegacyPytorch;
    if (s == "legacy_tensorflow") return InceptionResize::LegacyTensorflow;
    fail(ErrorCode::InvalidArgument, "usage: ", what, " '", s, "' is not a resize mode (clean, legacy_pytorch, ",
         "legacy_tensorflow)");
}

const char* inception_resize_name(InceptionResize m) {
    switch (m) {
        case InceptionResize::Clean: return "clean";
        case InceptionResize::LegacyPytorch: return "legacy_pytorch";
        case InceptionResize::LegacyTensorflow: return "legacy_tensorflow";
    }
    return "?";
}

namespace {

void check_plane(const std::vector<float>& in, int w, int h, int ow, int oh) {
    NUANCE_CHECK(w >= 1 && h >= 1 && ow >= 1 && oh >= 1 && (uint64_t)w * (uint64_t)h <= kMaxDecodePixels &&
                     (uint64_t)ow * (uint64_t)oh <= kMaxDecodePixels,
                 "resize: bad sizes ", w, "x", h, " -> ", ow, "x", oh);
    NUANCE_CHECK(in.size() == (size_t)w * (size_t)h, "resize: a ", w, "x", h, " plane needs ", (size_t)w * (size_t)h,
                 " values, got ", in.size());
}

double bicubic(double x) {  // PIL's bicubic_filter, a = -0.5
    constexpr double a = -0.5;
    if (x < 0.0) x = -x;
    if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
    if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
    return 0.0;
}

struct Coeffs {
    int ksize = 0;
    std::vector<int> xmin, xcount;
    std::vector<double> k;  // [out, ksize]
};

// PIL precompute_coeffs for the box [0, in_size] -> out_size with the bicubic filter (support 2).
Coeffs precompute(int in_size, int out_size) {
    const double scale = (double)in_size / (double)out_size;
    const double filterscale = std::max(scale, 1.0);
    const double support = 2.0 * filterscale;
    Coeffs c;
    c.ksize = (int)std::ceil(support) * 2 + 1;
    c.xmin.resize((size_t)out_size);
    c.xcount.resize((size_t)out_size);
    c.k.assign((size_t)out_size * (size_t)c.ksize, 0.0);
    for (int xx = 0; xx < out_size; ++xx) {
        const double center = (xx + 0.5) * scale;
        const double ss = 1.0 / filterscale;
        int xmin = (int)(center - support + 0.5);
        if (xmin < 0) xmin = 0;
        int xmax = (int)(center + support + 0.5);
        if (xmax > in_size) xmax = in_size;
        xmax -= xmin;
        double* k = &c.k[(size_t)xx * (size_t)c.ksize];
        double ww = 0.0;
        for (int x = 0; x < xmax; ++x) {
            const double w = bicubic((x + xmin - center + 0.5) * ss);
            k[x] = w;
            ww += w;
        }
        for (int x = 0; x < xmax; ++x)
            if (ww != 0.0) k[x] /= ww;
        c.xmin[(size_t)xx] = xmin;
        c.xcount[(size_t)xx] = xmax;
    }
    return c;
}

}  // namespace

std::vector<float> resize_plane_pil_bicubic(const std::vector<float>& in, int w, int h, int ow, int oh) {
    check_plane(in, w, h, ow, oh);
    // PIL: the horizontal pass (when the width changes) over the rows the vertical pass needs, then the vertical.
    std::vector<float> tmp;
    int tw = w;
    if (ow != w) {
        const Coeffs c = precompute(w, ow);
        tmp.resize((size_t)ow * (size_t)h);
        for (int y = 0; y < h; ++y)
            for (int xx = 0; xx < ow; ++xx) {
                const double* k = &c.k[(size_t)xx * (size_t)c.ksize];
                const float* row = &in[(size_t)y * (size_t)w + (size_t)c.xmin[(size_t)xx]];
                double ss = 0.0;
                for (int x = 0; x < c.xcount[(size_t)xx]; ++x) ss += row[x] * k[x];
                tmp[(size_t)y * (size_t)ow + (size_t)xx] = (float)ss;
            }
        tw = ow;
    } else {
        tmp = in;
    }
    if (oh == h) return tmp;
    const Coeffs c = precompute(h, oh);
    std::vector<float> out((size_t)tw * (size_t)oh);
    for (int yy = 0; yy < oh; ++yy) {
        const double* k = &c.k[(size_t)yy * (size_t)c.ksize];
        const int ymin = c.xmin[(size_t)yy];
        for (int x = 0; x < tw; ++x) {
            double ss = 0.0;
            for (int y = 0; y < c.xcount[(size_t)yy]; ++y) ss += tmp[(size_t)(ymin + y) * (size_t)tw + (size_t)x] * k[y];
            out[(size_t)yy * (size_t)tw + (size_t)x] = (float)ss;
        }
    }
    return out;
}

std::vector<float> resize_plane_torch_bilinear(const std::vector<float>& in, int w, int h, int ow, int oh) {
    check_plane(in, w, h, ow, oh);
    // aten upsample_bilinear2d (align_corners=False, no scale_factor): scale = in / out, src = scale (dst + 0.5)
    // - 0.5 clamped at 0, all in float (opmath of a float tensor).
    auto index = [](int in_size, int out_size, int dst, int& i0, int& i1, float& l0, float& l1) {
        const float scale = (float)in_size / (float)out_size;
        float src = scale * ((float)dst + 0.5f) - 0.5f;
        if (src < 0.0f) src = 0.0f;
        i0 = (int)src;
        i1 = i0 + (i0 < in_size - 1 ? 1 : 0);
        l1 = src - (float)i0;
        l0 = 1.0f - l1;
    };
    std::vector<float> out((size_t)ow * (size_t)oh);
    for (int y = 0; y < oh; ++y) {
        int h0, h1;
        float hl0, hl1;
        index(h, oh, y, h0, h1, hl0, hl1);
        for (int x = 0; x < ow; ++x) {
            int w0, w1;
            float wl0, wl1;
            index(w, ow, x, w0, w1, wl0, wl1);
            const float* r0 = &in[(size_t)h0 * (size_t)w];
            const float* r1 = &in[(size_t)h1 * (size_t)w];
            out[(size_t)y * (size_t)ow + (size_t)x] =
                hl0 * (wl0 * r0[w0] + wl1 * r0[w1]) + hl1 * (wl0 * r1[w0] + wl1 * r1[w1]);
        }
    }
    return out;
}

std::vector<float> resize_plane_tf1_bilinear(const std::vector<float>& in, int w, int h, int ow, int oh) {
    check_plane(in, w, h, ow, oh);
    // TF1 ResizeBilinear, align_corners=False, half_pixel_centers=False: src = dst * (in / out).
    auto index = [](int in_size, int out_size, int dst, int& lo, int& hi, float& lerp) {
        const float scale = (float)in_size / (float)out_size;
        const float src = (float)dst * scale;
        lo = std::min((int)std::floor(src), in_size - 1);
        hi = std::min(lo + 1, in_size - 1);
        lerp = src - std::floor(src);
    };
    std::vector<float> out((size_t)ow * (size_t)oh);
    for (int y = 0; y < oh; ++y) {
        int t, b;
        float yl;
        index(h, oh, y, t, b, yl);
        for (int x = 0; x < ow; ++x) {
            int l, r;
            float xl;
            index(w, ow, x, l, r, xl);
            const float tl = in[(size_t)t * (size_t)w + (size_t)l], tr = in[(size_t)t * (size_t)w + (size_t)r];
            const float bl = in[(size_t)b * (size_t)w + (size_t)l], br = in[(size_t)b * (size_t)w + (size_t)r];
            const float top = tl + (tr - tl) * xl, bottom = bl + (br - bl) * xl;
            out[(size_t)y * (size_t)ow + (size_t)x] = top + (bottom - top) * yl;
        }
    }
    return out;
}

Tensor inception_resize(const Image& image, InceptionResize mode) {
    NUANCE_CHECK(image.channels == 3, "inception: images must be RGB (3 channels), got ", image.channels);
    const int w = image.width, h = image.height;
    NUANCE_CHECK(w >= 1 && h >= 1 && (uint64_t)w * (uint64_t)h <= kMaxDecodePixels &&
                     image.pixels.size() == (size_t)w * (size_t)h * 3,
                 "inception: a ", w, "x", h, " RGB image with ", image.pixels.size(), " bytes");
    const int S = kInceptionSize;
    Tensor out = Tensor::empty({3, S, S});
    float* od = out.data<float>();
    const float in_scale = mode == InceptionResize::LegacyPytorch ? 1.0f / 255.0f : 1.0f;
    std::vector<float> plane((size_t)w * (size_t)h);
    for (int c = 0; c < 3; ++c) {
        for (size_t i = 0; i < plane.size(); ++i) {
            const float v = (float)image.pixels[i * 3 + (size_t)c];
            plane[i] = mode == InceptionResize::LegacyPytorch ? v / 255.0f : v * in_scale;  // ToTensor: u8 / 255
        }
        std::vector<float> r;
        if (mode == InceptionResize::Clean) {
            r = resize_plane_pil_bicubic(plane, w, h, S, S);
            for (float& v : r) v = std::min(255.0f, std::max(0.0f, v));  // clean-fid: np.clip(x, 0, 255)
        } else if (mode == InceptionResize::LegacyPytorch) {
            r = (w == S && h == S) ? plane : resize_plane_torch_bilinear(plane, w, h, S, S);
        } else {
            r = (w == S && h == S) ? plane : resize_plane_tf1_bilinear(plane, w, h, S, S);
        }
        std::copy(r.begin(), r.end(), od + (size_t)c * (size_t)S * (size_t)S);
    }
    return out;
}

void inception_normalize_(Tensor& t, InceptionResize mode) {
    float* d = t.data<float>();
    const int64_t n = t.numel();
    if (mode == InceptionResize::LegacyPytorch)
        for (int64_t i = 0; i < n; ++i) d[i] = 2.0f * d[i] - 1.0f;
    else
        for (int64_t i = 0; i < n; ++i) d[i] = (d[i] - 128.0f) / 128.0f;
}

Tensor inception_input(const std::vector<Image>& images, InceptionResize mode) {
    const int64_t N = (int64_t)images.size(), S = kInceptionSize;
    Tensor out = Tensor::empty({N, 3, S, S});
    const size_t per = (size_t)(3 * S * S);
    for (int64_t i = 0; i < N; ++i) {
        Tensor r = inception_resize(images[(size_t)i], mode);
        inception_normalize_(r, mode);
        std::copy(r.data<float>(), r.data<float>() + per, out.data<float>() + (size_t)i * per);
    }
    return out;
}

}  // namespace nuance
