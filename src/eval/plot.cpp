#include "eval/plot.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "core/error.h"
#include "io/bitmap_font.h"
#include "io/contact_sheet.h"

namespace nuance {

namespace {

using Rgb = std::array<uint8_t, 3>;

Image blank(int w, int h) {
    Image im;
    im.width = w;
    im.height = h;
    im.channels = 3;
    im.pixels.assign((size_t)w * (size_t)h * 3, 255);
    return im;
}

void put(Image& im, int x, int y, Rgb c) {
    if (x < 0 || y < 0 || x >= im.width || y >= im.height) return;
    uint8_t* p = &im.pixels[((size_t)y * (size_t)im.width + (size_t)x) * 3];
    p[0] = c[0];
    p[1] = c[1];
    p[2] = c[2];
}

void rect(Image& im, int x0, int y0, int x1, int y1, Rgb c) {
    for (int y = y0; y <= y1; ++y)
        for (int x = x0; x <= x1; ++x) put(im, x, y, c);
}

void line(Image& im, int x0, int y0, int x1, int y1, Rgb c, int thick = 1) {
    const int dx = std::abs(x1 - x0), dy = -std::abs(y1 - y0);
    const int sx = x0 < x1 ? 1 : -1, sy = y0 < y1 ? 1 : -1;
    int err = dx + dy;
    for (int guard = 0; guard < 20000; ++guard) {
        rect(im, x0 - thick / 2, y0 - thick / 2, x0 + (thick - 1) / 2, y0 + (thick - 1) / 2, c);
        if (x0 == x1 && y0 == y1) break;
        const int e2 = 2 * err;
        if (e2 >= dy) {
            err += dy;
            x0 += sx;
        }
        if (e2 <= dx) {
            err += dx;
            y0 += sy;
        }
    }
}

std::string fmt(double v) {
    char b[32];
    const double a = std::abs(v);
    if (a != 0 && (a < 1e-3 || a >= 1e5)) std::snprintf(b, sizeof b, "%.2e", v);
    else if (a < 1) std::snprintf(b, sizeof b, "%.4f", v);
    else std::snprintf(b, sizeof b, "%.4g", v);
    return b;
}

// "Nice" tick step for a range (1, 2, 5 x 10^k).
double nice_step(double range, int target) {
    const double raw = range / std::max(1, target);
    const double p = std::pow(10.0, std::floor(std::log10(raw)));
    for (double m : {1.0, 2.0, 5.0, 10.0})
        if (m * p >= raw) return m * p;
    return 10 * p;
}

const Rgb kPalette[] = {{31, 119, 180}, {255, 127, 14}, {44, 160, 44}, {214, 39, 40},
                        {148, 103, 189}, {140, 86, 75}, {227, 119, 194}, {127, 127, 127}};

}  // namespace

Image line_chart(const ChartSpec& s) {
    NUANCE_CHECK(s.width >= 200 && s.width <= 4096 && s.height >= 200 && s.height <= 4096, "plot: size ", s.width,
                 "x", s.height, " outside 200..4096");
    double xmin = INFINITY, xmax = -INFINITY, ymin = INFINITY, ymax = -INFINITY;
    for (const ChartSeries& c : s.series) {
        NUANCE_CHECK(c.x.size() == c.y.size(), "plot: series '", c.label, "' has ", c.x.size(), " x and ", c.y.size(),
                     " y values");
        for (size_t i = 0; i < c.x.size(); ++i) {
            if (!std::isfinite(c.x[i]) || !std::isfinite(c.y[i])) continue;
            xmin = std::min(xmin, c.x[i]);
            xmax = std::max(xmax, c.x[i]);
            ymin = std::min(ymin, c.y[i]);
            ymax = std::max(ymax, c.y[i]);
        }
    }
    if (!std::isfinite(xmin)) xmin = 0, xmax = 1, ymin = 0, ymax = 1;
    if (xmax - xmin < 1e-12) xmin -= 1, xmax += 1;
    if (ymax - ymin < 1e-12 * std::max(1.0, std::abs(ymax))) {
        const double d = std::max(std::abs(ymax) * 0.1, 1e-6);
        ymin -= d;
        ymax += d;
    }
    const double ystep = nice_step(ymax - ymin, 5);
    ymin = std::floor(ymin / ystep) * ystep;
    ymax = std::ceil(ymax / ystep) * ystep;
    Image im = blank(s.width, s.height);
    const int left = 70, right = s.width - 20, top = 34, bottom = s.height - 60;
    const Rgb black{0, 0, 0}, grid{225, 225, 225};
    auto X = [&](double x) { return left + (int)std::lround((x - xmin) / (xmax - xmin) * (right - left)); };
    auto Y = [&](double y) { return bottom - (int)std::lround((y - ymin) / (ymax - ymin) * (bottom - top)); };
    draw_text(im, (s.width - text_width(s.title, 2)) / 2, 8, s.title, black, 2);
    for (int i = 0; ymin + i * ystep <= ymax + ystep * 1e-9 && i < 50; ++i) {
        const double v = ymin + i * ystep;
        line(im, left, Y(v), right, Y(v), grid);
        const std::string t = fmt(v);
        draw_text(im, left - 6 - text_width(t), Y(v) - 3, t, black);
    }
    // x ticks at the data's x values (a sweep's settings), up to 20, else nice steps.
    std::vector<double> xs;
    for (const ChartSeries& c : s.series)
        for (double x : c.x)
            if (std::isfinite(x) && std::find(xs.begin(), xs.end(), x) == xs.end()) xs.push_back(x);
    if (xs.size() > 20 || xs.size() < 2) {
        xs.clear();
        const double st = nice_step(xmax - xmin, 6);
        for (double v = std::ceil(xmin / st) * st; v <= xmax + st * 1e-9 && xs.size() < 50; v += st) xs.push_back(v);
    }
    for (double v : xs) {
        line(im, X(v), bottom, X(v), bottom + 4, black);
        const std::string t = fmt(v);
        draw_text(im, X(v) - text_width(t) / 2, bottom + 8, t, black);
    }
    line(im, left, top, left, bottom, black);
    line(im, left, bottom, right, bottom, black);
    draw_text(im, (left + right - text_width(s.x_label)) / 2, bottom + 22, s.x_label, black);
    draw_text(im, 4, top - 14, s.y_label, black);
    int legend_x = left;
    for (size_t k = 0; k < s.series.size(); ++k) {
        const ChartSeries& c = s.series[k];
        const Rgb col = kPalette[k % 8];
        std::vector<size_t> order(c.x.size());
        for (size_t i = 0; i < order.size(); ++i) order[i] = i;
        std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return c.x[a] < c.x[b]; });
        int px = -1, py = -1;
        for (size_t i : order) {
            if (!std::isfinite(c.x[i]) || !std::isfinite(c.y[i])) continue;
            const int x = X(c.x[i]), y = Y(c.y[i]);
            if (px >= 0) line(im, px, py, x, y, col, 2);
            rect(im, x - 3, y - 3, x + 3, y + 3, col);
            px = x;
            py = y;
        }
        const int ly = s.height - 18;
        rect(im, legend_x, ly, legend_x + 10, ly + 6, col);
        draw_text(im, legend_x + 14, ly, c.label, black);
        legend_x += 24 + text_width(c.label) + 12;
    }
    return im;
}

