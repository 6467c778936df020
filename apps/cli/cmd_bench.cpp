// nuance bench: times a model's parts at a given size. One line per figure:
//   <name> median_s=<float> min_s=<float> max_s=<float>
// for text_encode, denoise_step (one CFG step = the UNet on a batch of 2) and vae_decode, then the counted work of a
// step (GFLOP of every matmul/conv it ran, and GFLOP/s at the median) and peak_rss_mb=<int> of the whole process.
// --profile adds one profiled step and decode: `profile part=<p> op=<op> calls=<n> ms=<ms> share=<%>` per op.
// A model with a T5 encoder (SD3, Flux) also gets t5_encode (the T5 alone, --t5-tokens, default the family's 256 /
// 512), and weights_mb=<n> counts the bytes of the weights the model holds (as stored: mmap'd or converted).
// --json prints each figure instead as one JSON line in tools/bench_reference.py's format (impl "nuance"), so the two
// sides go into one table: {"impl", "model", "part", "res", "dtype", "threads", "median_s", "min_s", "runs",
// "peak_rss_mb", "weights_mb", ...}.
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>
#include <sys/resource.h>

#include "backends/backend.h"
#include "backends/cpu/dnnl_context.h"
#include "commands.h"
#include "core/allocator.h"
#include "core/op_stats.h"
#include "ops/ops.h"
#include "core/quantized_weight.h"
#include "models/model_family.h"
#include "models/t5/t5_loader.h"
#include "nn/module.h"
#include <nlohmann/json.hpp>

