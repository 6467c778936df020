#include "cli_control.h"

#include <cmath>

#include "io/weights.h"

namespace nuance::cli {

void add_control_options(CLI::App* c, ControlArgs& a) {
    c->add_option("--control-net", a.nets,
                  "ControlNet file or diffusers folder (repeatable: several ControlNets at once; original "
                  "control_*.pth/.safetensors or diffusers layout)");
    c->add_option("--control-image", a.images, "Conditioning image of each --control-net (PNG/JPEG), resized to the "
                                               "output size");
    c->add_option("--control-strength", a.strengths, "Weight of each ControlNet (one for all, or one each; default 1)");
    c->add_option("--control-start", a.starts,
                  "Fraction of the steps where each ControlNet starts (A1111 guidance start; default 0)");
    c->add_option("--control-end", a.ends, "Fraction of the steps where each ControlNet ends (default 1)");
    c->add_option("--control-preprocess", a.preprocess,
                  "Preprocessor of each control image: none (default), canny[:low:high], invert, threshold[:t], "
                  "scribble[:t], tile[:factor], shuffle[:seed]");
    c->add_option("--control-mode", a.modes,
                  "balanced (default), prompt (A1111 'My prompt is more important'), control ('ControlNet is more "
                  "important'), guess (diffusers guess mode)");
    c->add_flag("--guess-mode", a.guess_mode, "diffusers' guess mode for every ControlNet: control on the "
                                              "conditional half only, scales logspace(-1, 0)");
}

namespace {

template <class T>
const T& pick(const std::vector<T>& v, size_t i, const T& dflt) {
    return v.empty() ? dflt : v.size() == 1 ? v[0] : v[i];
}

template <class T>
void check_count(const std::vector<T>& v, size_t n, const char* flag) {
    if (v.empty() || v.size() == 1 || v.size() == n) return;
    fail(ErrorCode::InvalidArgument, "usage: ", v.size(), " ", flag, " values for ", n,
         " --control-net (give one for all, or one per --control-net)");
}

}  // namespace

void check_control_args(ControlArgs& a) {
    const size_t n = a.nets.size();
    if (n == 0) {
        if (!a.images.empty() || !a.preprocess.empty() || !a.strengths.empty() || !a.starts.empty() ||
            !a.ends.empty() || !a.modes.empty() || a.guess_mode)
            fail(ErrorCode::InvalidArgument, "usage: --control-image/--control-* options need a --control-net");
        return;
    }
    if (n > 8) fail(ErrorCode::InvalidArgument, "usage: ", n, " --control-net (at most 8)");
    if (a.images.size() != n)
        fail(ErrorCode::InvalidArgument, "usage: ", n, " --control-net but ", a.images.size(),
             " --control-image: give one control image per ControlNet",
             a.images.size() < n ? str(" (--control-net '", a.nets[a.images.size()], "' has none)") : std::string());
    check_count(a.strengths, n, "--control-strength");
    check_count(a.starts, n, "--control-start");
    check_count(a.ends, n, "--control-end");
    check_count(a.preprocess, n, "--control-preprocess");
    check_count(a.modes, n, "--control-mode");
    if (a.guess_mode && !a.modes.empty())
        fail(ErrorCode::InvalidArgument, "usage: give either --guess-mode or --control-mode, not both");
    a.ready.clear();
    a.modules.clear();
    a.parsed_modes.clear();
    for (size_t i = 0; i < n; ++i) {
        const float w = pick(a.strengths, i, 1.0f), s = pick(a.starts, i, 0.0f), e = pick(a.ends, i, 1.0f);
        if (!(std::isfinite(w) && w >= 0 && w <= 10))
            fail(ErrorCode::InvalidArgument, "usage: --control-strength must be in 0..10, got ", w);
        if (!(s >= 0 && e <= 1 && s < e))
            fail(ErrorCode::InvalidArgument, "usage: --control-start/--control-end must satisfy 0 <= start < end <= 1, "
                                             "got ", s, " and ", e);
        Preprocessor pp;
        ControlMode mode = a.guess_mode ? ControlMode::Guess : ControlMode::Balanced;
        try {
            pp = parse_preprocessor(pick(a.preprocess, i, std::string("none")), "--control-preprocess");
            if (!a.modes.empty()) mode = parse_control_mode(pick(a.modes, i, std::string()), "--control-mode");
        } catch (const Error& e) {
            fail(ErrorCode::InvalidArgument, "usage: ", e.what());
        }
        const Image img = read_image(a.images[i], kMaxInputImagePixels);
        a.ready.push_back(run_preprocessor(pp, img));
        a.modules.push_back(pp.module);
        a.parsed_modes.push_back(mode);
        // Same path twice is fine (one model, two images); a missing file is found here, before the model loads.
        if (!path_exists(a.nets[i]))
            fail(ErrorCode::NotFound, "--control-net '", a.nets[i], "' does not exist");
    }
}

std::vector<ControlUnit> load_control_units(const ControlArgs& a, const DiffusionModel& m) {
    std::vector<ControlUnit> out;
    std::map<std::string, std::shared_ptr<const ControlNetModel>> loaded;
    for (size_t i = 0; i < a.nets.size(); ++i) {
        ControlUnit u;
        auto it = loaded.find(a.nets[i]);
        u.net = it != loaded.end() ? it->second : (loaded[a.nets[i]] = m.load_control_net(a.nets[i], "--control-net"));
        u.name = stem(a.nets[i]);
        u.module = a.modules[i];
        u.image = a.ready[i];
        u.weight = pick(a.strengths, i, 1.0f);
        u.start = pick(a.starts, i, 0.0f);
        u.end = pick(a.ends, i, 1.0f);
        u.mode = a.parsed_modes[i];
        out.push_back(std::move(u));
    }
    return out;
}

}  // namespace nuance::cli
