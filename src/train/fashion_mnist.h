// Fashion-MNIST (Xiao et al. 2017) from the IDX files of Debian's dataset-fashion-mnist package: 60,000 train and
// 10,000 test 28x28 grey images of 10 clothing classes, the caption being the class name. The quick data set for
// smoke-training (pixel-space DDPM, `nuance train --model ddpm`).
#pragma once
#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "train/dataset.h"

namespace nuance {

// Where `apt-get install dataset-fashion-mnist` puts the (gzipped) IDX files.
inline constexpr const char* kFashionMnistDefaultDir = "/usr/share/datasets/fashion-mnist";

struct FashionMnistOptions {
    std::string dir = kFashionMnistDefaultDir;
    std::string split = "train";  // "train" (60k) or "test" (10k, files t10k-*)
    bool pad_to_32 = false;       // [1, 32, 32] with a 2-px border of the background value -1
    bool random_flip = false;
    float caption_dropout = 0;
    int64_t limit = 0;  // > 0: only the first `limit` images
};

class FashionMnistDataset final : public Dataset {
public:
    explicit FashionMnistDataset(const FashionMnistOptions& options = {});
    int64_t size() const override { return (int64_t)labels_.size(); }
    Sample get(int64_t index, Mt19937& rng) const override;  // image [1, 28, 28] (or [1, 32, 32]) in [-1, 1]
    std::string describe(int64_t index) const override;
    int label(int64_t index) const;
    static const std::array<const char*, 10>& class_names();  // "T-shirt/top", "Trouser", ... "Ankle boot"

private:
    FashionMnistOptions options_;
    std::string images_path_;
    int rows_ = 0, cols_ = 0;
    std::vector<uint8_t> pixels_;  // N * rows * cols
    std::vector<uint8_t> labels_;
};

// One IDX file (plain or gzip): its dimensions and the unsigned-byte payload. Only type 0x08 (ubyte) is read.
struct IdxArray {
    std::vector<int64_t> dims;
    std::vector<uint8_t> data;
};
IdxArray read_idx(const std::string& path);

}  // namespace nuance
