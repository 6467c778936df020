#include "eval/golden/vae_golden.h"

#include <cmath>

#include "eval/golden_case.h"
#include "io/safetensors.h"
#include "models/vae/autoencoder_kl.h"

namespace nuance {

std::vector<CompareLine> check_golden_vae(const std::string& dir) {
    using nlohmann::json;
    const GoldenCase gc = GoldenCase::load(dir);
    const json& c = gc.meta();
    const auto models = gc.models();  // checks "models" and "tensors"
    const json& tensors = c["tensors"];
    std::vector<CompareLine> lines;

    for (const auto& [name, wpath] : models) {
        const WeightFile w = load_safetensors(wpath);
        AutoencoderKLConfig cfg = AutoencoderKLConfig::detect(w.tensors);
        cfg.apply_diffusers_config(gc.model_config(name));
        AutoencoderKL vae(cfg);
        load_module(vae, w.tensors, gc.load_options(wpath));

        const std::string p = name + ".";
        const Tensor encoder_out = vae.encoder(gc.tensor(p + "image"));
        const Tensor moments = cfg.use_quant_conv ? vae.quant_conv(encoder_out) : encoder_out;
        const DiagonalGaussian post = DiagonalGaussian::from_moments(moments);
        const std::map<std::string, Tensor> got{
            {"encoder_out", encoder_out},
            {"moments", moments},
            {"mean", post.mean},
            {"logvar", post.logvar},
            {"sample", post.sample(gc.tensor(p + "eps"))},
            {"decoded", vae.decode(gc.tensor(p + "latent"))},
        };

        for (auto t = tensors.begin(); t != tensors.end(); ++t) {
            const std::string& key = t.key();
            if (t.value().value("role", "") != "output" || key.rfind(p, 0) != 0) continue;
            const std::string line = gc.name() + "/" + key;
            const auto g = got.find(key.substr(p.size()));
            const double atol = gc.atol(key, NAN);
            if (g == got.end())
                lines.push_back(skip_line(line, "not an output of the C++ port"));
            else if (std::isnan(atol))
                lines.push_back(fail_line(line, "case.json has no suggested_atol for it"));
            else
                lines.push_back(gc.compare(key, g->second, atol));
        }
    }
    return lines;
}

}  // namespace nuance
