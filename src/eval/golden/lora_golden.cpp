#include "eval/golden/lora_golden.h"

#include <algorithm>
#include <cmath>
#include <memory>

#include "adapters/lora.h"
#include "eval/golden_case.h"
#include "io/safetensors.h"
#include "models/clip/clip_text.h"
#include "models/unet/unet2d.h"
#include "ops/elementwise.h"

namespace nuance {

namespace {

using nlohmann::json;

// Merged-weight tolerance: the case's notes (an f32 merge in another order is within 1e-6 of the stored weights).
constexpr double kMergedAtol = 1e-6;

struct Base {
    std::unique_ptr<UNet2DConditionModel> unet;
    std::unique_ptr<ClipTextModel> te, te2;
    LoraComponents components() const {
        LoraComponents c{{"text_encoder", te.get()}};
        if (te2) c.push_back({"text_encoder_2", te2.get()});
        c.push_back({"unet", unet.get()});
        return c;
    }
};

std::unique_ptr<UNet2DConditionModel> load_unet(const GoldenCase& lora, const std::string& sibling) {
    const GoldenCase gc = GoldenCase::load(lora.dir() + "/../" + sibling);
    const auto models = gc.models();
    NUANCE_CHECK(models.size() == 1, "golden case '", sibling, "': expected one UNet model");
    const WeightFile wf = load_safetensors(models[0].second);
    UNetConfig cfg = UNetConfig::detect(wf.tensors);
    cfg.apply_json(gc.model_config(models[0].first));
    auto unet = std::make_unique<UNet2DConditionModel>(cfg);
    load_module(*unet, wf.tensors, lora.load_options(models[0].second));
    return unet;
}

std::unique_ptr<ClipTextModel> load_clip(const GoldenCase& lora, const std::string& model) {
    const GoldenCase gc = GoldenCase::load(lora.dir() + "/../clip_text");
    const std::string path = gc.path(model + ".safetensors");
    const WeightFile w = load_safetensors(path);
    ClipTextConfig cfg = ClipTextConfig::detect(w.tensors);
    cfg.apply_hf_config(gc.model_config(model));
    auto m = std::make_unique<ClipTextModel>(cfg);
    load_module(*m, w.tensors, lora.load_options(path));
    return m;
}

double suggested(const GoldenCase& gc, const std::string& group, const std::string& what) {
    const json& tol = gc.meta()["tolerance"];
    NUANCE_CHECK(tol.contains(group) && tol[group].contains("suggested_atol") &&
                     tol[group]["suggested_atol"].contains(what),
                 "golden case '", gc.name(), "': no tolerance ", group, ".", what);
    return tol[group]["suggested_atol"][what].get<double>();
}

Param* find_param(const LoraComponents& comps, const std::string& comp, const std::string& name) {
    for (const auto& [c, m] : comps) {
        if (c != comp) continue;
        Param* out = nullptr;
        for_each_param(*m, [&](const std::string& n, Param& p) {
            if (n == name) out = &p;
        });
        return out;
    }
    return nullptr;
}

// The stacked hidden_states reference [L+1, B, 77, D] against the encoder's per-layer outputs.
CompareLine compare_stack(const GoldenCase& gc, const std::string& name, const std::vector<Tensor>& got, double atol) {
    const Tensor ref = gc.tensor(name);
    CompareLine l;
    l.name = name;
    l.atol = atol;
    if (ref.dim() < 1 || ref.size(0) != (int64_t)got.size()) return fail_line(name, str("reference ", ref.shape(),
                                                                                        " vs ", got.size(), " layers"));
    for (int64_t i = 0; i < ref.size(0); ++i) {
        const Tensor r = ref.select(0, i).contiguous();
        if (r.shape() != got[(size_t)i].shape()) return fail_line(name, str("layer ", i, ": shape ", got[(size_t)i].shape()));
        l.max_abs = std::max(l.max_abs, (double)max_abs_diff(got[(size_t)i].contiguous(), r));
    }
    l.pass = std::isfinite(l.max_abs) && l.max_abs <= atol;
    return l;
}

// Outputs of the (merged) models vs "<m>.<tag>.*"; `group` is the tolerance group prefix ("sd15.kohya").
void check_outputs(const GoldenCase& gc, const Base& b, const std::string& m, const std::string& tag,
                   std::vector<CompareLine>& out) {
    const std::string g = m + "." + tag;
    UNetExtra extra;
    if (gc.has(m + ".text_embeds")) extra.text_embeds = gc.tensor(m + ".text_embeds");
    if (gc.has(m + ".time_ids")) extra.time_ids = gc.tensor(m + ".time_ids");
    const Tensor eps = b.unet->forward(gc.tensor(m + ".sample"), gc.tensor(m + ".timestep"),
                                       gc.tensor(m + ".encoder_hidden_states"), extra);
    out.push_back(gc.compare(g + ".eps", eps, suggested(gc, g + ".unet", "eps")));
    const std::pair<const ClipTextModel*, std::string> encoders[] = {{b.te.get(), "te"}, {b.te2.get(), "te2"}};
    for (const auto& [enc, te] : encoders) {
        if (!enc) continue;
        const std::string ids = m + (te == "te" ? ".input_ids" : ".input_ids_2");
        const ClipTextOutput o = enc->forward(gc.tensor(ids));
        const double atol = suggested(gc, g + "." + te, "last_hidden_state");
        out.push_back(gc.compare(g + "." + te + ".last_hidden_state", o.last_hidden_state, atol));
        if (gc.has(g + "." + te + ".hidden_states"))
            out.push_back(compare_stack(gc, g + "." + te + ".hidden_states", o.hidden_states, atol));
    }
}

// Merged weights stored as "<m>.<tag>.fused.<component>.<param>" / ".merged.".
void check_weights(const GoldenCase& gc, const LoraComponents& comps, const std::string& m, const std::string& tag,
                   std::vector<CompareLine>& out) {
    const json& tensors = gc.meta()["tensors"];
    for (const char* kind : {".fused.", ".merged."}) {
        const std::string p = m + "." + tag + kind;
        for (auto it = tensors.begin(); it != tensors.end(); ++it) {
            const std::string& key = it.key();
            if (key.rfind(p, 0) != 0) continue;
            const std::string rest = key.substr(p.size());
            const size_t dot = rest.find('.');
            Param* prm = dot == std::string::npos ? nullptr : find_param(comps, rest.substr(0, dot), rest.substr(dot + 1));
            if (!prm || !prm->defined()) {
                out.push_back(fail_line(key, "no such layer in the model"));
                continue;
            }
            out.push_back(gc.compare(key, prm->value.f32().contiguous(), kMergedAtol));
        }
    }
}

// True when every parameter is the very tensor it was before (restore() puts back the originals).
CompareLine check_restored(const std::string& name, const LoraComponents& comps,
                           const std::vector<std::pair<Param*, Tensor>>& before) {
    size_t i = 0, changed = 0;
    for (const auto& [c, m] : comps)
        for_each_param(*m, [&](const std::string&, Param& p) {
            if (i < before.size() && (before[i].first != &p || before[i].second.storage() != p.value.storage() ||
                                      before[i].second.offset() != p.value.offset()))
                ++changed;
            ++i;
        });
    CompareLine l;
    l.name = name;
    l.max_abs = (double)changed;
    l.pass = changed == 0 && i == before.size();
    if (!l.pass) l.reason = str(changed, " weights not restored");
    return l;
}

std::vector<std::pair<Param*, Tensor>> snapshot(const LoraComponents& comps) {
    std::vector<std::pair<Param*, Tensor>> s;
    for (const auto& [c, m] : comps) for_each_param(*m, [&](const std::string&, Param& p) { s.push_back({&p, p.value}); });
    return s;
}

}  // namespace

std::vector<CompareLine> check_golden_lora(const std::string& case_dir) {
    const GoldenCase gc = GoldenCase::load(case_dir);
    std::vector<CompareLine> out;
    struct Run {
        std::string model, tag, file;
    };
    const Run runs[] = {
        {"sd15", "kohya", "lora_sd15_kohya.safetensors"},       {"sd15", "peft", "lora_sd15_peft.safetensors"},
        {"sd15", "noalpha", "lora_sd15_kohya_noalpha.safetensors"}, {"sd15", "edge", "lora_sd15_kohya_edge.safetensors"},
        {"sd15", "loha", "lycoris_loha_sd15.safetensors"},      {"sd15", "lokr", "lycoris_lokr_sd15.safetensors"},
        {"sdxl", "kohya", "lora_sdxl_kohya.safetensors"},
    };
    for (const std::string m : {"sd15", "sdxl"}) {
        Base b;
        b.unet = load_unet(gc, m == "sd15" ? "unet_sd15" : "unet_sdxl");
        b.te = load_clip(gc, "clip_l");
        if (m == "sdxl") b.te2 = load_clip(gc, "clip_g");
        const LoraComponents comps = b.components();
        check_outputs(gc, b, m, "base", out);
        const auto before = snapshot(comps);
        for (const Run& r : runs) {
            if (r.model != m) continue;
            LoraMerge merge;
            const LoraFile f = load_lora(gc.path(r.file));
            const LoraApplyReport rep = merge.apply(comps, f, 0.7f);
            if (!rep.unmatched.empty())
                out.push_back(fail_line(m + "." + r.tag + ".matched",
                                        str(rep.unmatched.size(), " of ", rep.modules, " modules unmatched, e.g. ",
                                            rep.unmatched.front())));
            check_weights(gc, comps, m, r.tag, out);
            check_outputs(gc, b, m, r.tag, out);
            merge.restore();
            out.push_back(check_restored(m + "." + r.tag + ".restored", comps, before));
        }
    }
    // diffusers 0.31's own scale rule on files without (some) alphas: stored for reference, not followed.
    const json& tensors = gc.meta()["tensors"];
    for (auto it = tensors.begin(); it != tensors.end(); ++it)
        if (it.key().find("_diffusers.") != std::string::npos && it.value().value("role", "") == "output")
            out.push_back(skip_line(it.key(), "diffusers 0.31's alpha rule; nuance follows kohya/A1111/ComfyUI (sd15.noalpha/edge)"));
    // The base outputs checked above must be the ones after every restore too.
    return out;
}

}  // namespace nuance
