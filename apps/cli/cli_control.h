// `nuance generate` ControlNet options: --control-net FILE --control-image PNG [--control-strength W]
// [--control-start F --control-end F] [--control-preprocess SPEC] [--control-mode MODE], each repeatable (one per
// ControlNet, or one value for all), and --guess-mode (diffusers' guess mode for every unit).
#pragma once
#include <CLI/CLI.hpp>
#include <string>
#include <vector>

#include "control/preprocess.h"
#include "models/controlnet/control_stack.h"
#include "models/diffusion_model.h"

namespace nuance::cli {

struct ControlArgs {
    std::vector<std::string> nets, images, preprocess, modes;
    std::vector<float> strengths, starts, ends;
    bool guess_mode = false;
    // filled by check(): the preprocessed images, the parsed modes
    std::vector<Image> ready;
    std::vector<std::string> modules;
    std::vector<ControlMode> parsed_modes;
};

void add_control_options(CLI::App* c, ControlArgs& a);
// Everything that can be checked before the model loads: counts, ranges, preprocessor specs, the images (read and
// preprocessed). Usage errors (InvalidArgument) name the flag and the value.
void check_control_args(ControlArgs& a);
// Loads the ControlNets for `m` (Error naming both when one is for another model) into units.
std::vector<ControlUnit> load_control_units(const ControlArgs& a, const DiffusionModel& m);

}  // namespace nuance::cli
