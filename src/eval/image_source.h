// Where `nuance eval` gets its images: a folder of PNG/JPEG files (sorted by name), or a model generating them
// from a prompt list (image i: prompt i mod count, seed + i). Images come one at a time, so a 50k-image set never
// sits in memory.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "io/image.h"
#include "pipelines/generate.h"

namespace nuance {

class DiffusionModel;

constexpr int64_t kMaxEvalImages = 10'000'000;
constexpr uint64_t kMaxEvalImagePixels = 1ull << 26;  // 8192 x 8192 per image

// Image files (.png, .jpg, .jpeg, any case) directly in `dir`, sorted; Error naming the folder when it is not
// one or holds none.
std::vector<std::string> list_image_files(const std::string& dir);

// Non-empty lines of a prompt file (at most 1 MiB, 100k prompts; '#' lines are comments; UTF-8 kept as is).
std::vector<std::string> read_prompt_file(const std::string& path);

// Generation settings of a model source; unset values (<= 0, "", cfg < 0) take the model's defaults.
struct GenerationSpec {
    std::vector<std::string> prompts;
    std::string negative_prompt;
    int64_t samples = 0;
    uint64_t seed = 0;
    int steps = 0, width = 0, height = 0;
    float cfg = -1.0f;
    std::string sampler, scheduler;
    std::string save_dir;  // optional: image i is also written there as %06d.png
};

class ImageSource {
public:
    static ImageSource folder(const std::string& dir);
    static ImageSource model(std::shared_ptr<const DiffusionModel> m, GenerationSpec spec);
    int64_t size() const;
    Image get(int64_t i) const;  // decoded / generated RGB image
    std::string prompt(int64_t i) const;  // (model sources) the prompt of image i; "" for folders
    std::string describe() const;  // "folder X (N images)" / "model M, N samples, steps S, cfg C, seed K"
    bool generated() const { return model_ != nullptr; }
    const GenerateParams& params() const { return params_; }  // (model sources) the resolved settings

private:
    std::vector<std::string> files_;
    std::string dir_;
    std::shared_ptr<const DiffusionModel> model_;
    GenerationSpec spec_;
    GenerateParams params_;
};

}  // namespace nuance
