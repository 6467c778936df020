// The 1000 ImageNet-1k class names (timm's WordNet lemmas, embedded: see imagenet_classes.inc for the source and
// licenses), for `--class-label 207` / `--class-label "golden retriever"` with class-conditional models.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace nuance {

constexpr int64_t kImageNetClasses = 1000;

// The class's lemmas as one string ("tench, Tinca tinca"); Error for an id outside [0, 1000).
const std::string& imagenet_class_name(int64_t id);
// Its first lemma ("tench").
std::string imagenet_class_short_name(int64_t id);

// Class id for a name: any one of a class's comma-separated lemmas (as DiTPipeline.get_label_ids accepts them),
// case-insensitive, surrounding spaces ignored; the whole lemma string works too. Errors: an unknown name lists up
// to 5 near matches ("did you mean: golden retriever (207), ..."); a name that 19 lemmas share between two classes
// ("crane": 134 the bird, 517 the machine) lists both instead of picking one.
int64_t imagenet_class_id(const std::string& name);

// `--class-label`: a decimal number in [0, num_classes), or, when num_classes is 1000, an ImageNet class name.
// Errors name the value and the range.
int64_t parse_class_label(const std::string& value, int64_t num_classes = kImageNetClasses);

}  // namespace nuance
