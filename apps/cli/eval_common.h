// What the `nuance eval` metrics share: generating the images of a set with a model (-m MODEL --prompts FILE
// --samples N --seed S and the sampling flags) and where features come from (--features / --inception).
#pragma once
#include <CLI/CLI.hpp>
#include <memory>
#include <string>

#include "eval/image_source.h"

namespace nuance {
class DiffusionModel;
}

namespace nuance::cli {

struct GenArgs {
    std::string model, prompts, negative, sampler, scheduler, save_samples;
    int64_t samples = 0;
    uint64_t seed = 0;
    int steps = 0, width = 0, height = 0;
    float cfg = -1.0f;
};

// -m, --prompts, --samples, -s/--seed, --negative-prompt, -W, -H, --sampler, --scheduler, --save-samples; with
// `steps_cfg` also --steps and --cfg (the sweep takes lists instead). `seed_help` says what else the seed seeds.
void add_generation_options(CLI::App* s, GenArgs& g, bool steps_cfg, const std::string& seed_help = "");

// The model of -m (nullptr without -m), after the flag checks: -m needs --prompts and --samples >= 1, and those
// need -m. Loaded once per process (every rank of an mpirun loads its own copy).
std::shared_ptr<const DiffusionModel> load_generation_model(const GenArgs& g);

// The images -m makes, with `steps` / `cfg` (<= 0 / < 0: the model's defaults); creates --save-samples' folder.
ImageSource generation_source(const GenArgs& g, std::shared_ptr<const DiffusionModel> model, int steps, float cfg);

}  // namespace nuance::cli
