#include "models/vae/vae_golden.h"

#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "io/safetensors.h"
#include "models/vae/autoencoder_kl.h"

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

}  // namespace

std::vector<CompareLine> check_golden_vae(const std::string& dir) {
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
        NUANCE_CHECK(spec.contains("weights") && spec["weights"].is_string(), "vae case: model '", name,
                     "' has no weights file");
        const std::string wpath = dir + "/" + spec["weights"].get<std::string>();
        const WeightFile w = load_safetensors(wpath);
        AutoencoderKLConfig cfg = AutoencoderKLConfig::detect(w.tensors);
        if (spec.contains("config")) cfg.apply_diffusers_config(spec["config"]);
        AutoencoderKL vae(cfg);
        load_module(vae, w.tensors, {.source = wpath});

        const std::string p = name + ".";
        const Tensor encoder_out = vae.encoder(io_tensor(io, p + "image"));
        const Tensor moments = cfg.use_quant_conv ? vae.quant_conv(encoder_out) : encoder_out;
        const DiagonalGaussian post = DiagonalGaussian::from_moments(moments);
        const std::map<std::string, Tensor> got{
            {"encoder_out", encoder_out},
            {"moments", moments},
            {"mean", post.mean},
            {"logvar", post.logvar},
            {"sample", post.sample(io_tensor(io, p + "eps"))},
            {"decoded", vae.decode(io_tensor(io, p + "latent"))},
        };

        const json tol = c.contains("tolerance") && c["tolerance"].contains(name) ? c["tolerance"][name] : json();
        const json sugg = tol.is_object() && tol.contains("suggested_atol") ? tol["suggested_atol"] : json::object();
        for (auto t = tensors.begin(); t != tensors.end(); ++t) {
            const std::string& key = t.key();
            if (t.value().value("role", "") != "output" || key.rfind(p, 0) != 0) continue;
            const std::string what = key.substr(p.size());
            CompareLine l;
            l.name = key;
            auto g = got.find(what);
            if (g == got.end()) {
                l.skip = true;
                l.reason = "not an output of the C++ port";
            } else if (!sugg.contains(what) || !sugg[what].is_number()) {
                l.reason = "case.json has no suggested_atol for it";
            } else {
                l = compare(key, g->second, io_tensor(io, key), sugg[what].get<double>());
            }
            lines.push_back(l);
        }
    }
    return lines;
}

}  // namespace nuance
