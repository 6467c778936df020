#include "eval/golden/clip_golden.h"

#include <algorithm>
#include <cmath>

#include "eval/golden_case.h"
#include "io/safetensors.h"
#include "models/clip/clip_text.h"
#include "ops/elementwise.h"

namespace nuance {

namespace {

using nlohmann::json;

// The input ids whose description says they are fed to `model` (case.json: "... -> fed to clip_l").
std::string ids_for(const json& tensors, const std::string& model) {
    for (auto it = tensors.begin(); it != tensors.end(); ++it) {
        const json& t = it.value();
        if (t.value("role", "") == "input" && t.value("desc", "").find("fed to " + model) != std::string::npos)
            return it.key();
    }
    fail(ErrorCode::NotFound, "clip_text case: no input ids marked 'fed to ", model, "'");
}

// For outputs with no suggested atol: the model's loosest suggested atol per unit of max|ref| (max_abs_ref from
// the case's fp32_vs_fp64 figures, at least 1). `tol` is case.json tolerance.<model> (null when absent).
double atol_per_unit(const json& tol) {
    if (!tol.is_object() || !tol.contains("suggested_atol")) return 0;
    const json& sugg = tol["suggested_atol"];
    double per_unit = 0;
    for (auto s = sugg.begin(); s != sugg.end(); ++s) {
        double ref_max = 1;
        if (tol.contains("fp32_vs_fp64") && tol["fp32_vs_fp64"].contains(s.key()))
            ref_max = std::max(1.0, tol["fp32_vs_fp64"][s.key()].value("max_abs_ref", 1.0));
        per_unit = std::max(per_unit, s.value().get<double>() / ref_max);
    }
    return per_unit;
}

// GoldenCase::compare's rule for one slice of a stacked reference (hidden_states[i]), which it cannot name.
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

}  // namespace

std::vector<CompareLine> check_golden_clip_text(const std::string& dir) {
    const GoldenCase gc = GoldenCase::load(dir);
    const json& c = gc.meta();
    const auto models = gc.models();  // checks "models" and "tensors"
    const json& tensors = c["tensors"];
    std::vector<CompareLine> lines;

    for (const auto& [name, wpath] : models) {
        const WeightFile w = load_safetensors(wpath);
        ClipTextConfig cfg = ClipTextConfig::detect(w.tensors);
        cfg.apply_hf_config(gc.model_config(name));
        ClipTextModel model(cfg);
        load_module(model, w.tensors, gc.load_options(wpath));
        const ClipTextOutput out = model.forward(gc.tensor(ids_for(tensors, name)));

        // Outputs with no suggested atol (hidden_states): atol_per_unit times max(1, max|ref|) of that output.
        const double per_unit =
            atol_per_unit(c.contains("tolerance") && c["tolerance"].contains(name) ? c["tolerance"][name] : json());
        auto derived = [&](const Tensor& r) { return per_unit * std::max(1.0, (double)max_abs(r)); };

        for (auto t = tensors.begin(); t != tensors.end(); ++t) {
            const std::string& key = t.key();
            if (t.value().value("role", "") != "output" || key.rfind(name + ".", 0) != 0) continue;
            const std::string what = key.substr(name.size() + 1);
            const std::string line = gc.name() + "/" + key;
            const Tensor ref = gc.tensor(key);
            const double suggested = gc.atol(key, NAN);
            const bool has_atol = !std::isnan(suggested);
            const double atol = has_atol ? suggested : derived(ref);
            const std::string note = has_atol ? "" : "atol derived (no suggested_atol in case.json)";

            auto add = [&](CompareLine l) {
                if (l.pass && l.reason.empty()) l.reason = note;
                lines.push_back(std::move(l));
            };
            auto add_output = [&](const Tensor& got) {
                CompareLine l = got.defined() ? gc.compare(key, got, atol) : fail_line(line, "not computed");
                l.atol = atol;
                add(std::move(l));
            };
            if (what == "last_hidden_state") {
                add_output(out.last_hidden_state);
            } else if (what == "pooler_output") {
                add_output(out.pooled);
            } else if (what == "text_embeds") {
                add_output(out.text_embeds);
            } else if (what == "penultimate_final_ln") {
                add_output(model.final_layer_norm(out.hidden_states[out.hidden_states.size() - 2]));
            } else if (what == "hidden_states") {
                if (ref.dim() < 1 || ref.size(0) != (int64_t)out.hidden_states.size()) {
                    lines.push_back(fail_line(line, str("reference has shape ", ref.shape(), " for ",
                                                        out.hidden_states.size(), " hidden states")));
                    continue;
                }
                for (int64_t i = 0; i < ref.size(0); ++i) {
                    const Tensor r = ref[i];
                    add(compare_slice(line + "." + std::to_string(i), out.hidden_states[(size_t)i], r,
                                      has_atol ? atol : derived(r)));
                }
            } else {
                lines.push_back(skip_line(line, "not an output of the C++ port"));
            }
        }
    }
    return lines;
}

}  // namespace nuance
