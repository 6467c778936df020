#include "eval/clip_score.h"

#include <algorithm>
#include <cmath>

#include <nlohmann/json.hpp>

#include "io/json_file.h"
#include "io/weights.h"
#include "text/clip_tokenizer.h"

namespace nuance {

namespace {
void check_embeds(const Tensor& t, const char* what) {
    NUANCE_CHECK(t.defined() && t.dim() == 2 && t.size(0) >= 1 && t.size(1) >= 1, "CLIP score: ", what,
                 " must be [N, P], got ", t.defined() ? t.str() : std::string("an undefined tensor"));
}
std::vector<double> unit_rows(const Tensor& t, int64_t& n, int64_t& p) {
    const std::vector<float> v = t.to_vector();
    n = t.size(0);
    p = t.size(1);
    std::vector<double> out(v.begin(), v.end());
    for (int64_t i = 0; i < n; ++i) {
        double s = 0;
        for (int64_t j = 0; j < p; ++j) s += out[(size_t)(i * p + j)] * out[(size_t)(i * p + j)];
        const double norm = std::sqrt(s);
        for (int64_t j = 0; j < p; ++j) out[(size_t)(i * p + j)] = norm > 0 ? out[(size_t)(i * p + j)] / norm : 0.0;
    }
    return out;
}
}  // namespace

std::vector<double> clip_pair_scores(const Tensor& img, const Tensor& txt) {
    check_embeds(img, "image embeddings");
    check_embeds(txt, "text embeddings");
    NUANCE_CHECK(img.shape() == txt.shape(), "CLIP score: ", img.size(0), " images (", img.str(), ") and ",
                 txt.size(0), " captions (", txt.str(), ") do not pair up");
    int64_t n = 0, p = 0;
    const std::vector<double> a = unit_rows(img, n, p), b = unit_rows(txt, n, p);
    std::vector<double> out((size_t)n);
    for (int64_t i = 0; i < n; ++i) {
        double s = 0;
        for (int64_t j = 0; j < p; ++j) s += a[(size_t)(i * p + j)] * b[(size_t)(i * p + j)];
        out[(size_t)i] = 100.0 * s;
    }
    return out;
}

Tensor clip_score_matrix(const Tensor& txt, const Tensor& img) {
    check_embeds(img, "image embeddings");
    check_embeds(txt, "text embeddings");
    NUANCE_CHECK(img.size(1) == txt.size(1), "CLIP score: image embeddings ", img.str(), " and text embeddings ",
                 txt.str(), " differ in width");
    int64_t nt = 0, ni = 0, p = 0;
    const std::vector<double> a = unit_rows(txt, nt, p), b = unit_rows(img, ni, p);
    std::vector<float> m((size_t)(nt * ni));
    for (int64_t i = 0; i < nt; ++i)
        for (int64_t k = 0; k < ni; ++k) {
            double s = 0;
            for (int64_t j = 0; j < p; ++j) s += a[(size_t)(i * p + j)] * b[(size_t)(k * p + j)];
            m[(size_t)(i * ni + k)] = (float)(100.0 * s);
        }
    return Tensor::from_vector(m, {nt, ni});
}

double clip_score_of(const std::vector<double>& per_pair) {
    NUANCE_CHECK(!per_pair.empty(), "CLIP score: no image/caption pairs");
    double s = 0;
    for (double v : per_pair) s += v;
    return std::max(s / (double)per_pair.size(), 0.0);
}

Tensor clip_score_ids(const std::vector<std::string>& captions, int64_t max_positions) {
    NUANCE_CHECK(!captions.empty(), "CLIP score: no captions");
    NUANCE_CHECK(max_positions >= 2 && max_positions <= 4096, "CLIP score: max positions ", max_positions,
                 " must be in 2..4096");
    const ClipTokenizer& tok = ClipTokenizer::builtin();
    std::vector<std::vector<int64_t>> rows;
    size_t longest = 0;
    for (const std::string& c : captions) {
        std::vector<int64_t> r{tok.bos_id()};
        for (int id : tok.encode(c)) {
            r.push_back(id);
            if ((int64_t)r.size() > max_positions) break;  // torchmetrics slices to max_positions anyway
        }
        r.push_back(tok.eos_id());
        longest = std::max(longest, r.size());
        rows.push_back(std::move(r));
    }
    const int64_t L = std::min<int64_t>((int64_t)longest, max_positions);
    std::vector<int64_t> ids;
    for (auto& r : rows) {
        r.resize(longest, tok.eos_id());
        ids.insert(ids.end(), r.begin(), r.begin() + L);
    }
    return Tensor::from_ids(ids, {(int64_t)rows.size(), L});
}

std::unique_ptr<ClipScorer> ClipScorer::load(const std::string& path, const nlohmann::json& hf_config,
                                             const nlohmann::json& processor) {
    const WeightFile w = load_weights(path);
    ClipTextConfig tc = ClipTextConfig::detect(w.tensors);
    if (!hf_config.is_null()) tc.apply_hf_config(hf_config);
    NUANCE_CHECK(tc.projection_dim > 0, "CLIP model '", path,
                 "' has no text_projection.weight (a CLIPModel with both towers is needed for CLIP score)");
    ClipTextModel text(tc);
    LoadOptions o;
    o.source = path;
    load_module(text, w.tensors, o);
    ClipVisionModel vision = load_clip_vision(w.tensors, path, hf_config);
    NUANCE_CHECK(vision.config().projection_dim == tc.projection_dim, "CLIP model '", path, "': visual_projection (",
                 vision.config().projection_dim, ") and text_projection (", tc.projection_dim,
                 ") project to different widths");
    const ClipImageProcessor proc = processor.is_null()
                                        ? ClipImageProcessor::for_image_size((int)vision.config().image_size)
                                        : ClipImageProcessor::from_json(processor);
    return std::make_unique<ClipScorer>(std::move(text), std::move(vision), proc);
}

ClipScorer::ClipScorer(ClipTextModel text, ClipVisionModel vision, ClipImageProcessor proc)
    : text_(std::move(text)), vision_(std::move(vision)), proc_(proc) {}

Tensor ClipScorer::pixel_embeds(const Tensor& px) const { return vision_.forward(px).image_embeds; }

Tensor ClipScorer::image_embeds(const std::vector<Image>& images) const { return pixel_embeds(proc_(images)); }

Tensor ClipScorer::text_embeds(const Tensor& ids) const { return text_.forward(ids).text_embeds; }

Tensor ClipScorer::text_embeds(const std::vector<std::string>& captions) const {
    return text_embeds(clip_score_ids(captions, text_.config().max_positions));
}

std::vector<double> ClipScorer::pair_scores(const std::vector<Image>& images,
                                            const std::vector<std::string>& captions) const {
    NUANCE_CHECK(images.size() == captions.size(), "CLIP score: ", images.size(), " images for ", captions.size(),
                 " captions");
    if (images.empty()) return {};
    return clip_pair_scores(image_embeds(images), text_embeds(captions));
}

std::unique_ptr<ClipScorer> load_clip_scorer(const std::string& path, const std::string& config_in,
                                             const std::string& processor_in) {
    std::string weights = path, config = config_in, processor = processor_in;
    if (is_directory(path)) {
        weights = find_first_file(path, {"model.safetensors", "pytorch_model.bin"});
        NUANCE_CHECK_CODE(!weights.empty(), NotFound, "CLIP folder '", path, "' has no model.safetensors");
        if (config.empty() && file_exists(path + "/config.json")) config = path + "/config.json";
        if (processor.empty() && file_exists(path + "/preprocessor_config.json"))
            processor = path + "/preprocessor_config.json";
    }
    return ClipScorer::load(weights, config.empty() ? nlohmann::json() : read_json_object(config),
                            processor.empty() ? nlohmann::json() : read_json_object(processor));
}

}  // namespace nuance
