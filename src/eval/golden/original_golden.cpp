// original_format: each single-file checkpoint is loaded the way `nuance generate -m FILE` loads it, and its
// components are run on the inputs of the component cases the file names (../unet_sd15, ../vae (vae_sd), ...).
#include "eval/golden/original_golden.h"
#include "eval/golden_case.h"
#include "io/weights.h"
#include "models/sd/stable_diffusion.h"
#include "eval/golden/unet_golden.h"
#include "ops/ops.h"

namespace nuance {

namespace {

struct ComponentRef {
    std::string dir;    // case folder
    std::string model;  // model name inside the case ("clip_l"); empty = the only one
};

ComponentRef parse_ref(const std::string& base, const std::string& ref) {
    ComponentRef r;
    std::string path = ref;
    const auto paren = ref.find(" (");
    if (paren != std::string::npos) {
        path = ref.substr(0, paren);
        r.model = ref.substr(paren + 2, ref.size() - paren - 3);
    }
    r.dir = base + "/" + path;
    return r;
}

nlohmann::json model_config(const GoldenCase& gc, const std::string& model) {
    if (!model.empty()) return gc.model_config(model);
    const auto& models = gc.meta()["models"];
    return models.is_object() && !models.empty() ? models.begin().value().value("config", nlohmann::json::object())
                                                 : nlohmann::json::object();
}

CompareLine renamed(CompareLine l, const std::string& name) {
    l.name = name;
    return l;
}

void check_clip(const GoldenCase& gc, const std::string& which, const ClipTextModel& m, const std::string& prefix,
                std::vector<CompareLine>& out) {
    const std::string ids_name = which == "clip_l" ? "input_ids_sd1" : "input_ids_sd2";
    const ClipTextOutput o = m.forward(gc.tensor(ids_name));
    auto cmp = [&](const std::string& t, const Tensor& got) {
        if (gc.has(which + "." + t)) out.push_back(renamed(gc.compare(which + "." + t, got), prefix + t));
    };
    cmp("last_hidden_state", o.last_hidden_state);
    cmp("pooler_output", o.pooled);
    if (o.text_embeds.defined()) cmp("text_embeds", o.text_embeds);
    cmp("penultimate_final_ln", m.encode_sd(gc.tensor(ids_name), 2, true));
}

void check_vae(const GoldenCase& gc, const std::string& which, const AutoencoderKL& vae, const std::string& prefix,
               std::vector<CompareLine>& out) {
    const Tensor moments = vae.encode_moments(gc.tensor(which + ".image"));
    out.push_back(renamed(gc.compare(which + ".moments", moments), prefix + "moments"));
    const DiagonalGaussian post = DiagonalGaussian::from_moments(moments);
    out.push_back(renamed(gc.compare(which + ".sample", post.sample(gc.tensor(which + ".eps"))), prefix + "sample"));
    out.push_back(renamed(gc.compare(which + ".decoded", vae.decode(gc.tensor(which + ".latent"))), prefix + "decoded"));
}

}  // namespace

std::vector<CompareLine> check_golden_original_format(const std::string& dir) {
    const GoldenCase gc = GoldenCase::load(dir);
    const auto& results = gc.meta()["results"];
    NUANCE_CHECK(results.is_object(), "golden case '", gc.name(), "': case.json has no results");
    std::vector<CompareLine> out;
    for (auto it = results.begin(); it != results.end(); ++it) {
        const std::string key = it.key();  // "sd15", "sdxl"
        const std::string file = gc.path(key + "_original.safetensors");
        if (!file_exists(file)) continue;
        const auto& comps = it.value()["components_golden"];
        std::map<std::string, ComponentRef> refs;
        ModelLoadOptions lo;
        lo.precision = GoldenPrecisionScope::current();
        for (auto c = comps.begin(); c != comps.end(); ++c) {
            refs[c.key()] = parse_ref(dir, c.value().get<std::string>());
            const GoldenCase cc = GoldenCase::load(refs[c.key()].dir);
            lo.configs[c.key()] = model_config(cc, refs[c.key()].model);
        }
        const std::string prefix = gc.name() + "/" + key + ".";
        StableDiffusionModel m;
        try {
            m = load_stable_diffusion(file, lo);
        } catch (const Error& e) {
            out.push_back(fail_line(prefix + "load", e.what()));
            continue;
        }
        if (refs.count("unet"))
            for (auto& l : check_golden_unet_model(GoldenCase::load(refs["unet"].dir), *m.unet))
                out.push_back(renamed(l, prefix + "unet." + l.name.substr(l.name.find('/') + 1)));
        if (refs.count("vae"))
            check_vae(GoldenCase::load(refs["vae"].dir), refs["vae"].model, *m.vae, prefix + "vae.", out);
        if (refs.count("text_encoder"))
            check_clip(GoldenCase::load(refs["text_encoder"].dir), refs["text_encoder"].model, *m.te1.model,
                       prefix + "text_encoder.", out);
        if (refs.count("text_encoder_2") && m.te2.model)
            check_clip(GoldenCase::load(refs["text_encoder_2"].dir), refs["text_encoder_2"].model, *m.te2.model,
                       prefix + "text_encoder_2.", out);
    }
    NUANCE_CHECK(!out.empty(), "golden case '", gc.name(), "': no single-file checkpoints found");
    return out;
}

}  // namespace nuance