namespace nuance::cli {

namespace {

struct BenchArgs {
    std::string model, precision = "auto", weight_type, clip_l, clip_g, clip_h, t5xxl, vae, parts = "text,t5,step,vae";
    int width = 512, height = 512, res = 0, steps = 3, repeat = 3, threads = 0, t5_tokens = 0;
    bool profile = false, json = false;
};

// One more run of f under an op profile: one line per op, slowest first, and the time outside any op.
template <class F>
void print_profile(const char* part, F&& f) {
    OpProfile prof;
    const auto t0 = std::chrono::steady_clock::now();
    {
        OpProfileScope scope(prof);
        f();
    }
    const double total = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::fputs(format_op_profile(prof, total, part).c_str(), stdout);
    std::fflush(stdout);
}

// CPU seconds of the whole process (all threads): on a shared machine, wall time measures the neighbours too.
double process_cpu_s() {
    struct rusage ru {};
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_utime.tv_sec + ru.ru_stime.tv_sec + 1e-6 * (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
}

struct Timing {
    std::vector<double> s;
    std::vector<double> cpu;  // process CPU seconds of each run
    void print(const char* name) const {
        std::vector<double> v = s;
        std::sort(v.begin(), v.end());
        std::printf("%s median_s=%.4f min_s=%.4f max_s=%.4f\n", name, v[v.size() / 2], v.front(), v.back());
        std::fflush(stdout);
    }
    double median() const {
        std::vector<double> v = s;
        std::sort(v.begin(), v.end());
        return v[v.size() / 2];
    }
};

long peak_rss_mb() {
    struct rusage ru {};
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss / 1024;
}

// Bytes of every defined parameter the model holds (its weights as used: mmap'd file tensors or converted copies).
int64_t weight_bytes(DiffusionModel& m) {
    int64_t n = 0;
    for (const auto& [name, mod] : m.modules())
        if (mod)
            for_each_param(*mod, [&](const std::string&, Param& p) {
                if (!p.defined()) return;
                // A quantized weight: its blocks (the handle's own nbytes count one byte per value).
                const auto q = quantized_weight_view(p.value);
                n += q ? q->rows * q->row_bytes : (int64_t)p.value.nbytes();
            });
    return n;
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

template <class F>
Timing time_it(int warmup, int n, F&& f) {
    Timing t;
    for (int i = 0; i < warmup; ++i) f();
    for (int i = 0; i < n; ++i) {
        const auto t0 = std::chrono::steady_clock::now();
        const double c0 = process_cpu_s();
        f();
        t.s.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
        t.cpu.push_back(process_cpu_s() - c0);
    }
    return t;
}

// The figure lines: text (`name median_s=.. min_s=.. max_s=..`) or one JSON object per figure.
struct Report {
    const BenchArgs& a;
    nlohmann::json base;
    void figure(const char* part, const Timing& t, const nlohmann::json& extra = nlohmann::json::object()) const {
        if (!a.json) return t.print(part);
        std::vector<double> v = t.s;
        std::sort(v.begin(), v.end());
        nlohmann::json j = base;
        j["part"] = part;
        j["median_s"] = std::round(v[v.size() / 2] * 1e4) / 1e4;
        j["min_s"] = std::round(v.front() * 1e4) / 1e4;
        j["runs"] = v.size();
        if (!t.cpu.empty()) {
            std::vector<double> c = t.cpu;
            std::sort(c.begin(), c.end());
            j["cpu_s"] = std::round(c[c.size() / 2] * 1e3) / 1e3;  // median process CPU seconds of a run
        }
        j["peak_rss_mb"] = peak_rss_mb();
        for (auto it = extra.begin(); it != extra.end(); ++it) j[it.key()] = it.value();
        std::printf("%s\n", j.dump().c_str());
        std::fflush(stdout);
    }
};

bool has_part(const std::string& parts, const std::string& p) {
    return ("," + parts + ",").find("," + p + ",") != std::string::npos;
}

int run(const BenchArgs& a_in) {
    BenchArgs a = a_in;
    if (a.model.empty()) fail(ErrorCode::InvalidArgument, "usage: bench needs -m MODEL");
    if (a.res != 0) {
        NUANCE_CHECK(a.res >= 8 && a.res <= 16384, "usage: --res ", a.res, " (valid: 8..16384)");
        a.width = a.height = a.res;
    }
    NUANCE_CHECK(a.t5_tokens >= 0 && a.t5_tokens <= 4096, "usage: --t5-tokens ", a.t5_tokens, " (valid: 1..4096, 0 = ",
                 "the family's)");
    for (size_t b = 0; b <= a.parts.size();) {
        const size_t e = std::min(a.parts.find(',', b), a.parts.size());
        const std::string p = a.parts.substr(b, e - b);
        NUANCE_CHECK(p == "text" || p == "t5" || p == "step" || p == "vae", "usage: --parts: unknown part '", p,
                     "' in '", a.parts, "' (valid: text, t5, step, vae, comma-separated)");
        b = e + 1;
    }
    ModelLoadOptions lo;
    lo.clip_l = a.clip_l;
    lo.clip_g = a.clip_g;
    lo.clip_h = a.clip_h;
    lo.t5xxl = a.t5xxl;
    lo.vae_path = a.vae;
    lo.precision = cpu::resolve_precision(parse_usage_precision(a.precision));
    lo.weight_type = check_usage_weight_type(a.weight_type);
    NUANCE_CHECK(a.repeat >= 1 && a.steps >= 1, "usage: --repeat and --steps must be >= 1");
    cpu::set_num_threads(a.threads);
    std::fprintf(stderr, "bench: %s, %dx%d, %d thread(s), %s%s%s\n", a.model.c_str(), a.width, a.height,
                 cpu::num_threads(), precision_name(lo.precision), a.weight_type.empty() ? "" : ", --type ",
                 a.weight_type.c_str());
    const auto t_load = std::chrono::steady_clock::now();
    const std::unique_ptr<DiffusionModel> loaded = load_model(a.model, lo);
    const DiffusionModel& m = *loaded;
    const double load_s = seconds_since(t_load);  // one load: median = min = max
    const double weights_mb = weight_bytes(*loaded) / 1048576.0;
    Report rep{a, {{"impl", "nuance"}, {"model", a.model}, {"family", m.family_name()}, {"variant", m.variant()},
                   {"res", a.width}, {"width", a.width}, {"height", a.height},
                   {"dtype", precision_name(lo.precision)}, {"threads", cpu::num_threads()},
                   {"weights_mb", std::round(weights_mb)}, {"weight_type", a.weight_type}}};
    rep.figure("load", Timing{{load_s}, {}});
    if (!a.json) std::printf("weights_mb=%.0f\n", weights_mb);
    NUANCE_CHECK_CODE(!m.pixel_space(), Unsupported, "bench: '", a.model, "' is a pixel-space model (no VAE); ",
                      "bench times the text encoder, denoiser and VAE decode of a latent-diffusion model");
    NUANCE_CHECK(a.width % m.vae_scale() == 0 && a.height % m.vae_scale() == 0, "usage: size ", a.width, "x",
                 a.height, " is not a multiple of ", m.vae_scale());
    ConditioningRequest req;
    // A class-conditional model (DiT) takes a class name, not a sentence: its own example prompt.
    req.text = m.guidance() == GuidanceKind::ClassConditional
                   ? m.generation_defaults().prompt
                   : "a photograph of an astronaut riding a horse on the moon, highly detailed";
    Conditioning cond;
    if (has_part(a.parts, "text")) rep.figure("text_encode", time_it(1, a.repeat, [&] { cond = m.encode(req); }));
    else cond = m.encode(req);
    // The T5 encoder alone (SD3: 256 tokens, Flux: 512), as the reference times T5EncoderModel.
    for (const auto& [name, mod] : loaded->modules()) {
        const auto* t5 = dynamic_cast<const T5EncoderModel*>(mod);
        if (!t5 || !has_part(a.parts, "t5")) continue;
        const int tokens = a.t5_tokens > 0 ? a.t5_tokens : m.family_name() == "flux" ? 512 : 256;
        rep.figure("t5_encode", time_it(1, a.repeat, [&] { encode_t5_prompts(*t5, {req.text}, tokens); }),
                   {{"tokens", tokens}});
    }

    // One denoiser step as generate runs it: a batch of 2 (uncond + cond) for CFG models, 1 for distilled ones.
    const GuidanceKind kind = m.guidance();
    const bool cfg = kind == GuidanceKind::ClassifierFree || kind == GuidanceKind::ClassConditional;
    const int64_t B = cfg ? 2 : 1;
    const int64_t h = a.height / m.vae_scale(), w = a.width / m.vae_scale();
    const Tensor x = Tensor::full({B, m.latent_channels(), h, w}, 0.5f);
    const Conditioning batch = cfg ? m.batch_conditioning({&cond, &cond}) : cond;
    StepContext sc;
    sc.width = a.width;
    sc.height = a.height;
    sc.guidance = kind == GuidanceKind::Distilled ? 3.5f : 0.0f;
    const Objective obj = m.objective();
    const double t = obj.is_flow() ? 0.5 * obj.flow_timestep_scale : 500.0;
    OpStats step_stats;
    Timing step;
    if (has_part(a.parts, "step")) {
        const auto t_first = std::chrono::steady_clock::now();
        const double c_first = process_cpu_s();
        {
            OpStatsScope scope(step_stats);
            m.predict(x, t, batch, sc);
        }
        // The first step also pages the weights in and packs them: reported apart from the steady state.
        rep.figure("denoise_step_first", Timing{{seconds_since(t_first)}, {process_cpu_s() - c_first}}, {{"batch", B}});
        step = time_it(0, a.steps * a.repeat, [&] { m.predict(x, t, batch, sc); });
        rep.figure("denoise_step", step,
                   {{"batch", B}, {"gflop", std::round(step_stats.flops / 1e8) / 10},
                    {"gflops_per_s", std::round(step_stats.flops / 1e8 / step.median()) / 10}});
        if (a.profile) print_profile("denoise_step", [&] { m.predict(x, t, batch, sc); });
    }
    // As generate does before its decode: the denoiser's cached activation blocks go back to the system, so the
    // decoder's (up to 256 MiB each at 512²) are kept and reused from the warm-up on; the timings are the steady
    // state. (A first decode in a process also pays the page faults of its fresh memory.)
    allocator_trim();
    OpStats vae_stats;
    Timing dec;
    if (has_part(a.parts, "vae")) {
        const Tensor z = Tensor::full({1, m.latent_channels(), h, w}, 0.1f);
        const VaeTiling no_tiling;
        {
            OpStatsScope scope(vae_stats);
            m.decode(z, no_tiling);
        }
        dec = time_it(0, a.repeat, [&] { m.decode(z, no_tiling); });
        rep.figure("vae_decode", dec,
                   {{"gflop", std::round(vae_stats.flops / 1e8) / 10},
                    {"gflops_per_s", std::round(vae_stats.flops / 1e8 / dec.median()) / 10}});
        if (a.profile) print_profile("vae_decode", [&] { m.decode(z, no_tiling); });
    }
    if (a.json) {
        nlohmann::json j = rep.base;
        j["part"] = "summary";
        j["peak_rss_mb"] = peak_rss_mb();
        j["peak_rss_over_weights"] = std::round(100.0 * peak_rss_mb() / std::max(1.0, weights_mb)) / 100;
        j["packed_mb"] = std::round(packed_weights_bytes() / 1048576.0);
        j["packed_per_call_mb"] = std::round(packed_weights_over_budget_bytes() / 1048576.0);
        std::printf("%s\n", j.dump().c_str());
        return 0;
    }
    if (!step.s.empty())
        std::printf("denoise_step_gflop=%.1f gflops_per_s=%.1f\n", step_stats.flops / 1e9,
                    step_stats.flops / 1e9 / step.median());
    if (!dec.s.empty())
        std::printf("vae_decode_gflop=%.1f gflops_per_s=%.1f\n", vae_stats.flops / 1e9,
                    vae_stats.flops / 1e9 / dec.median());
    std::printf("peak_rss_mb=%ld\n", peak_rss_mb());
    const size_t budget = packed_weights_budget();
    const std::string budget_text = budget == SIZE_MAX ? "unlimited" : std::to_string(budget >> 20) + " MB";
    std::printf("packed_mb=%.0f packed_per_call_mb=%.0f (budget %s: NUANCE_PACKED_BUDGET_MB)\n",
                packed_weights_bytes() / 1048576.0, packed_weights_over_budget_bytes() / 1048576.0,
                budget_text.c_str());
    return 0;
}

}  // namespace

Runner add_bench(CLI::App& app) {
    auto a = std::make_shared<BenchArgs>();
    CLI::App* c = app.add_subcommand("bench", "Time text encoding, one denoiser step and the VAE decode of a model");
    c->add_option("-m,--model", a->model, "Checkpoint or diffusers folder")->required();
    c->add_option("-W,--width", a->width, "Width")->capture_default_str();
    c->add_option("-H,--height", a->height, "Height")->capture_default_str();
    c->add_option("--res", a->res, "Square size: sets -W and -H");
    c->add_option("--clip-l", a->clip_l, "CLIP-L file (SD3 / Flux split components)");
    c->add_option("--clip-g", a->clip_g, "CLIP-G file (SDXL UNet-only files, SD3)");
    c->add_option("--clip-h", a->clip_h, "OpenCLIP ViT-H file (SD2 UNet-only files)");
    c->add_option("--t5xxl", a->t5xxl, "T5-XXL file (SD3 / Flux)");
    c->add_option("--vae", a->vae, "VAE file (replaces the checkpoint's; DiT needs one)");
    c->add_option("--t5-tokens", a->t5_tokens, "Tokens of the t5_encode figure (default: SD3 256, Flux 512)");
    c->add_option("--parts", a->parts, "What to time: text,t5,step,vae (comma-separated)")->capture_default_str();
    c->add_flag("--json", a->json, "One JSON line per figure (tools/bench_reference.py's format, impl \"nuance\")");
    c->add_option("--steps", a->steps, "Denoiser steps timed per repeat")->capture_default_str();
    c->add_option("--repeat", a->repeat, "Timed repeats (after one warm-up)")->capture_default_str();
    c->add_option("--precision", a->precision, "Compute precision: auto (bf16 where the CPU has it) | bf16 | fp32")
        ->capture_default_str();
    c->add_option("--type", a->weight_type, kWeightTypeHelp);
    c->add_option("-t,--threads", a->threads, "CPU threads (default: all cores)");
    c->add_flag("--profile", a->profile,
                "After the timings, one more step and decode with wall time per op (profile part=... op=... ms=...)");
    return [a] { return run(*a); };
}

}  // namespace nuance::cli
