#include "eval/golden/taesd_golden.h"

#include <cmath>
#include <map>

#include "eval/golden_case.h"
#include "models/taesd/taesd.h"
#include "ops/ops.h"

namespace nuance {

namespace {

CompareLine exact_line(const std::string& name, const Tensor& got, const Tensor& ref) {
    CompareLine l;
    l.name = name;
    l.atol = 0;
    if (got.shape() != ref.shape()) {
        l.max_abs = INFINITY;
        l.reason = str("shape ", got.shape(), " vs ", ref.shape());
        return l;
    }
    l.max_abs = max_abs_diff(got, ref);
    l.pass = l.max_abs == 0;
    return l;
}

// U8 latents: round-half-even(scaled * 255). A differing element passes only where the reference's own scaled
// value is within `slack` (in units of 1/255) of a .5 boundary, i.e. where fp32-vs-fp64 noise decides the rounding.
CompareLine u8_line(const std::string& name, const Tensor& scaled_got, const Tensor& scaled_ref, const Tensor& u8_ref,
                    double slack) {
    CompareLine l;
    l.name = name;
    l.atol = 0;
    if (scaled_got.shape() != u8_ref.shape() || scaled_ref.shape() != u8_ref.shape()) {
        l.max_abs = INFINITY;
        l.reason = str("shape ", scaled_got.shape(), " vs ", u8_ref.shape());
        return l;
    }
    const std::vector<float> g = scaled_got.to_vector(), s = scaled_ref.to_vector(), r = u8_ref.f32().to_vector();
    int flips = 0, bad = 0;
    for (size_t i = 0; i < g.size(); ++i) {
        const float q = std::nearbyint(g[i] * 255.0f);  // FE_TONEAREST: half to even, as torch.round
        const double d = std::fabs(q - r[i]);
        l.max_abs = std::max(l.max_abs, d);
        if (d == 0) continue;
        const double x = (double)s[i] * 255.0;
        if (d <= 1 && std::fabs(x - std::floor(x) - 0.5) <= slack) ++flips;
        else ++bad;
    }
    l.pass = bad == 0;
    if (flips) l.reason = str(flips, " rounding flip(s) at .5 boundaries within the encoded atol");
    if (bad) l.reason = str(bad, " element(s) differ away from a rounding boundary");
    return l;
}

}  // namespace

std::vector<CompareLine> check_golden_taesd(const std::string& dir) {
    const GoldenCase gc = GoldenCase::load(dir);
    std::vector<CompareLine> lines;
    for (const auto& [name, wpath] : gc.models()) {
        const std::string p = name + ".";
        auto tae = TinyAutoencoder::load(wpath, "golden case " + gc.name());
        const Tensor image = gc.tensor(p + "image"), latent = gc.tensor(p + "latent");
        const Tensor encoded = tae->encode(image), decoded = tae->decode(latent);
        const double enc_atol = gc.atol(p + "encoded", 1e-4), dec_atol = gc.atol(p + "decoded", 1e-4);
        lines.push_back(gc.compare(p + "encoded", encoded, enc_atol));
        lines.push_back(gc.compare(p + "decoded", decoded, dec_atol));
        lines.push_back(gc.compare(p + "roundtrip", tae->decode(encoded), gc.atol(p + "roundtrip", 1e-4)));
        const Tensor scaled = tae->scale_latents(encoded);
        lines.push_back(gc.compare(p + "scaled_latents", scaled, enc_atol));
        lines.push_back(u8_line(gc.name() + "/" + p + "latents_u8", scaled, gc.tensor(p + "scaled_latents"),
                                gc.tensor(p + "latents_u8"), enc_atol * 255.0 / 6.0));
        const Tensor dequant = tae->unscale_latents(gc.tensor(p + "latents_u8").f32() / 255.0f);
        lines.push_back(gc.compare(p + "latents_dequant", dequant, 1e-6));
        lines.push_back(gc.compare(p + "forward", tae->decode(gc.tensor(p + "latents_dequant")), dec_atol));

        // The original madebyollin layout: the same tensors under nn.Sequential keys.
        const auto& cfg = gc.meta()["models"][name];
        if (cfg.contains("original_layout") && cfg["original_layout"].is_array() && cfg["original_layout"].size() == 2) {
            std::vector<std::string> files;
            for (const auto& f : cfg["original_layout"]) files.push_back(gc.path(f.get<std::string>()));
            auto orig = TinyAutoencoder::load(files, "golden case " + gc.name());
            lines.push_back(exact_line(gc.name() + "/" + p + "original.encoded", orig->encode(image), encoded));
            lines.push_back(exact_line(gc.name() + "/" + p + "original.decoded", orig->decode(latent), decoded));
            auto dec_only = TinyAutoencoder::load(files[1], "golden case " + gc.name());
            CompareLine l = exact_line(gc.name() + "/" + p + "original.decoder_only", dec_only->decode(latent), decoded);
            if (dec_only->has_encoder()) {
                l.pass = false;
                l.reason = "the decoder file alone loaded an encoder";
            }
            lines.push_back(l);
        }
    }
    return lines;
}

}  // namespace nuance
