// nuance bench: times a model's parts at a given size. One line per figure:
//   <name> median_s=<float> min_s=<float> max_s=<float>
// for text_encode, denoise_step (one CFG step = the UNet on a batch of 2) and vae_decode, then the counted work of a
// step (GFLOP of every matmul/conv it ran, and GFLOP/s at the median) and peak_rss_mb=<int> of the whole process.
// --profile adds one profiled step and decode: `profile part=<p> op=<op> calls=<n> ms=<ms> share=<%>` per op.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <sys/resource.h>

#include "backends/cpu/dnnl_context.h"
#include "commands.h"
#include "core/allocator.h"
#include "core/op_stats.h"
#include "ops/ops.h"
#include "models/model_family.h"

namespace nuance::cli {

namespace {

struct BenchArgs {
    std::string model, precision = "auto";
    int width = 512, height = 512, steps = 3, repeat = 3, threads = 0;
    bool profile = false;
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
    std::vector<std::pair<std::string, OpProfileEntry>> rows(prof.begin(), prof.end());
    std::sort(rows.begin(), rows.end(), [](const auto& x, const auto& y) { return x.second.seconds > y.second.seconds; });
    double in_ops = 0;
    for (const auto& [name, e] : rows) {
        in_ops += e.seconds;
        std::printf("profile part=%s op=%s calls=%lld ms=%.1f share=%.1f%%", part, name.c_str(), (long long)e.calls,
                    e.seconds * 1e3, 100.0 * e.seconds / total);
        if (e.flops > 0) std::printf(" gflops_per_s=%.1f", e.flops / 1e9 / e.seconds);
        std::printf("\n");
    }
    std::printf("profile part=%s op=(outside ops) ms=%.1f share=%.1f%%\n", part, (total - in_ops) * 1e3,
                100.0 * (total - in_ops) / total);
    std::printf("profile part=%s total_ms=%.1f\n", part, total * 1e3);
    std::fflush(stdout);
}

struct Timing {
    std::vector<double> s;
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

double seconds_since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

template <class F>
Timing time_it(int warmup, int n, F&& f) {
    Timing t;
    for (int i = 0; i < warmup; ++i) f();
    for (int i = 0; i < n; ++i) {
        const auto t0 = std::chrono::steady_clock::now();
        f();
        t.s.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }
    return t;
}

int run(const BenchArgs& a) {
    if (a.model.empty()) fail(ErrorCode::InvalidArgument, "usage: bench needs -m MODEL");
    ModelLoadOptions lo;
    lo.precision = cpu::resolve_precision(parse_usage_precision(a.precision));
    NUANCE_CHECK(a.repeat >= 1 && a.steps >= 1, "usage: --repeat and --steps must be >= 1");
    cpu::set_num_threads(a.threads);
    std::fprintf(stderr, "bench: %s, %dx%d, %d thread(s), %s\n", a.model.c_str(), a.width, a.height,
                 cpu::num_threads(), precision_name(lo.precision));
    const auto t_load = std::chrono::steady_clock::now();
    const std::unique_ptr<DiffusionModel> loaded = load_model(a.model, lo);
    const DiffusionModel& m = *loaded;
    const double load_s = seconds_since(t_load);  // one load: median = min = max
    std::printf("load median_s=%.4f min_s=%.4f max_s=%.4f\n", load_s, load_s, load_s);
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
    time_it(1, a.repeat, [&] { cond = m.encode(req); }).print("text_encode");

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
    {
        OpStatsScope scope(step_stats);
        m.predict(x, t, batch, sc);
    }
    const Timing step = time_it(0, a.steps * a.repeat, [&] { m.predict(x, t, batch, sc); });
    step.print("denoise_step");
    if (a.profile) print_profile("denoise_step", [&] { m.predict(x, t, batch, sc); });
    // As generate does before its decode: the denoiser's cached activation blocks go back to the system, so the
    // decoder's (up to 256 MiB each at 512²) are kept and reused from the warm-up on; the timings are the steady
    // state. (A first decode in a process also pays the page faults of its fresh memory.)
    allocator_trim();
    const Tensor z = Tensor::full({1, m.latent_channels(), h, w}, 0.1f);
    const VaeTiling no_tiling;
    OpStats vae_stats;
    {
        OpStatsScope scope(vae_stats);
        m.decode(z, no_tiling);
    }
    const Timing dec = time_it(0, a.repeat, [&] { m.decode(z, no_tiling); });
    dec.print("vae_decode");
    if (a.profile) print_profile("vae_decode", [&] { m.decode(z, no_tiling); });
    std::printf("denoise_step_gflop=%.1f gflops_per_s=%.1f\n", step_stats.flops / 1e9,
                step_stats.flops / 1e9 / step.median());
    std::printf("vae_decode_gflop=%.1f gflops_per_s=%.1f\n", vae_stats.flops / 1e9, vae_stats.flops / 1e9 / dec.median());
    struct rusage ru {};
    getrusage(RUSAGE_SELF, &ru);
    std::printf("peak_rss_mb=%ld\n", ru.ru_maxrss / 1024);
    return 0;
}

}  // namespace

Runner add_bench(CLI::App& app) {
    auto a = std::make_shared<BenchArgs>();
    CLI::App* c = app.add_subcommand("bench", "Time text encoding, one denoiser step and the VAE decode of a model");
    c->add_option("-m,--model", a->model, "Checkpoint or diffusers folder")->required();
    c->add_option("-W,--width", a->width, "Width")->capture_default_str();
    c->add_option("-H,--height", a->height, "Height")->capture_default_str();
    c->add_option("--steps", a->steps, "Denoiser steps timed per repeat")->capture_default_str();
    c->add_option("--repeat", a->repeat, "Timed repeats (after one warm-up)")->capture_default_str();
    c->add_option("--precision", a->precision, "Compute precision: auto (bf16 where the CPU has it) | bf16 | fp32")
        ->capture_default_str();
    c->add_option("-t,--threads", a->threads, "CPU threads (default: all cores)");
    c->add_flag("--profile", a->profile,
                "After the timings, one more step and decode with wall time per op (profile part=... op=... ms=...)");
    return [a] { return run(*a); };
}

}  // namespace nuance::cli
