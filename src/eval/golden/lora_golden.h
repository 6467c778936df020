// Golden case `lora` (../shared/golden/lora): kohya LoRA + LoCon, diffusers/PEFT, files without or with some
// alphas, an SDXL kohya file with original (SGM) UNet names and lora_te1_/lora_te2_, LyCORIS LoHa and LoKr, merged
// at strength 0.7 into the tiny SD1.5 / SDXL UNets and CLIP text encoders of the unet_sd15, unet_sdxl and clip_text
// cases (sibling folders). Checks the merged weights of the named layers, the UNet / text-encoder outputs, and that
// LoraMerge::restore() gives the base model back bit-exactly. The "<tag>_diffusers" outputs (diffusers 0.31's
// departures from the per-module alpha rule, see the case's notes) are SKIP lines: nuance follows A1111/ComfyUI.
#pragma once
#include <string>
#include <vector>

#include "core/compare.h"

namespace nuance {

std::vector<CompareLine> check_golden_lora(const std::string& case_dir);

}  // namespace nuance
