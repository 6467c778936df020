// Checks every numeric option of every subcommand gets before its value is used (registered once, in main):
//   FLOAT options refuse nan, inf and values a float cannot hold ("--eta nan", "--lr 1e999");
//   INT/UINT options take plain decimal only, refuse values their type cannot hold instead of clamping
//   ("--seed 99999999999999999999") and negative values for unsigned ones; "010" is ten, not octal eight;
//   -t/--threads is 0 (all cores) or 1..max_threads() (core/threads.h); serve validates its own.
// A refused value is a usage error (exit 2) naming the flag and the value.
#pragma once
#include <CLI/CLI.hpp>

namespace nuance::cli {

void add_strict_number_checks(CLI::App& app);

// The checks themselves (empty string: accepted); `value` may be rewritten (leading zeros dropped).
std::string check_float_text(std::string& value);
std::string check_int_text(std::string& value, bool is_unsigned);

}  // namespace nuance::cli
