#include "pipelines/inpaint_image.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "core/error.h"
#include "core/rng.h"

namespace nuance {

namespace {

void check_mask(const Image& m, const char* what) {
    NUANCE_CHECK(m.channels == 1 && m.width > 0 && m.height > 0 &&
                     m.pixels.size() == (size_t)m.width * (size_t)m.height,
                 what, ": expected a non-empty 1-channel mask, got ", m.width, "x", m.height, "x", m.channels);
}

void check_rgb(const Image& m, const char* what) {
    NUANCE_CHECK((m.channels == 3 || m.channels == 4) && m.width > 0 && m.height > 0 &&
                     m.pixels.size() == (size_t)m.width * (size_t)m.height * (size_t)m.channels,
                 what, ": expected a non-empty RGB image, got ", m.width, "x", m.height, "x", m.channels);
}

Image blank(int w, int h, int c) {
    Image o;
    o.width = w;
    o.height = h;
    o.channels = c;
    o.pixels.assign((size_t)w * (size_t)h * (size_t)c, 0);
    return o;
}

// OpenCV's getGaussianKernel for sigma > 0 (double weights, normalised).
std::vector<double> gaussian_kernel(int ksize, double sigma) {
    std::vector<double> k((size_t)ksize);
    const double c = (ksize - 1) * 0.5;
    double sum = 0;
    for (int i = 0; i < ksize; ++i) sum += k[(size_t)i] = std::exp(-(i - c) * (i - c) / (2 * sigma * sigma));
    for (double& v : k) v /= sum;
    return k;
}

int reflect101(int i, int n) {
    if (n == 1) return 0;
    while (i < 0 || i >= n) i = i < 0 ? -i : 2 * n - 2 - i;
    return i;
}

// One separable pass over float planes (channels interleaved), reflect-101 borders.
std::vector<float> blur_pass(const std::vector<float>& in, int w, int h, int ch, const std::vector<double>& k,
                             bool horizontal) {
    std::vector<float> out(in.size());
    const int r = (int)k.size() / 2;
    for (int y = 0; y < h; ++y)
        for (int x = 0; x < w; ++x)
            for (int c = 0; c < ch; ++c) {
                double s = 0;
                for (int t = -r; t <= r; ++t) {
                    const int sx = horizontal ? reflect101(x + t, w) : x, sy = horizontal ? y : reflect101(y + t, h);
                    s += k[(size_t)(t + r)] * in[((size_t)sy * w + sx) * ch + c];
                }
                out[((size_t)y * w + x) * ch + c] = (float)s;
            }
    return out;
}

// PIL's GaussianBlur: three extended box blurs (Gwosdek et al. 2011) of this fractional radius.
double pil_box_radius(double radius) {
    const double sigma2 = radius * radius / 3, L = std::sqrt(12.0 * sigma2 + 1.0), l = std::floor((L - 1.0) / 2.0);
    const double a = (2 * l + 1) * (l * (l + 1) - 3 * sigma2) / (6 * (sigma2 - (l + 1) * (l + 1)));
    return l + a;
}

// One extended box blur pass (PIL ImagingBoxBlur): out = (sum over [i-l, i+l] + a (p[i-l-1] + p[i+l+1])) / (2r+1),
// l = floor(r), a = r - l, edge pixels repeated.
std::vector<float> box_blur_pass(const std::vector<float>& in, int w, int h, int ch, double r, bool horizontal) {
    std::vector<float> out(in.size());
    const int l = (int)r;
    const double a = r - l, norm = 1.0 / (2 * r + 1);
    const int n = horizontal ? w : h, lines = horizontal ? h : w;
    std::vector<double> prefix((size_t)n + 2 * (size_t)l + 3);
    for (int line = 0; line < lines; ++line)
        for (int c = 0; c < ch; ++c) {
            auto at = [&](int i) {
                i = std::clamp(i, 0, n - 1);
                const size_t px = horizontal ? (size_t)line * w + i : (size_t)i * w + line;
                return (double)in[px * ch + c];
            };
            // prefix[k] = sum of at(j) for j in [-l-1, k-l-1)
            prefix[0] = 0;
            for (int k = 0; k < n + 2 * l + 2; ++k) prefix[(size_t)k + 1] = prefix[(size_t)k] + at(k - l - 1);
            for (int i = 0; i < n; ++i) {
                const double inner = prefix[(size_t)i + 2 * l + 2] - prefix[(size_t)i + 1];  // [i-l, i+l]
                const double v = (inner + a * (at(i - l - 1) + at(i + l + 1))) * norm;
                const size_t px = horizontal ? (size_t)line * w + i : (size_t)i * w + line;
                out[px * ch + c] = (float)v;
            }
        }
    return out;
}

uint8_t round_u8(double v) { return (uint8_t)std::clamp((int)std::lround(v), 0, 255); }

}  // namespace

Image mask_from_image(const Image& img, MaskConvention c, const std::string& what) {
    NUANCE_CHECK(img.width > 0 && img.height > 0, what, ": the mask image is empty (", img.width, "x", img.height,
                 ")");
    NUANCE_CHECK(img.channels >= 1 && img.channels <= 4 &&
                     img.pixels.size() == (size_t)img.width * (size_t)img.height * (size_t)img.channels,
                 what, ": ", img.channels, " channels, ", img.pixels.size(), " bytes for ", img.width, "x",
                 img.height);
    Image m = blank(img.width, img.height, 1);
    const size_t n = (size_t)img.width * img.height;
    const int ch = img.channels;
    bool has_alpha = false;
    if (ch == 4 || ch == 2)
        for (size_t i = 0; i < n && !has_alpha; ++i) has_alpha = img.pixels[i * ch + ch - 1] != 255;
    for (size_t i = 0; i < n; ++i) {
        const uint8_t* p = &img.pixels[i * ch];
        if (c == MaskConvention::Transparent) {
            m.pixels[i] = (ch == 4 || ch == 2) && p[ch - 1] == 0 ? 255 : 0;
        } else if (has_alpha) {
            m.pixels[i] = p[ch - 1] > 128 ? 255 : 0;
        } else if (ch >= 3) {
            m.pixels[i] = (uint8_t)((19595u * p[0] + 38470u * p[1] + 7471u * p[2] + 0x8000u) >> 16);
        } else {
            m.pixels[i] = p[0];
        }
    }
    return m;
}

Image resize_mask(const Image& mask, int w, int h) {
    check_mask(mask, "resize_mask");
    if (mask.width == w && mask.height == h) return mask;
    return resize_image(mask, w, h);
}

Image invert_mask(const Image& mask) {
    check_mask(mask, "invert_mask");
    Image o = mask;
    for (uint8_t& v : o.pixels) v = (uint8_t)(255 - v);
    return o;
}

Image blur_mask(const Image& mask, int blur) {
    check_mask(mask, "blur_mask");
    NUANCE_CHECK(blur >= 0 && blur <= kMaxMaskBlur, "mask blur must be in 0..", kMaxMaskBlur, " pixels, got ", blur);
    if (blur == 0) return mask;
    const int ksize = 2 * (int)(2.5 * blur + 0.5) + 1;
    const std::vector<double> k = gaussian_kernel(ksize, blur);
    std::vector<float> f(mask.pixels.begin(), mask.pixels.end());
    f = blur_pass(f, mask.width, mask.height, 1, k, true);
    for (float& v : f) v = (float)round_u8(v);  // A1111 blurs x and y as two 8-bit images
    f = blur_pass(f, mask.width, mask.height, 1, k, false);
    Image o = mask;
    for (size_t i = 0; i < f.size(); ++i) o.pixels[i] = round_u8(f[i]);
    return o;
}

uint8_t mask_max(const Image& mask) {
    check_mask(mask, "mask_max");
    return *std::max_element(mask.pixels.begin(), mask.pixels.end());
}

bool inpaint_crop_region(const Image& mask, int padding, int w, int h, PixelBox* box) {
    check_mask(mask, "inpaint_crop_region");
    NUANCE_CHECK(padding >= 0 && padding <= 8192, "inpaint padding must be in 0..8192 pixels, got ", padding);
    NUANCE_CHECK(w > 0 && h > 0, "inpaint_crop_region: size ", w, "x", h);
    int x1 = mask.width, y1 = mask.height, x2 = 0, y2 = 0;
    for (int y = 0; y < mask.height; ++y)
        for (int x = 0; x < mask.width; ++x)
            if (mask.pixels[(size_t)y * mask.width + x]) {
                x1 = std::min(x1, x), x2 = std::max(x2, x + 1);
                y1 = std::min(y1, y), y2 = std::max(y2, y + 1);
            }
    if (x2 == 0) return false;
    x1 = std::max(x1 - padding, 0), y1 = std::max(y1 - padding, 0);
    x2 = std::min(x2 + padding, mask.width), y2 = std::min(y2 + padding, mask.height);
    // expand_crop_region: grow the short side to the processing aspect ratio, shifted back inside the image.
    const double ratio_crop = (double)(x2 - x1) / (y2 - y1), ratio_proc = (double)w / h;
    auto grow = [](int& a1, int& a2, int diff, int limit) {
        a1 -= diff / 2;
        a2 += diff - diff / 2;
        if (a2 >= limit) {
            const int d = a2 - limit;
            a2 -= d;
            a1 -= d;
        }
        if (a1 < 0) {
            a2 -= a1;
            a1 = 0;
        }
        if (a2 >= limit) a2 = limit;
    };
    if (ratio_crop > ratio_proc)
        grow(y1, y2, (int)((x2 - x1) / ratio_proc - (y2 - y1)), mask.height);
    else
        grow(x1, x2, (int)((y2 - y1) * ratio_proc - (x2 - x1)), mask.width);
    *box = {x1, y1, x2, y2};
    return true;
}

Image crop_image(const Image& img, const PixelBox& b) {
    NUANCE_CHECK(b.x1 >= 0 && b.y1 >= 0 && b.x2 <= img.width && b.y2 <= img.height && b.x1 < b.x2 && b.y1 < b.y2,
                 "crop [", b.x1, ", ", b.x2, ") x [", b.y1, ", ", b.y2, ") is outside the ", img.width, "x",
                 img.height, " image");
    Image o = blank(b.width(), b.height(), img.channels);
    const size_t row = (size_t)b.width() * img.channels;
    for (int y = 0; y < b.height(); ++y)
        std::copy_n(&img.pixels[((size_t)(b.y1 + y) * img.width + b.x1) * img.channels], row,
                    &o.pixels[(size_t)y * row]);
    return o;
}

Image to_rgb(const Image& img) {
    check_rgb(img, "to_rgb");
    if (img.channels == 3) return img;
    Image o = blank(img.width, img.height, 3);
    for (size_t i = 0; i < (size_t)img.width * img.height; ++i)
        for (int c = 0; c < 3; ++c) o.pixels[i * 3 + c] = img.pixels[i * 4 + c];
    return o;
}

Image fill_masked_area(const Image& img_in, const Image& mask) {
    const Image img = to_rgb(img_in);
    check_mask(mask, "fill_masked_area");
    NUANCE_CHECK(mask.width == img.width && mask.height == img.height, "fill: mask ", mask.width, "x", mask.height,
                 " for a ", img.width, "x", img.height, " image");
    const int w = img.width, h = img.height;
    const size_t n = (size_t)w * h;
    // Premultiplied RGBA of the kept pixels (alpha = 255 - mask), as PIL's "RGBa" paste with the inverted mask.
    std::vector<float> kept(n * 4);
    for (size_t i = 0; i < n; ++i) {
        const float a = (255.0f - mask.pixels[i]) / 255.0f;
        for (int c = 0; c < 3; ++c) kept[i * 4 + c] = img.pixels[i * 3 + c] * a;
        kept[i * 4 + 3] = a;
    }
    std::vector<float> acc(n * 4, 0.0f);  // the composite so far, premultiplied
    const std::pair<int, int> passes[] = {{256, 1}, {64, 1}, {16, 2}, {4, 4}, {2, 2}, {0, 1}};
    for (const auto& [radius, repeats] : passes) {
        std::vector<float> b = kept;
        if (radius > 0)
            for (int pass = 0; pass < 3; ++pass)
                b = box_blur_pass(box_blur_pass(b, w, h, 4, pil_box_radius(radius), true), w, h, 4,
                                  pil_box_radius(radius), false);
        for (int rep = 0; rep < repeats; ++rep)
            for (size_t i = 0; i < n; ++i) {  // alpha_composite(b over acc), premultiplied
                const float a = b[i * 4 + 3];
                for (int c = 0; c < 4; ++c) acc[i * 4 + c] = b[i * 4 + c] + acc[i * 4 + c] * (1.0f - a);
            }
    }
    Image o = img;
    for (size_t i = 0; i < n; ++i) {
        const float a = acc[i * 4 + 3];
        for (int c = 0; c < 3; ++c) o.pixels[i * 3 + c] = a > 0 ? round_u8(acc[i * 4 + c] / a) : 0;
    }
    return o;
}

Image outpaint_canvas(const Image& img_in, int left, int right, int top, int bottom, float noise, uint64_t seed) {
    const Image img = to_rgb(img_in);
    NUANCE_CHECK(left >= 0 && right >= 0 && top >= 0 && bottom >= 0 && left <= 8192 && right <= 8192 &&
                     top <= 8192 && bottom <= 8192,
                 "outpaint amounts must be in 0..8192 pixels, got ", left, ",", right, ",", top, ",", bottom);
    NUANCE_CHECK(std::isfinite(noise) && noise >= 0 && noise <= 255, "outpaint noise must be in 0..255, got ", noise);
    const int W = img.width + left + right, H = img.height + top + bottom;
    Image o = blank(W, H, 3);
    auto rng = make_rng(RngKind::Cpu, seed);
    std::vector<float> z((size_t)W * H * 3, 0.0f);
    if (noise > 0) rng->fill_randn(z.data(), (int64_t)z.size());
    for (int y = 0; y < H; ++y)
        for (int x = 0; x < W; ++x) {
            const int sx = std::clamp(x - left, 0, img.width - 1), sy = std::clamp(y - top, 0, img.height - 1);
            const bool inside = x - left == sx && y - top == sy;
            for (int c = 0; c < 3; ++c) {
                const size_t i = ((size_t)y * W + x) * 3 + c;
                const float v = img.pixels[((size_t)sy * img.width + sx) * 3 + c];
                o.pixels[i] = inside ? (uint8_t)v : round_u8(v + noise * z[i]);
            }
        }
    return o;
}

Image outpaint_mask(int w, int h, int left, int right, int top, int bottom, int overlap) {
    NUANCE_CHECK(w > 0 && h > 0 && overlap >= 0, "outpaint_mask: size ", w, "x", h, ", overlap ", overlap);
    Image m = blank(w, h, 1);
    auto edge = [&](int v) { return v > 0 ? v + overlap : 0; };
    const int l = edge(left), r = w - edge(right), t = edge(top), b = h - edge(bottom);
    for (int y = 0; y < h; ++y)
        for (int x = 0; x < w; ++x)
            if (x < l || x >= r || y < t || y >= b) m.pixels[(size_t)y * w + x] = 255;
    return m;
}

Image composite_masked(const Image& gen_in, const Image& orig_in, const Image& mask) {
    const Image gen = to_rgb(gen_in), orig = to_rgb(orig_in);
    check_mask(mask, "composite_masked");
    NUANCE_CHECK(gen.width == orig.width && gen.height == orig.height && mask.width == gen.width &&
                     mask.height == gen.height,
                 "composite: generated ", gen.width, "x", gen.height, ", original ", orig.width, "x", orig.height,
                 ", mask ", mask.width, "x", mask.height, " differ");
    Image o = gen;
    for (size_t i = 0; i < (size_t)gen.width * gen.height; ++i) {
        const int m = mask.pixels[i];
        for (int c = 0; c < 3; ++c) {
            const size_t k = i * 3 + c;
            o.pixels[k] = (uint8_t)((gen.pixels[k] * m + orig.pixels[k] * (255 - m) + 127) / 255);
        }
    }
    return o;
}

Image paste_resized(const Image& base_in, const Image& patch, const PixelBox& b) {
    Image o = to_rgb(base_in);
    NUANCE_CHECK(b.x1 >= 0 && b.y1 >= 0 && b.x2 <= o.width && b.y2 <= o.height && b.x1 < b.x2 && b.y1 < b.y2,
                 "paste box outside the ", o.width, "x", o.height, " image");
    const Image p = to_rgb(patch.width == b.width() && patch.height == b.height()
                               ? patch
                               : resize_image(patch, b.width(), b.height()));
    for (int y = 0; y < b.height(); ++y)
        std::copy_n(&p.pixels[(size_t)y * b.width() * 3], (size_t)b.width() * 3,
                    &o.pixels[((size_t)(b.y1 + y) * o.width + b.x1) * 3]);
    return o;
}

}  // namespace nuance
