#include "eval_common.h"

#include <filesystem>

#include "core/error.h"
#include "models/model_family.h"

namespace nuance::cli {

void add_generation_options(CLI::App* s, GenArgs& g, bool steps_cfg, const std::string& seed_help) {
    s->add_option("-m,--model", g.model, "Generate the images with this model (what `nuance generate -m` loads)");
    s->add_option("--prompts", g.prompts, "Prompt file for -m: one per line, image i uses line i mod count");
    s->add_option("--samples", g.samples, "Images to generate with -m");
    s->add_option("-s,--seed", g.seed, "Seed of image 0 (image i: seed + i)" + seed_help)->capture_default_str();
    if (steps_cfg) {
        s->add_option("--steps", g.steps, "Sampling steps (default: the model's)");
        s->add_option("--cfg,--cfg-scale", g.cfg, "Guidance scale (default: the model's)");
    }
    s->add_option("--negative-prompt", g.negative, "Negative prompt for -m");
    s->add_option("-W,--width", g.width, "Generated width (default: the model's)");
    s->add_option("-H,--height", g.height, "Generated height (default: the model's)");
    s->add_option("--sampler", g.sampler, "Sampler (default: the model's)");
    s->add_option("--scheduler", g.scheduler, "Sigma schedule");
    s->add_option("--save-samples", g.save_samples, "Also write the generated images to this folder (%06d.png)");
}

std::shared_ptr<const DiffusionModel> load_generation_model(const GenArgs& g) {
    if (g.model.empty()) {
        NUANCE_CHECK(g.prompts.empty() && g.samples == 0, "usage: --prompts/--samples need -m MODEL");
        return nullptr;
    }
    NUANCE_CHECK(!g.prompts.empty(), "usage: -m MODEL needs --prompts FILE");
    NUANCE_CHECK(g.samples >= 1, "usage: -m MODEL needs --samples N (>= 1)");
    ModelLoadOptions lo;
    lo.precision = Precision::Auto;
    return std::shared_ptr<const DiffusionModel>(load_model(g.model, lo).release());
}

ImageSource generation_source(const GenArgs& g, std::shared_ptr<const DiffusionModel> model, int steps, float cfg) {
    GenerationSpec s;
    s.prompts = read_prompt_file(g.prompts);
    s.negative_prompt = g.negative;
    s.samples = g.samples;
    s.seed = g.seed;
    s.steps = steps;
    s.cfg = cfg;
    s.width = g.width;
    s.height = g.height;
    s.sampler = g.sampler;
    s.scheduler = g.scheduler;
    s.save_dir = g.save_samples;
    if (!s.save_dir.empty()) {
        std::error_code ec;
        std::filesystem::create_directories(s.save_dir, ec);
        NUANCE_CHECK(!ec, "--save-samples: cannot create the folder '", s.save_dir, "': ", ec.message());
    }
    return ImageSource::model(std::move(model), s);
}

}  // namespace nuance::cli
