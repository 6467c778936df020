#include "eval/golden/clip_vision_golden.h"

#include <cmath>

#include <nlohmann/json.hpp>

#include "eval/clip_score.h"
#include "eval/golden_case.h"
#include "io/json_file.h"
#include "io/safetensors.h"
#include "ops/ops.h"

namespace nuance {

namespace {
Image image_of(const Tensor& hwc) {
    NUANCE_CHECK(hwc.dim() == 3 && hwc.size(2) == 3 && hwc.dtype() == DType::U8, "golden image tensor must be [H, W, 3] U8, got ",
                 hwc.str());
    Image im;
    im.height = (int)hwc.size(0);
    im.width = (int)hwc.size(1);
    im.channels = 3;
    const Tensor c = hwc.contiguous();
    const uint8_t* p = c.data<uint8_t>();
    im.pixels.assign(p, p + c.numel());
    return im;
}
// One slice of a stacked reference (hidden_states[i]), which GoldenCase::compare cannot name.
CompareLine compare_slice(const std::string& name, const Tensor& got, const Tensor& ref, double atol) {
    if (got.shape() != ref.shape()) {
        CompareLine l = fail_line(name, str("shape ", got.shape(), " vs reference ", ref.shape()));
        l.atol = atol;
        return l;
    }
    CompareLine l;
    l.name = name;
    l.atol = atol;
    l.max_abs = max_abs_diff(got, ref);
    l.pass = std::isfinite(l.max_abs) && l.max_abs <= atol;
    return l;
}
Tensor tensor_of(const Image& im) {
    return Tensor::from_bytes(im.pixels.data(), {im.height, im.width, im.channels}, DType::U8);
}
}  // namespace

std::vector<CompareLine> check_golden_clip_vision(const std::string& dir) {
    const GoldenCase gc = GoldenCase::load(dir);
    std::vector<CompareLine> lines;
    const nlohmann::json proc_json = read_json_file(gc.path("preprocessor_config.json"));
    const ClipImageProcessor proc = ClipImageProcessor::from_json(proc_json);
    auto tol = [&](const std::string& group, const std::string& key) {
        const auto& t = gc.meta()["tolerance"];
        NUANCE_CHECK(t.contains(group) && t[group].contains("suggested_atol") &&
                         t[group]["suggested_atol"].contains(key),
                     "golden case '", dir, "': no suggested_atol ", group, ".", key);
        return t[group]["suggested_atol"][key].get<double>();
    };

    std::vector<Image> images;
    for (int i = 0; gc.has("image" + std::to_string(i) + "_u8"); ++i) {
        const std::string k = "image" + std::to_string(i);
        images.push_back(image_of(gc.tensor(k + "_u8")));
        lines.push_back(gc.compare(k + "_resized_u8", tensor_of(proc.resize(images.back())).f32(), 0.0));
    }
    // compare() subtracts in f32: the U8 reference is converted by it
    const Tensor px = proc(images);
    lines.push_back(gc.compare("pixel_values", px, 0.0));

    std::string wpath;
    std::string spath;
    for (const auto& [name, path] : gc.models()) (name == "clip_vision" ? wpath : spath) = path;
    NUANCE_CHECK(!wpath.empty() && !spath.empty(), "golden case '", dir, "' lacks the clip_vision or the clip_score_model model");
    const ClipVisionModel m = load_clip_vision(load_safetensors(wpath).tensors, wpath, gc.model_config("clip_vision"));
    const ClipVisionOutput o = m.forward(gc.tensor("pixel_values"));
    const double a_last = tol("clip_vision", "last_hidden_state");
    const Tensor hs_ref = gc.tensor("hidden_states");
    for (int64_t i = 0; i < hs_ref.size(0) && i < (int64_t)o.hidden_states.size(); ++i) {
        CompareLine l = compare_slice("clip_vision/hidden_states." + std::to_string(i), o.hidden_states[(size_t)i],
                                      hs_ref[i], a_last);
        lines.push_back(std::move(l));
    }
    if (hs_ref.size(0) != (int64_t)o.hidden_states.size())
        lines.push_back(fail_line("clip_vision/hidden_states", str("reference has ", hs_ref.size(0), " hidden states, the port ",
                                                                   o.hidden_states.size())));
    lines.push_back(gc.compare("last_hidden_state", o.last_hidden_state, a_last));
    lines.push_back(gc.compare("penultimate_hidden_state", o.hidden_states[o.hidden_states.size() - 2],
                               tol("clip_vision", "penultimate")));
    lines.push_back(gc.compare("pooled_output", o.pooled, tol("clip_vision", "pooled")));
    lines.push_back(gc.compare("image_embeds", o.image_embeds, tol("clip_vision", "image_embeds")));
    // IP-Adapter's unconditional input: zero pixels, stopping one layer early
    const Tensor zeros = Tensor::zeros({1, 3, m.config().image_size, m.config().image_size});
    const ClipVisionOutput u = m.forward(zeros, (int)m.config().layers - 1);
    lines.push_back(gc.compare("uncond_penultimate_hidden_state", u.last_hidden_state,
                               tol("clip_vision", "uncond_penultimate")));
    lines.push_back(gc.compare("uncond_image_embeds", m.forward(zeros).image_embeds,
                               tol("clip_vision", "uncond_image_embeds")));

    // ---- clip_score ----
    const auto scorer = ClipScorer::load(spath, gc.model_config("clip_score_model"), proc_json);
    if (gc.meta().contains("clip_score_captions")) {
        const auto caps = gc.meta()["clip_score_captions"].get<std::vector<std::string>>();
        const Tensor ids = clip_score_ids(caps);
        lines.push_back(compare_ids("clip_vision/clip_score.input_ids", gc.tensor("clip_score.input_ids").to_ids(),
                                    ids.to_ids(), "captions tokenized differently"));
    }
    const Tensor img = scorer->pixel_embeds(px);
    const Tensor txt = scorer->text_embeds(gc.tensor("clip_score.input_ids"));
    lines.push_back(gc.compare("clip_score.image_embeds", img, tol("clip_score_model", "image_embeds")));
    lines.push_back(gc.compare("clip_score.text_embeds", txt, tol("clip_score_model", "text_embeds")));
    const std::vector<double> pp = clip_pair_scores(img, txt);
    std::vector<float> pf(pp.begin(), pp.end()), pc;
    for (double v : pp) pc.push_back((float)std::max(v, 0.0));
    const double a_score = tol("clip_score_model", "score");
    lines.push_back(gc.compare("clip_score.per_pair", Tensor::from_vector(pf, {(int64_t)pf.size()}), a_score));
    lines.push_back(gc.compare("clip_score.per_pair_clamped", Tensor::from_vector(pc, {(int64_t)pc.size()}), a_score));
    lines.push_back(gc.compare("clip_score.torchmetrics", Tensor::scalar((float)clip_score_of(pp)), a_score));
    lines.push_back(gc.compare("clip_score.matrix", clip_score_matrix(txt, img), tol("clip_score_model", "matrix")));
    return lines;
}

}  // namespace nuance
