// `nuance train --model lcm` (latent consistency distillation, src/train/lcm_distill.h): its flags on the train
// subcommand and its run, called by cmd_train.cpp.
#pragma once
#include <CLI/CLI.hpp>

#include "train/lcm_distill.h"

namespace nuance::cli {

void add_lcm_options(CLI::App& train, LcmOptions& l);
// Validates (a bad value is a usage error, exit 2), distils with a progress line, prints the report; returns 0.
// `train` is the train subcommand (which flags were given: --lora-rank makes it an LCM-LoRA run).
int run_lcm(TrainOptions& o, LcmOptions& l, const CLI::App& train, bool arch_given, bool quiet);

}  // namespace nuance::cli
