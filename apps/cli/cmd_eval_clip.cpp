// nuance eval clip-score: placeholder until its developer fills it in (add the subcommand to `eval`, return its Runner;
// see add_eval in cmd_eval.cpp). Registers nothing for now.
#include "commands.h"

namespace nuance::cli {

Runner add_eval_clip(CLI::App&) { return {}; }

}  // namespace nuance::cli
