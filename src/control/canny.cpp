// cv::Canny (OpenCV 4, modules/imgproc/src/canny.cpp) with apertureSize = 3 and L2gradient = false, as A1111's
// ControlNet extension calls it: cv2.Canny(img, low, high) on the RGB image.
//   1. Sobel dx, dy (3x3, BORDER_REPLICATE) per channel; magnitude |dx| + |dy|; with several channels each pixel
//      takes the channel of the largest magnitude (the first on ties), with its dx, dy.
//   2. Thresholds floor(low), floor(high) (swapped when low > high).
//   3. Non-maximum suppression with OpenCV's integer tangent test (TG22 = tan(22.5 deg) * 2^15), magnitudes
//      outside the image are 0; asymmetric comparisons (> one side, >= the other) exactly as OpenCV's.
//   4. Hysteresis: pixels > high seed, 8-connected candidates (> low, kept by step 3) join.
#include <cmath>
#include <cstdlib>

#include "control/preprocess.h"
#include "core/error.h"

namespace nuance {

Image canny(const Image& in, double low_d, double high_d) {
    NUANCE_CHECK(in.width > 0 && in.height > 0 && (in.channels == 1 || in.channels == 3 || in.channels == 4),
                 "canny: expected a 1, 3 or 4 channel image, got ", in.width, "x", in.height, "x", in.channels);
    NUANCE_CHECK(std::isfinite(low_d) && std::isfinite(high_d) && low_d >= 0 && high_d >= 0 && low_d <= 1e6 &&
                     high_d <= 1e6,
                 "canny: thresholds must be in 0..1e6, got ", low_d, " and ", high_d);
    if (low_d > high_d) std::swap(low_d, high_d);
    const int low = (int)std::floor(low_d), high = (int)std::floor(high_d);
    const int W = in.width, H = in.height, C = in.channels == 4 ? 3 : in.channels, stride = in.channels;
    const size_t n = (size_t)W * (size_t)H;
    std::vector<int> dx(n), dy(n), mag(n);
    auto px = [&](int x, int y, int c) {
        x = x < 0 ? 0 : x >= W ? W - 1 : x;
        y = y < 0 ? 0 : y >= H ? H - 1 : y;
        return (int)in.pixels[((size_t)y * W + x) * stride + c];
    };
    for (int y = 0; y < H; ++y)
        for (int x = 0; x < W; ++x) {
            int best = -1, bx = 0, by = 0;
            for (int c = 0; c < C; ++c) {
                const int gx = (px(x + 1, y - 1, c) - px(x - 1, y - 1, c)) + 2 * (px(x + 1, y, c) - px(x - 1, y, c)) +
                               (px(x + 1, y + 1, c) - px(x - 1, y + 1, c));
                const int gy = (px(x - 1, y + 1, c) - px(x - 1, y - 1, c)) + 2 * (px(x, y + 1, c) - px(x, y - 1, c)) +
                               (px(x + 1, y + 1, c) - px(x + 1, y - 1, c));
                const int m = std::abs(gx) + std::abs(gy);
                if (m > best) {
                    best = m;
                    bx = gx;
                    by = gy;
                }
            }
            const size_t i = (size_t)y * W + x;
            dx[i] = bx;
            dy[i] = by;
            mag[i] = best;
        }
    auto M = [&](int x, int y) { return x < 0 || y < 0 || x >= W || y >= H ? 0 : mag[(size_t)y * W + x]; };
    // 0: not an edge, 1: candidate, 2: edge
    std::vector<uint8_t> map(n, 0);
    std::vector<size_t> stack;
    constexpr int64_t TG22 = 13573;
    for (int y = 0; y < H; ++y)
        for (int x = 0; x < W; ++x) {
            const int m = M(x, y);
            if (m <= low) continue;
            const int64_t xs = dx[(size_t)y * W + x], ys = dy[(size_t)y * W + x];
            const int64_t ax = std::llabs(xs), ay = std::llabs(ys) << 15;
            const int64_t tg22x = ax * TG22;
            bool keep;
            if (ay < tg22x) {
                keep = m > M(x - 1, y) && m >= M(x + 1, y);
            } else {
                const int64_t tg67x = tg22x + (ax << 16);
                if (ay > tg67x) {
                    keep = m > M(x, y - 1) && m >= M(x, y + 1);
                } else {
                    const int s = (xs ^ ys) < 0 ? -1 : 1;
                    keep = m > M(x - s, y - 1) && m > M(x + s, y + 1);
                }
            }
            if (!keep) continue;
            const size_t i = (size_t)y * W + x;
            if (m > high) {
                map[i] = 2;
                stack.push_back(i);
            } else {
                map[i] = 1;
            }
        }
    while (!stack.empty()) {
        const size_t i = stack.back();
        stack.pop_back();
        const int x = (int)(i % (size_t)W), y = (int)(i / (size_t)W);
        for (int oy = -1; oy <= 1; ++oy)
            for (int ox = -1; ox <= 1; ++ox) {
                const int nx = x + ox, ny = y + oy;
                if (nx < 0 || ny < 0 || nx >= W || ny >= H) continue;
                const size_t j = (size_t)ny * W + nx;
                if (map[j] == 1) {
                    map[j] = 2;
                    stack.push_back(j);
                }
            }
    }
    Image out;
    out.width = W;
    out.height = H;
    out.channels = 1;
    out.pixels.resize(n);
    for (size_t i = 0; i < n; ++i) out.pixels[i] = map[i] == 2 ? 255 : 0;
    return out;
}

}  // namespace nuance
