// Checks the CLIP BPE tokenizer against the `clip_tokenizer` golden case (ids exact): used by the tests and
// `nuance check-golden`.
#pragma once
#include <string>
#include <vector>

#include "core/compare.h"

namespace nuance {

std::vector<CompareLine> check_golden_clip_tokenizer(const std::string& case_dir);

}  // namespace nuance
