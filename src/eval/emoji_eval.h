// `nuance eval-emoji`: the quality measurement of a text-to-image model trained on the emoji set (data/emoji).
// Everything is measured with the emoji classifier (train/emoji_classifier.h) as the feature network:
//   real       the classifier's accuracy on the held-out concepts (concept_id % 10 == 0), and the "real vs real"
//              floors: FID/KID of a seeded random sample of real images (as many as the model's samples, at most
//              half the set) against the remaining real images, and of the held-out split against the rest.
//   model      `samples` images generated from manifest captions ("<label>, <style> style"), half per style, rows
//              drawn at random without replacement within a style (seeded); the classifier's accuracy against each
//              row's category_id, and FID/KID of their features against the same remaining real images.
//   untrained  (random_model) the same prompts and seeds through the same architecture with the UNet and text
//              encoder re-initialised at random (init_random), the trained VAE kept: the floor a model must rise
//              above.
// FID/KID here are on 128-d features of a 32 px emoji classifier: comparable between runs of this command on this
// data set only, not with Inception-based numbers in papers.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/dtype.h"

namespace nuance {

struct EmojiEvalProgress {
    std::string phase;  // "real", "model", "untrained", "sheet"
    int64_t done = 0, total = 0;
    double elapsed_s = 0;  // since the phase began
};

struct EmojiEvalOptions {
    std::string classifier;  // train-classifier's .safetensors
    std::string data;        // the emoji folder
    std::string model;       // optional: a model `nuance generate -m` loads
    int64_t samples = 2000;
    int resolution = 32;
    int steps = 20;
    float cfg = 5.0f;
    std::string sampler = "euler_a";
    std::string scheduler = "normal";
    uint64_t seed = 0;
    bool random_model = false;
    Precision precision = Precision::Auto;
    // LoRAs merged into the model after loading ("FILE" or "FILE:weight", as generate --lora).
    std::vector<std::string> loras;
    // >= 0: the model's prompts are only the manifest rows of this concept_id (a LoRA's concept); the real-image
    // statistics still use the whole folder.
    int64_t concept_id = -1;
    // Contact sheet of the trained model: one image per prompt, upscaled sheet_scale times, captioned.
    std::string sheet;
    std::vector<std::string> sheet_prompts;
    int sheet_scale = 4;
    std::function<void(const EmojiEvalProgress&)> on_progress;
};

// Runs the measurement. The report's keys: classifier {path, classes, train/heldout accuracy from its metadata},
// data, reference {images, rule}, real {train_split, heldout, all: {images, accuracy, balanced_accuracy};
// floor, heldout_vs_rest: {fid, kid, images}}, and with a model: settings, model and untrained {images, accuracy,
// balanced_accuracy, accuracy_by_style, fid, kid, seconds, seconds_per_image}, sheet {path, prompts}.
nlohmann::json evaluate_emoji(const EmojiEvalOptions& o);

}  // namespace nuance
