// GenerateParams fields left unset, filled in from the model's GenerationDefaults (models/model_defaults.h).
// Unset means: width/height <= 0, steps <= 0, cfg_scale < 0 (or NaN), sampler "" (the schedule then comes from the
// defaults too, unless one is given). Used by the server and the C API; the CLI asks the same defaults.
#pragma once
#include "models/model_defaults.h"
#include "pipelines/generate.h"

namespace nuance {

inline void apply_generation_defaults(GenerateParams& p, const GenerationDefaults& d) {
    if (p.width <= 0) p.width = d.width;
    if (p.height <= 0) p.height = d.height;
    if (p.steps <= 0) p.steps = d.steps;
    if (!(p.cfg_scale >= 0)) p.cfg_scale = d.cfg_scale;
    if (p.sampler.empty()) {
        p.sampler = d.sampler;
        if (p.scheduler.empty()) p.scheduler = d.scheduler;
    }
}

}  // namespace nuance
