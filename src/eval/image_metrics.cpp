// Shape letters: H x W pixels, C channels (interleaved, as Image stores them).
#include "eval/image_metrics.h"

#include <cmath>
#include <limits>

#include "core/error.h"

namespace nuance {

namespace {

void check_pair(const Image& a, const Image& b, const char* what) {
    NUANCE_CHECK(a.width == b.width && a.height == b.height && a.channels == b.channels, what, ": images of ",
                 a.width, "x", a.height, "x", a.channels, " and ", b.width, "x", b.height, "x", b.channels,
                 " differ in size");
    NUANCE_CHECK(a.width > 0 && a.height > 0 && a.channels > 0 &&
                     a.pixels.size() == (size_t)a.width * a.height * a.channels && b.pixels.size() == a.pixels.size(),
                 what, ": an image's pixel buffer does not match its ", a.width, "x", a.height, "x", a.channels,
                 " size");
}

constexpr int kRadius = 5;  // int(3.5 * 1.5 + 0.5): scipy's truncate 3.5 at sigma 1.5 -> 11 taps

// scipy.ndimage's 'reflect' (half-sample symmetric: d c b a | a b c d | d c b a) index.
int reflect(int i, int n) {
    while (i < 0 || i >= n) i = i < 0 ? -i - 1 : 2 * n - i - 1;
    return i;
}

// Separable Gaussian blur of one H x W plane, in double.
std::vector<double> blur(const std::vector<double>& x, int h, int w, const double* k) {
    std::vector<double> t((size_t)h * w), y((size_t)h * w);
    for (int r = 0; r < h; ++r)
        for (int c = 0; c < w; ++c) {
            double s = 0;
            for (int j = -kRadius; j <= kRadius; ++j) s += k[j + kRadius] * x[(size_t)r * w + reflect(c + j, w)];
            t[(size_t)r * w + c] = s;
        }
    for (int r = 0; r < h; ++r)
        for (int c = 0; c < w; ++c) {
            double s = 0;
            for (int j = -kRadius; j <= kRadius; ++j) s += k[j + kRadius] * t[(size_t)reflect(r + j, h) * w + c];
            y[(size_t)r * w + c] = s;
        }
    return y;
}

}  // namespace

double image_mse(const Image& a, const Image& b) {
    check_pair(a, b, "mse");
    double s = 0;
    for (size_t i = 0; i < a.pixels.size(); ++i) {
        const double d = (double)a.pixels[i] - (double)b.pixels[i];
        s += d * d;
    }
    return s / (double)a.pixels.size();
}

double psnr(const Image& a, const Image& b) {
    const double mse = image_mse(a, b);
    return mse == 0 ? std::numeric_limits<double>::infinity() : 10.0 * std::log10(255.0 * 255.0 / mse);
}

double psnr_pooled(const std::vector<Image>& a, const std::vector<Image>& b) {
    NUANCE_CHECK(a.size() == b.size() && !a.empty(), "psnr: ", a.size(), " images against ", b.size(),
                 " (need the same number, at least one)");
    double s = 0, n = 0;
    for (size_t i = 0; i < a.size(); ++i) {
        s += image_mse(a[i], b[i]) * (double)a[i].pixels.size();
        n += (double)a[i].pixels.size();
    }
    const double mse = s / n;
    return mse == 0 ? std::numeric_limits<double>::infinity() : 10.0 * std::log10(255.0 * 255.0 / mse);
}

double ssim(const Image& a, const Image& b) {
    check_pair(a, b, "ssim");
    const int h = a.height, w = a.width, ch = a.channels;
    NUANCE_CHECK(h >= 2 * kRadius + 1 && w >= 2 * kRadius + 1, "ssim: images of ", w, "x", h,
                 " are smaller than the 11x11 window");
    double k[2 * kRadius + 1], ks = 0;
    for (int j = -kRadius; j <= kRadius; ++j) ks += k[j + kRadius] = std::exp(-0.5 * j * j / (1.5 * 1.5));
    for (double& v : k) v /= ks;
    const double c1 = (0.01 * 255) * (0.01 * 255), c2 = (0.03 * 255) * (0.03 * 255);
    double total = 0;
    const size_t n = (size_t)h * w;
    for (int c = 0; c < ch; ++c) {
        std::vector<double> x(n), y(n), xx(n), yy(n), xy(n);
        for (size_t i = 0; i < n; ++i) {
            x[i] = a.pixels[i * ch + c];
            y[i] = b.pixels[i * ch + c];
            xx[i] = x[i] * x[i];
            yy[i] = y[i] * y[i];
            xy[i] = x[i] * y[i];
        }
        const std::vector<double> ux = blur(x, h, w, k), uy = blur(y, h, w, k), uxx = blur(xx, h, w, k),
                                  uyy = blur(yy, h, w, k), uxy = blur(xy, h, w, k);
        double sum = 0;
        for (int r = kRadius; r < h - kRadius; ++r)
            for (int q = kRadius; q < w - kRadius; ++q) {
                const size_t i = (size_t)r * w + q;
                const double vx = uxx[i] - ux[i] * ux[i], vy = uyy[i] - uy[i] * uy[i], vxy = uxy[i] - ux[i] * uy[i];
                sum += (2 * ux[i] * uy[i] + c1) * (2 * vxy + c2) /
                       ((ux[i] * ux[i] + uy[i] * uy[i] + c1) * (vx + vy + c2));
            }
        total += sum / (double)((h - 2 * kRadius) * (w - 2 * kRadius));
    }
    return total / ch;
}

}  // namespace nuance
