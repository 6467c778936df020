#include "models/clip/clip_golden.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "io/safetensors.h"
#include "models/clip/clip_text.h"

namespace nuance {

namespace {

using nlohmann::json;

json read_json(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    NUANCE_CHECK_CODE(f.good(), NotFound, "cannot open '", path, "'");
    std::stringstream ss;
    ss << f.rdbuf();
    try {
        return json::parse(ss.str());
    } catch (const std::exception& e) {
        fail(ErrorCode::Io, "'", path, "' is not valid JSON (", e.what(), ")");
    }
}

CompareLine compare(const std::string& name, const Tensor& got, const Tensor& ref, double atol) {
    CompareLine l;
    l.name = name;
    l.atol = atol;
    if (!got.defined()) {
        l.reason = "not computed";
        return l;
    }
    if (got.shape() != ref.shape()) {
        l.reason = str("shape: expected ", ref.shape(), ", got ", got.shape());
        return l;
    }
    l.max_abs = max_abs_diff(got, ref);
    l.pass = l.max_abs <= atol;  // false for NaN
    if (!l.pass) l.reason = str("max|diff| ", l.max_abs, " > atol ", atol);
    return l;
}

const Tensor& io_tensor(const WeightFile& io, const std::string& name) {
    auto it = io.tensors.find(name);
    NUANCE_CHECK_CODE(it != io.tensors.end(), NotFound, "golden io '", io.path, "' has no tensor '", name, "'");
    return it->second;
}

// The input ids whose description says they are fed to `model` (case.json: "... -> fed to clip_l").
std::string ids_for(const json& tensors, const std::string& model) {
    for (auto it = tensors.begin(); it != tensors.end(); ++it) {
        const json& t = it.value();
        if (t.value("role", "") == "input" && t.value("desc", "").find("fed to " + model) != std::string::npos)
            return it.key();
    }
    fail(ErrorCode::NotFound, "clip_text case: no input ids marked 'fed to ", model, "'");
}

}  // namespace

std::vector<CompareLine> check_golden_clip_text(const std::string& dir) {
    const json c = read_json(dir + "/case.json");
    NUANCE_CHECK(c.is_object() && c.contains("models") && c["models"].is_object() && c.contains("tensors") &&
                     c["tensors"].is_object(),
                 "'", dir, "/case.json' lacks 'models' or 'tensors'");
    const json& tensors = c["tensors"];
    const WeightFile io = load_safetensors(dir + "/io.safetensors");
    std::vector<CompareLine> lines;

    for (auto m = c["models"].begin(); m != c["models"].end(); ++m) {
        const std::string name = m.key();
        const json& spec = m.value();
        NUANCE_CHECK(spec.contains("weights") && spec["weights"].is_string(), "clip_text case: model '", name,
                     "' has no weights file");
        const std::string wpath = dir + "/" + spec["weights"].get<std::string>();
        const WeightFile w = load_safetensors(wpath);
        ClipTextConfig cfg = ClipTextConfig::detect(w.tensors);
        if (spec.contains("config")) cfg.apply_hf_config(spec["config"]);
        ClipTextModel model(cfg);
        load_module(model, w.tensors, {.source = wpath});
        const ClipTextOutput out = model.forward(io_tensor(io, ids_for(tensors, name)));

        const json tol = c.contains("tolerance") && c["tolerance"].contains(name) ? c["tolerance"][name] : json();
        const json sugg = tol.is_object() && tol.contains("suggested_atol") ? tol["suggested_atol"] : json::object();
        // Outputs with no suggested atol: the model's loosest atol per unit of max|ref|, times max(1, max|ref|).
        double atol_per_unit = 0;
        for (auto s = sugg.begin(); s != sugg.end(); ++s) {
            double ref_max = 1;
            if (tol.contains("fp32_vs_fp64") && tol["fp32_vs_fp64"].contains(s.key()))
                ref_max = std::max(1.0, tol["fp32_vs_fp64"][s.key()].value("max_abs_ref", 1.0));
            atol_per_unit = std::max(atol_per_unit, s.value().get<double>() / ref_max);
        }

        for (auto t = tensors.begin(); t != tensors.end(); ++t) {
            const std::string& key = t.key();
            if (t.value().value("role", "") != "output" || key.rfind(name + ".", 0) != 0) continue;
            const std::string what = key.substr(name.size() + 1);
            const Tensor& ref = io_tensor(io, key);
            auto derived = [&](const Tensor& r) { return atol_per_unit * std::max(1.0, (double)max_abs(r)); };
            const bool has_atol = sugg.contains(what) && sugg[what].is_number();
            const double atol = has_atol ? sugg[what].get<double>() : derived(ref);
            const std::string note = has_atol ? "" : "atol derived (no suggested_atol in case.json)";

            auto add = [&](CompareLine l) {
                if (l.pass && l.reason.empty()) l.reason = note;
                lines.push_back(std::move(l));
            };
            if (what == "last_hidden_state") {
                add(compare(key, out.last_hidden_state, ref, atol));
            } else if (what == "pooler_output") {
                add(compare(key, out.pooled, ref, atol));
            } else if (what == "text_embeds") {
                add(compare(key, out.text_embeds, ref, atol));
            } else if (what == "penultimate_final_ln") {
                const Tensor& h = out.hidden_states[out.hidden_states.size() - 2];
                add(compare(key, model.final_layer_norm(h), ref, atol));
            } else if (what == "hidden_states") {
                if (ref.dim() < 1 || ref.size(0) != (int64_t)out.hidden_states.size()) {
                    CompareLine l;
                    l.name = key;
                    l.reason = str("reference has shape ", ref.shape(), " for ", out.hidden_states.size(),
                                   " hidden states");
                    lines.push_back(l);
                    continue;
                }
                for (int64_t i = 0; i < ref.size(0); ++i) {
                    const Tensor r = ref[i];
                    add(compare(key + "." + std::to_string(i), out.hidden_states[(size_t)i], r,
                                has_atol ? atol : derived(r)));
                }
            } else {
                CompareLine l;
                l.name = key;
                l.skip = true;
                l.reason = "not an output of the C++ port";
                lines.push_back(l);
            }
        }
    }
    return lines;
}

}  // namespace nuance