Image value_panel(const std::string& title, const std::vector<std::pair<std::string, std::string>>& rows, int width) {
    const int h = 40 + (int)rows.size() * 30 + 10;
    Image im = blank(std::max(200, width), h);
    const Rgb black{0, 0, 0};
    draw_text(im, 10, 10, title, black, 2);
    int y = 44;
    for (const auto& [k, v] : rows) {
        draw_text(im, 10, y + 4, k, {90, 90, 90});
        draw_text(im, 150, y, v, black, 2);
        y += 30;
    }
    return im;
}

Image beside(const Image& a, const Image& b, int gap) {
    NUANCE_CHECK(a.channels == 3 && b.channels == 3, "plot: RGB images expected");
    Image im = blank(a.width + gap + b.width, std::max(a.height, b.height));
    auto blit = [&](const Image& s, int ox) {
        for (int y = 0; y < s.height; ++y)
            std::copy_n(&s.pixels[(size_t)y * (size_t)s.width * 3], (size_t)s.width * 3,
                        &im.pixels[((size_t)y * (size_t)im.width + (size_t)ox) * 3]);
    };
    blit(a, 0);
    blit(b, a.width + gap);
    return im;
}

Image sample_sheet(const std::vector<Image>& images, const std::vector<std::string>& captions, int size, int max) {
    std::vector<Image> thumbs;
    std::vector<std::string> caps;
    for (size_t i = 0; i < images.size() && (int)i < max; ++i) {
        const Image& s = images[i];
        const double f = (double)size / (double)std::max(s.width, s.height);
        const int w = std::max(1, (int)std::lround(s.width * f)), h = std::max(1, (int)std::lround(s.height * f));
        Image t = (w == s.width && h == s.height) ? s : resize_image(s, w, h);
        if (t.channels != 3) t = resize_image(s, w, h);
        thumbs.push_back(std::move(t));
        if (i < captions.size()) caps.push_back(captions[i]);
    }
    if (thumbs.empty()) return blank(size, size);
    ContactSheetOptions o;
    o.scale = 1;
    o.columns = std::min<int>(4, (int)thumbs.size());
    o.caption_lines = caps.empty() ? 0 : 2;
    if (caps.size() != thumbs.size()) caps.clear();
    return contact_sheet(thumbs, caps, o);
}

}  // namespace nuance
