// CLIP score (Hessel et al. 2021) as torchmetrics defines it: 100 * cos(image_embeds, text_embeds) per pair, and the
// score of a set = max(mean_i(100 * cos_i), 0) (the clamp on the mean, as torchmetrics' clip_score / CLIPScore do).
// The model is a whole CLIPModel in transformers' layout (openai/clip-vit-large-patch14's model.safetensors):
// text_model.* + text_projection, vision_model.* + visual_projection; logit_scale is unused.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "models/clip/clip_text.h"
#include "models/clip_vision/clip_image_processor.h"
#include "models/clip_vision/clip_vision.h"

namespace nuance {

// [N, P] x [N, P] -> N values 100 * cos(a_i, b_i), in double from the f32 embeddings.
std::vector<double> clip_pair_scores(const Tensor& image_embeds, const Tensor& text_embeds);
// [Nt, P] x [Ni, P] -> [Nt, Ni] F32: 100 * cos for every caption / image combination.
Tensor clip_score_matrix(const Tensor& text_embeds, const Tensor& image_embeds);
// torchmetrics: max(mean(per_pair), 0). Error on an empty list.
double clip_score_of(const std::vector<double>& per_pair);

// torchmetrics' tokenization of captions: [BOS] + ids + [EOS], padded to the longest caption with EOS (49407),
// then sliced to the first `max_positions` tokens (which drops the EOS of longer captions, as torchmetrics does).
Tensor clip_score_ids(const std::vector<std::string>& captions, int64_t max_positions = 77);

class ClipScorer {
public:
    // `path`: a CLIPModel safetensors (or any weight file load_weights reads); `hf_config`: its config.json object
    // or null (then the shapes decide, see ClipTextConfig / ClipVisionConfig::detect); `processor`: a
    // preprocessor_config.json object or null (then shortest edge = crop = the model's image size).
    static std::unique_ptr<ClipScorer> load(const std::string& path, const nlohmann::json& hf_config,
                                            const nlohmann::json& processor);
    ClipScorer(ClipTextModel text, ClipVisionModel vision, ClipImageProcessor proc);

    Tensor image_embeds(const std::vector<Image>& images) const;    // [N, P]
    Tensor pixel_embeds(const Tensor& pixel_values) const;          // [N, P] from preprocessed pixels
    Tensor text_embeds(const Tensor& ids) const;                    // [N, P]
    Tensor text_embeds(const std::vector<std::string>& captions) const;
    const ClipImageProcessor& processor() const { return proc_; }

    // Scores of images against their captions (one each), `batch` pairs per forward pass.
    std::vector<double> pair_scores(const std::vector<Image>& images, const std::vector<std::string>& captions) const;

private:
    ClipTextModel text_;
    ClipVisionModel vision_;
    ClipImageProcessor proc_;
};

// --clip PATH: a weight file, or a transformers folder (model.safetensors or pytorch_model.bin, with config.json and
// preprocessor_config.json when present). `config` / `processor` override the folder's files; "" = none / the folder's.
std::unique_ptr<ClipScorer> load_clip_scorer(const std::string& path, const std::string& config = "",
                                             const std::string& processor = "");

}  // namespace nuance
