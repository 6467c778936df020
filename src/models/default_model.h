// The built-in default model: the small emoji text-to-image model nuance trained itself (models/nuance-emoji, see
// its TRAINING.md), used when no -m/--model is given.
#pragma once
#include <string>

namespace nuance {

inline constexpr const char* kDefaultModelName = "nuance-emoji";

// $NUANCE_DEFAULT_MODEL when set ("" if it holds no model_index.json); else the first folder with a
// model_index.json among: <executable's folder>/../models/nuance-emoji
// (a build tree inside the source tree); <executable's folder>/../share/nuance/models/nuance-emoji (an install);
// the source tree's models/nuance-emoji. "" when none exists.
std::string default_model_path();

}  // namespace nuance
