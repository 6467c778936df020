#include "eval/image_source.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>

#include "core/error.h"
#include "io/weight_file.h"
#include "io/weights.h"
#include "models/diffusion_model.h"
#include "pipelines/generate_defaults.h"

namespace nuance {

std::vector<std::string> list_image_files(const std::string& dir) {
    NUANCE_CHECK_CODE(path_exists(dir), NotFound, "image folder '", dir, "' does not exist");
    NUANCE_CHECK(is_directory(dir), "image folder '", dir, "' is not a directory");
    std::vector<std::string> out;
    std::error_code ec;
    for (std::filesystem::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
        std::string ext = it->path().extension().string();
        std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return (char)std::tolower(c); });
        if (ext != ".png" && ext != ".jpg" && ext != ".jpeg") continue;
        std::error_code e2;
        if (!it->is_regular_file(e2)) continue;
        out.push_back(it->path().string());
        NUANCE_CHECK((int64_t)out.size() <= kMaxEvalImages, "image folder '", dir, "' holds more than ",
                     kMaxEvalImages, " images");
    }
    NUANCE_CHECK(!ec, "image folder '", dir, "' cannot be read: ", ec.message());
    NUANCE_CHECK(!out.empty(), "image folder '", dir, "' holds no PNG or JPEG files");
    std::sort(out.begin(), out.end());
    return out;
}

std::vector<std::string> read_prompt_file(const std::string& path) {
    const std::string text = read_small_file(path, 1 << 20, "prompt file");
    std::vector<std::string> out;
    size_t start = 0;
    while (start < text.size()) {
        size_t end = text.find('\n', start);
        if (end == std::string::npos) end = text.size();
        std::string line = text.substr(start, end - start);
        if (!line.empty() && line.back() == '\r') line.pop_back();
        if (!line.empty() && line[0] != '#') out.push_back(line);
        NUANCE_CHECK(out.size() <= 100000, "prompt file '", path, "' holds more than 100000 prompts");
        start = end + 1;
    }
    NUANCE_CHECK(!out.empty(), "prompt file '", path, "' holds no prompts (one per line; '#' starts a comment)");
    return out;
}

ImageSource ImageSource::folder(const std::string& dir) {
    ImageSource s;
    s.dir_ = dir;
    s.files_ = list_image_files(dir);
    return s;
}

ImageSource ImageSource::model(std::shared_ptr<const DiffusionModel> m, GenerationSpec spec) {
    NUANCE_CHECK(m, "eval: no model");
    NUANCE_CHECK(!spec.prompts.empty(), "usage: generating needs --prompts FILE");
    NUANCE_CHECK(spec.samples >= 1 && spec.samples <= kMaxEvalImages, "usage: --samples must be 1..", kMaxEvalImages,
                 ", got ", spec.samples);
    NUANCE_CHECK(spec.seed <= (uint64_t)INT64_MAX - (uint64_t)spec.samples, "usage: --seed ", spec.seed,
                 " + --samples ", spec.samples, " overflows the seed range");
    ImageSource s;
    GenerateParams& p = s.params_;
    p.negative_prompt = spec.negative_prompt;
    p.width = spec.width;
    p.height = spec.height;
    p.steps = spec.steps;
    p.cfg_scale = spec.cfg;
    p.sampler = spec.sampler;
    p.scheduler = spec.scheduler;
    apply_generation_defaults(p, m->generation_defaults());
    p.prompt = spec.prompts[0];
    p.seed = (int64_t)spec.seed;
    validate_params(*m, p);  // before minutes of work, not after
    s.model_ = std::move(m);
    s.spec_ = std::move(spec);
    return s;
}

int64_t ImageSource::size() const { return model_ ? spec_.samples : (int64_t)files_.size(); }

Image ImageSource::get(int64_t i) const {
    NUANCE_CHECK(i >= 0 && i < size(), "image source: index ", i, " outside 0..", size() - 1);
    if (!model_) return read_image(files_[(size_t)i], kMaxEvalImagePixels);
    GenerateParams p = params_;
    p.prompt = prompt(i);
    p.seed = (int64_t)(spec_.seed + (uint64_t)i);
    Image im = generate(*model_, p).at(0).image;
    if (!spec_.save_dir.empty()) {
        char name[32];
        std::snprintf(name, sizeof name, "/%06lld.png", (long long)i);
        write_png(spec_.save_dir + name, im);
    }
    return im;
}

std::string ImageSource::prompt(int64_t i) const {
    NUANCE_CHECK(i >= 0 && i < size(), "image source: index ", i, " outside 0..", size() - 1);
    if (!model_) return "";
    return spec_.prompts[(size_t)(i % (int64_t)spec_.prompts.size())];
}

std::string ImageSource::describe() const {
    if (!model_) return str("folder ", dir_, " (", files_.size(), " images)");
    return str("model ", model_->path, ", ", spec_.samples, " samples, ", params_.width, "x", params_.height,
               ", steps ", params_.steps, ", cfg ", params_.cfg_scale, ", ", params_.sampler, ", seed ", spec_.seed);
}

}  // namespace nuance
