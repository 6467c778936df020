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

}  // namespace nuance::cli
