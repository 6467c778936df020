// A terminal progress bar on stderr: step/total, it/s (or s/it), elapsed and ETA.
#pragma once
#include <chrono>
#include <string>

namespace nuance::cli {

class ProgressBar {
public:
    explicit ProgressBar(bool enabled) : enabled_(enabled) {}
    void update(const std::string& label, int step, int total);
    void finish();

private:
    bool enabled_;
    bool active_ = false;
    std::string label_;
    std::chrono::steady_clock::time_point start_;
};

}  // namespace nuance::cli
