// Checks the CLIP image tower (models/clip_vision), CLIPImageProcessor and CLIP score (eval/clip_score.h) against the
// golden case `clip_vision` (tests/data/golden/clip_vision): used by the tests and by `nuance check-golden`.
#pragma once
#include <string>
#include <vector>

#include "core/compare.h"

namespace nuance {

// imageN_resized_u8 (PIL bicubic) and pixel_values must be exact; the encoder outputs (hidden_states.i,
// last/penultimate hidden state, pooled_output, image_embeds, the uncond ones for zero pixels) and the clip_score
// part (the captions tokenized again and compared with input_ids exactly, image/text embeds, per_pair, the
// torchmetrics score, the caption x image matrix) use the case's suggested_atol. Lines "clip_vision/<tensor>".
// Throws nuance::Error when the case folder or its files cannot be read.
std::vector<CompareLine> check_golden_clip_vision(const std::string& case_dir);

}  // namespace nuance
