// Helpers for the data set tests: a scratch folder removed at the end, small PNGs with known pixels, text files.
#pragma once
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <string>

#include "io/image.h"

namespace nuance::test {

class TempDir {
public:
    explicit TempDir(const std::string& tag) {
        static std::atomic<int> counter{0};
        path_ = std::filesystem::path(NUANCE_SCRATCH_DIR) /
                ("nuance_" + tag + "_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
        std::filesystem::remove_all(path_);
        std::filesystem::create_directories(path_);
    }
    ~TempDir() {
        std::error_code ec;
        std::filesystem::remove_all(path_, ec);
    }
    const std::filesystem::path& path() const { return path_; }
    std::string operator/(const std::string& rel) const { return (path_ / rel).string(); }

private:
    std::filesystem::path path_;
};

inline void write_text(const std::string& path, const std::string& text) {
    std::filesystem::create_directories(std::filesystem::path(path).parent_path());
    std::ofstream f(path, std::ios::binary);
    f << text;
}

// w x h RGB image whose pixel (x, y) is (r0 + x, g0 + y, b): distinct columns make flips and crops visible.
inline Image gradient_image(int w, int h, int r0 = 0, int g0 = 0, int b = 100) {
    Image img;
    img.width = w;
    img.height = h;
    img.channels = 3;
    img.pixels.resize((size_t)w * h * 3);
    for (int y = 0; y < h; ++y)
        for (int x = 0; x < w; ++x) {
            uint8_t* p = &img.pixels[((size_t)y * w + x) * 3];
            p[0] = (uint8_t)(r0 + x);
            p[1] = (uint8_t)(g0 + y);
            p[2] = (uint8_t)b;
        }
    return img;
}

inline void write_image(const std::string& path, const Image& img) {
    std::filesystem::create_directories(std::filesystem::path(path).parent_path());
    write_png(path, img);
}

}  // namespace nuance::test
