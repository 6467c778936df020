#include "progress.h"

#include <cstdio>

namespace nuance::cli {

void ProgressBar::update(const std::string& label, int step, int total) {
    if (!enabled_) return;
    const auto now = std::chrono::steady_clock::now();
    if (!active_ || label != label_ || step == 0) {
        if (active_ && label != label_) std::fputc('\n', stderr);
        active_ = true;
        label_ = label;
        start_ = now;
    }
    const double el = std::chrono::duration<double>(now - start_).count();
    const int width = 30;
    const int filled = total > 0 ? step * width / total : 0;
    std::string bar(filled, '#');
    bar.resize(width, '-');
    char rate[48] = "";
    if (step > 0 && el > 0) {
        const double per = el / step;
        if (per >= 1.0) std::snprintf(rate, sizeof rate, "%.2fs/it", per);
        else std::snprintf(rate, sizeof rate, "%.2fit/s", 1.0 / per);
    }
    const double eta = step > 0 ? el / step * (total - step) : 0.0;
    std::fprintf(stderr, "\r%s |%s| %d/%d [%.1fs<%.1fs, %s]   ", label.c_str(), bar.c_str(), step, total, el, eta,
                 rate);
    std::fflush(stderr);
}

void ProgressBar::finish() {
    if (enabled_ && active_) std::fputc('\n', stderr);
    active_ = false;
}

}  // namespace nuance::cli
