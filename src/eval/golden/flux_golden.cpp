#include "eval/golden/flux_golden.h"

#include <cmath>

#include "eval/golden_case.h"
#include "io/weights.h"
#include "models/flux/flux_load.h"

namespace nuance {

namespace {

// Runs one model file on the case's inputs for `model` and compares; lines are renamed to `label`.
void check_file(const GoldenCase& gc, const std::string& model, const std::string& label,
                const std::map<std::string, Tensor>& tensors, const std::string& source,
                std::vector<CompareLine>& lines) {
    LoadOptions o = gc.load_options(source);
    o.source = base_name(source);
    const auto m = build_flux_transformer(tensors, gc.model_config(model), o);
    const std::string p = model + ".";
    const Tensor guidance = gc.has(p + "guidance") ? gc.tensor(p + "guidance") : Tensor();
    const Tensor out = m->forward(gc.tensor(p + "hidden_states"), gc.tensor(p + "timestep"), guidance,
                                  gc.tensor(p + "encoder_hidden_states"), gc.tensor(p + "pooled_projections"),
                                  gc.tensor(p + "img_ids"), gc.tensor(p + "txt_ids"));
    const Tensor latents = gc.tensor(p + "latents");
    const double atol = gc.atol(p + "out", NAN);
    for (const char* t : {"out", "out_unpacked"}) {
        const std::string key = p + t;
        if (!gc.has(key)) continue;
        const Tensor got = std::string(t) == "out" ? out : flux_unpack_latents(out, latents.size(2), latents.size(3));
        CompareLine l = std::isnan(atol) ? fail_line(key, "case.json has no suggested_atol for " + p + "out")
                                         : gc.compare(key, got, atol);
        l.name = gc.name() + "/" + label + "." + t;
        lines.push_back(l);
    }
}

}  // namespace

std::vector<CompareLine> check_golden_flux(const std::string& case_dir) {
    const GoldenCase gc = GoldenCase::load(case_dir);
    std::vector<CompareLine> lines;
    for (const auto& [model, wpath] : gc.models()) {
        const std::string p = model + ".";
        // The packing FluxPipeline applies before the model: exact.
        if (gc.has(p + "latents") && gc.has(p + "hidden_states")) {
            CompareLine l = gc.compare(p + "hidden_states", flux_pack_latents(gc.tensor(p + "latents")), 0.0);
            l.name = gc.name() + "/" + model + ".pack_latents";
            lines.push_back(l);
        }
        const WeightFile w = load_weights(wpath);
        check_file(gc, model, model, w.tensors, wpath, lines);
        if (gc.name() != "original_flux") continue;
        const std::string f16 = gc.path(model + "_original_f16.safetensors");
        if (file_exists(f16)) check_file(gc, model, model + "_f16", load_weights(f16).tensors, f16, lines);
        std::map<std::string, Tensor> comfy;  // ComfyUI's prefix on the same tensors
        for (const auto& [k, v] : w.tensors) comfy["model.diffusion_model." + k] = v;
        check_file(gc, model, model + "_comfy", comfy, wpath, lines);
    }
    return lines;
}

}  // namespace nuance
