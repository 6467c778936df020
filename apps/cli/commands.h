// The nuance CLI's subcommands. Each registers its flags on the app and returns the function that runs it.
#pragma once
#include <CLI/CLI.hpp>
#include <functional>
#include <string>

#include "core/dtype.h"

namespace nuance::cli {

using Runner = std::function<int()>;

// --precision's value; a bad one is a usage error (exit 2).
Precision parse_usage_precision(const std::string& s);
// --type's value ("" = as stored): checked (a bad one is a usage error, exit 2) and returned as given.
std::string check_usage_weight_type(const std::string& s);
// The help text of --type, the same in generate, bench and serve.
extern const char* const kWeightTypeHelp;

Runner add_generate(CLI::App& app);
Runner add_info(CLI::App& app);
Runner add_quantize(CLI::App& app);
Runner add_check_golden(CLI::App& app);
Runner add_make_random(CLI::App& app);
Runner add_samplers(CLI::App& app);
Runner add_bench(CLI::App& app);
Runner add_serve(CLI::App& app);
Runner add_prepare_emoji(CLI::App& app);
Runner add_train(CLI::App& app);
Runner add_eval_emoji(CLI::App& app);
Runner add_eval_quant(CLI::App& app);

// `nuance eval <metric>` (apps/cli/cmd_eval.cpp). Each metric file apps/cli/cmd_eval_*.cpp defines one
// add_eval_X(CLI::App& eval): it adds its subcommand(s) to `eval` (eval.add_subcommand("lpips", ...)) and returns
// the Runner that runs whichever of them parsed. cmd_eval.cpp calls every add_eval_X below, in this order.
Runner add_eval(CLI::App& app);
Runner add_eval_fid(CLI::App& eval);    // fid, kid, is, sweep (cmd_eval_fid.cpp)
Runner add_eval_lpips(CLI::App& eval);  // lpips (cmd_eval_lpips.cpp)
Runner add_eval_clip(CLI::App& eval);   // clip-score (cmd_eval_clip.cpp)
Runner add_eval_pr(CLI::App& eval);     // pr: precision/recall (cmd_eval_pr.cpp)

}  // namespace nuance::cli
