// The built-in model families, in registry order: the one place a new family is added (docs/adding-a-model.md).
// Detection asks every family and takes the highest score, so the order only breaks ties.
#include "models/model_family.h"
#include "models/dit/dit_family.h"
#include "models/flux/flux_family.h"
#include "models/mmdit/sd3_family.h"
#include "models/sd/sd_family.h"

namespace nuance {

std::vector<ModelSpec> builtin_model_families() {
    std::vector<ModelSpec> all;
    for (ModelSpec& s : sd_model_families()) all.push_back(std::move(s));  // sd1, sd2, sdxl
    for (ModelSpec& s : sd3_model_families()) all.push_back(std::move(s));  // sd3
    all.push_back(dit_model_spec());
    all.push_back(flux_model_spec());
    return all;
}

}  // namespace nuance
