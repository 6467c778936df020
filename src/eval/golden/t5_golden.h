// Golden runners of the T5 cases (../shared/golden: t5_tokenizer, t5_tokenizer_real, t5_encoder).
#pragma once
#include <string>
#include <vector>

#include "core/compare.h"

namespace nuance {

// Exact ids of every prompt in prompts.json, for each ids_* tensor of the case (ids_legacy / ids_nonlegacy,
// ids_256 / ids_512 [_nonlegacy]) and num_tokens. The vocabulary is the case's *.model file, else the built-in one.
std::vector<CompareLine> check_golden_t5_tokenizer(const std::string& case_dir);

// T5EncoderModel: last_hidden_state (unmasked and masked) and every hidden state, within the case's atol.
std::vector<CompareLine> check_golden_t5_encoder(const std::string& case_dir);

}  // namespace nuance
