// `nuance check-golden DIR`: runs every case of a golden folder (../shared/golden format) that the engine supports
// and compares with the reference, one CompareLine per tensor; unsupported cases give SKIP lines with the reason.
#pragma once
#include <functional>
#include <string>
#include <vector>

#include "core/compare.h"

namespace nuance {

// Cases in `dir` (sub-folders with a case.json), sorted by name. `dir` may itself be one case folder.
std::vector<std::string> golden_case_dirs(const std::string& dir);

// Runs one case folder. Never throws for a failing case: errors become FAIL lines naming the problem.
std::vector<CompareLine> check_golden_case(const std::string& case_dir);

// Runs all cases; calls `on_line` as each line is ready (streaming output).
std::vector<CompareLine> check_golden_dir(const std::string& dir,
                                          const std::function<void(const CompareLine&)>& on_line = {});

// "<case>/<tensor> PASS|FAIL|SKIP max_abs=<float> atol=<float> [reason]"
std::string format_line(const CompareLine& l);

}  // namespace nuance
