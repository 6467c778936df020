// nuance generate: txt2img / img2img.
#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <random>
#include <sys/stat.h>
#include <unistd.h>

#include "adapters/lora_library.h"
#include "text/embedding_library.h"
#include "backends/backend.h"
#include "backends/cpu/dnnl_context.h"
#include "cli_control.h"
#include "commands.h"
#include "dist/comm.h"
#include "models/default_model.h"
#include "models/model_defaults.h"
#include "models/model_family.h"
#include "io/image.h"
#include "io/weights.h"
#include "models/taesd/taesd.h"
#include "io/weight_file.h"
#include "pipelines/generate.h"
#include "pipelines/inpaint.h"
#include "pipelines/inpaint_image.h"
#include "progress.h"
#include "samplers/schedule.h"
#include "server/preview.h"
#include "text/prompt_check.h"

namespace nuance::cli {

namespace {

struct GenerateArgs {
    std::string model, vae, output = "output.png", init_img, rng = "cuda", prediction;
    std::string family, clip_l, clip_g, clip_h, t5xxl;  // --family, split-file text encoders
    std::string prompt_file, negative_prompt_file;
    std::string sigmas;                  // --sigmas "14.6,7.0,...,0"
    std::vector<std::string> loras;      // --lora FILE[:weight], repeatable
    std::string lora_dir;                // --lora-dir: <lora:name:w> in the prompt, --lora NAME
    std::string embedding_dir;           // --embedding-dir: textual inversions named in the prompts
    std::string mask, inpaint_fill = "original", outpaint;  // --mask, --inpaint-fill, --outpaint l,r,t,b
    std::string skip_layers;             // --skip-layers "7,8,9" or sd.cpp's "[7,8,9]"; "" / "[]" = off
    CLI::Option* skip_layers_opt = nullptr;
    CLI::Option* slg_scale_opt = nullptr;
    float slg_scale = 0.0f;
    CLI::Option* steps_opt = nullptr;    // to tell an explicit --steps from the default
    CLI::Option* prompt_opt = nullptr;   // -p "" is a prompt; no -p at all is a usage error
    CLI::Option* neg_opt = nullptr;
    CLI::Option* width_opt = nullptr;    // unset -W/-H: the model's native size
    CLI::Option* height_opt = nullptr;
    CLI::Option* cfg_opt = nullptr;      // unset --cfg-scale/--sampler: the model's defaults (models/model_defaults.h)
    CLI::Option* sampler_opt = nullptr;
    GenerateParams p;
    std::string taesd, preview, hr_resize;  // --taesd FILE, --preview FILE, --hr-resize WxH
    int preview_every = 1;
    bool taesd_preview_only = false;
    CLI::Option* preview_every_opt = nullptr;
    std::vector<CLI::Option*> hr_opts;       // --hr-* (need --hr)
    ControlArgs control;
    int threads = 0;
    std::string precision = "auto", weight_type;
    bool no_metadata = false, quiet = false, verbose = false;
};

// --skip-layers: block indices separated by commas, optionally in brackets (sd.cpp writes "[7,8,9]").
std::vector<int64_t> parse_skip_layers(const std::string& text) {
    std::string s = text;
    if (s.size() >= 2 && s.front() == '[' && s.back() == ']') s = s.substr(1, s.size() - 2);
    std::vector<int64_t> out;
    if (s.find_first_not_of(' ') == std::string::npos) return out;
    size_t pos = 0;
    while (pos <= s.size()) {
        const size_t comma = std::min(s.find(',', pos), s.size());
        std::string item = s.substr(pos, comma - pos);
        const size_t a = item.find_first_not_of(' '), b = item.find_last_not_of(' ');
        item = a == std::string::npos ? std::string() : item.substr(a, b - a + 1);
        const bool digits = !item.empty() && item.size() <= 4 &&
                            std::all_of(item.begin(), item.end(), [](char ch) { return ch >= '0' && ch <= '9'; });
        NUANCE_CHECK(digits, "usage: --skip-layers '", text, "': '", item,
                     "' is not a block index (expected e.g. 7,8,9)");
        NUANCE_CHECK(out.size() < 256, "usage: --skip-layers '", text, "': more than 256 layers");
        out.push_back(std::stoll(item));
        pos = comma + 1;
    }
    return out;
}

std::string numbered(const std::string& path, int i) {
    if (i == 0) return path;
    const auto dot = path.find_last_of('.');
    const auto slash = path.find_last_of('/');
    if (dot == std::string::npos || (slash != std::string::npos && dot < slash))
        return path + "_" + std::to_string(i + 1);
    return path.substr(0, dot) + "_" + std::to_string(i + 1) + path.substr(dot);
}

// A prompt file: a regular file of at most kMaxPromptBytes, valid UTF-8 without NUL (checked by the caller).
std::string read_text_file(const std::string& path, const char* flag) {
    struct stat st{};
    if (::stat(path.c_str(), &st) != 0)
        fail(ErrorCode::NotFound, flag, " '", path, "': ", std::strerror(errno));
    NUANCE_CHECK(S_ISREG(st.st_mode), "usage: ", flag, " '", path, "' is ", S_ISDIR(st.st_mode) ? "a folder" : "not a regular file",
                 ", not a text file");
    NUANCE_CHECK((uint64_t)st.st_size <= kMaxPromptBytes, flag, " '", path, "' is ", (uint64_t)st.st_size,
                 " bytes, over the limit of ", kMaxPromptBytes, " bytes for a prompt");
    FILE* f = std::fopen(path.c_str(), "rb");
    if (!f) fail(ErrorCode::NotFound, "cannot read ", flag, " '", path, "': ", std::strerror(errno));
    std::string s;
    char buf[4096];
    size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, f)) > 0 && s.size() <= kMaxPromptBytes) s.append(buf, n);
    const bool err = std::ferror(f) != 0;
    std::fclose(f);
    NUANCE_CHECK_CODE(!err, Io, "cannot read ", flag, " '", path, "'");
    while (!s.empty() && (s.back() == '\n' || s.back() == '\r')) s.pop_back();
    return s;
}

std::string format_duration(double s) {
    const long t = std::lround(std::max(0.0, s));
    char buf[32];
    if (t >= 3600) std::snprintf(buf, sizeof buf, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
    else std::snprintf(buf, sizeof buf, "%ld:%02ld", t / 60, t % 60);
    return buf;
}

// --outpaint "l,r,t,b": four non-negative pixel amounts.
void parse_outpaint(GenerateArgs& a) {
    std::vector<long long> v;
    size_t pos = 0;
    const std::string& t = a.outpaint;
    while (pos <= t.size() && v.size() < 5) {
        const size_t comma = std::min(t.find(',', pos), t.size());
        const std::string item = t.substr(pos, comma - pos);
        char* end = nullptr;
        errno = 0;
        const long long x = item.empty() ? 0 : std::strtoll(item.c_str(), &end, 10);
        if (item.empty() || *end != '\0' || errno != 0 || x < 0 || x > 8192)
            fail(ErrorCode::InvalidArgument, "usage: --outpaint '", t.substr(0, 64), "': expected left,right,top,bottom ",
                 "as four whole numbers of pixels in 0..8192, got '", item.substr(0, 32), "'");
        v.push_back(x);
        pos = comma + 1;
    }
    if (v.size() != 4)
        fail(ErrorCode::InvalidArgument, "usage: --outpaint '", t.substr(0, 64), "': expected 4 comma-separated ",
             "amounts (left,right,top,bottom), got ", v.size() > 4 ? "more" : std::to_string(v.size()));
    a.p.inpaint.outpaint_left = (int)v[0];
    a.p.inpaint.outpaint_right = (int)v[1];
    a.p.inpaint.outpaint_top = (int)v[2];
    a.p.inpaint.outpaint_bottom = (int)v[3];
}

// The inpainting flags, checked before the model loads.
void parse_inpaint_args(GenerateArgs& a) {
    try {
        a.p.inpaint.fill = parse_inpaint_fill(a.inpaint_fill);
    } catch (const Error& e) {
        fail(ErrorCode::InvalidArgument, "usage: --inpaint-fill: ", e.what());
    }
    if (a.p.inpaint.mask_blur < 0 || a.p.inpaint.mask_blur > kMaxMaskBlur)
        fail(ErrorCode::InvalidArgument, "usage: --mask-blur must be in 0..", kMaxMaskBlur, " pixels, got ",
             a.p.inpaint.mask_blur);
    if (a.p.inpaint.full_res_padding < 0 || a.p.inpaint.full_res_padding > 8192)
        fail(ErrorCode::InvalidArgument, "usage: --inpaint-padding must be in 0..8192 pixels, got ",
             a.p.inpaint.full_res_padding);
    if (!a.outpaint.empty()) parse_outpaint(a);
    if ((!a.mask.empty() || !a.outpaint.empty()) && a.init_img.empty())
        fail(ErrorCode::InvalidArgument, "usage: ", a.mask.empty() ? "--outpaint" : "--mask",
             " needs the image to work on: -i/--init-img FILE");
    if (a.mask.empty()) return;
    try {
        const auto file = map_file(a.mask);
        a.p.mask = decode_image(file->data(), file->size(), 4, a.mask, kMaxInputImagePixels);
    } catch (const Error& e) {
        fail(e.code(), "--mask: ", e.what());
    }
}

int run(GenerateArgs& a) {
    if (a.model.empty()) {
        a.model = default_model_path();
        if (a.model.empty())
            fail(ErrorCode::InvalidArgument, "usage: no model given and the built-in model (models/", kDefaultModelName,
                 ") was not found: pass -m/--model FILE|FOLDER (a Stable Diffusion checkpoint, .safetensors/.ckpt, ",
                 "or a diffusers folder), or set NUANCE_DEFAULT_MODEL");
    }
    // Everything a user can get wrong is checked before minutes go into loading and sampling.
    const bool has_prompt = a.prompt_opt && a.prompt_opt->count() > 0;
    // A class-conditional model (DiT) takes --class-label instead of a prompt.
    if (!has_prompt && a.prompt_file.empty() && a.p.class_label < 0)
        fail(ErrorCode::InvalidArgument, "usage: generate needs a prompt: -p/--prompt TEXT or --prompt-file FILE ",
             "(-p \"\" for an unconditional image; --class-label N for a class-conditional model such as DiT)");
    if (has_prompt && !a.prompt_file.empty())
        fail(ErrorCode::InvalidArgument, "usage: give either -p/--prompt or --prompt-file, not both");
    if (!a.negative_prompt_file.empty() && a.neg_opt && a.neg_opt->count() > 0)
        fail(ErrorCode::InvalidArgument, "usage: give either -n/--negative-prompt or --negative-prompt-file, not both");
    if (!a.prompt_file.empty()) a.p.prompt = read_text_file(a.prompt_file, "--prompt-file");
    if (!a.negative_prompt_file.empty())
        a.p.negative_prompt = read_text_file(a.negative_prompt_file, "--negative-prompt-file");
    try {
        check_prompt_text(a.p.prompt, a.prompt_file.empty() ? "-p/--prompt" : "--prompt-file '" + a.prompt_file + "'");
        check_prompt_text(a.p.negative_prompt, a.negative_prompt_file.empty()
                                                   ? "-n/--negative-prompt"
                                                   : "--negative-prompt-file '" + a.negative_prompt_file + "'");
    } catch (const Error& e) {
        fail(ErrorCode::InvalidArgument, "usage: ", e.what());
    }
    // -1 is "random" (A1111's convention); other negative seeds are mistakes, not another way to say random.
    if (a.p.seed < -1)
        fail(ErrorCode::InvalidArgument, "usage: --seed must be -1 (random) or in 0..9223372036854775807, got ",
             a.p.seed);
    if (a.p.batch_count < 1 || a.p.batch_count > 10000)
        fail(ErrorCode::InvalidArgument, "usage: -b/--batch-count must be in 1..10000, got ", a.p.batch_count);
    if (a.p.seed > INT64_MAX - (a.p.batch_count - 1))
        fail(ErrorCode::InvalidArgument, "usage: --seed ", a.p.seed, " + ", a.p.batch_count - 1,
             " (the batch's last seed) does not fit in 64 bits");
    // The output: a known extension and a writable folder, for every file of the batch.
    try {
        check_output_path(a.output);
        if (a.p.batch_count > 1) check_output_path(numbered(a.output, a.p.batch_count - 1));
    } catch (const Error& e) {
        // A bad name is a usage error (exit 2); a missing or read-only folder is an environment error (exit 1).
        fail(e.code(), e.code() == ErrorCode::InvalidArgument ? "usage: -o/--output: " : "-o/--output: ", e.what());
    }
    try {
        a.p.rng = parse_rng_kind(a.rng);
    } catch (const Error& e) {
        fail(ErrorCode::InvalidArgument, "usage: ", e.what());
    }
    if (a.skip_layers_opt && a.skip_layers_opt->count() > 0) a.p.slg.layers = parse_skip_layers(a.skip_layers);
    if (a.slg_scale_opt && a.slg_scale_opt->count() > 0) a.p.slg.scale = a.slg_scale;
    if (!a.sigmas.empty()) {
        try {
            a.p.sigmas = parse_sigma_list(a.sigmas);
        } catch (const Error& e) {
            fail(ErrorCode::InvalidArgument, "usage: --sigmas: ", e.what());
        }
        const int n = (int)a.p.sigmas.size() - 1;
        if (a.steps_opt && a.steps_opt->count() > 0 && a.p.steps != n)
            fail(ErrorCode::InvalidArgument, "usage: --steps ", a.p.steps, " does not match the ", n,
                 " steps of --sigmas (", a.p.sigmas.size(), " values); drop --steps");
        a.p.steps = n;
    }
    // Hires fix and previews: every flag is checked here, the sizes against the model once it is loaded.
    for (const CLI::Option* o : a.hr_opts)
        if (o->count() > 0 && !a.p.hires.enabled)
            fail(ErrorCode::InvalidArgument, "usage: ", o->get_name(), " needs --hr (the hires fix)");
    if (!a.hr_resize.empty()) {
        int x = 0, y = 0;
        char tail = 0;
        if (std::sscanf(a.hr_resize.c_str(), "%dx%d%c", &x, &y, &tail) != 2 || x < 0 || y < 0 || x > 8192 || y > 8192 ||
            (x == 0 && y == 0))
            fail(ErrorCode::InvalidArgument, "usage: --hr-resize must be WxH with sides in 0..8192 (0: from the aspect ",
                 "ratio; not both), got '", a.hr_resize, "'");
        a.p.hires.resize_x = x;
        a.p.hires.resize_y = y;
    }
    if (a.p.hires.enabled) {
        try {
            parse_hires_upscaler(a.p.hires.upscaler);
        } catch (const Error& e) {
            fail(ErrorCode::InvalidArgument, "usage: --hr-upscaler: ", e.what());
        }
        if (!a.init_img.empty()) fail(ErrorCode::InvalidArgument, "usage: --hr is for txt2img; drop -i/--init-img or --hr");
    }
    if (a.preview_every_opt && a.preview_every_opt->count() > 0 && a.preview.empty())
        fail(ErrorCode::InvalidArgument, "usage: --preview-every needs --preview FILE");
    if (a.preview_every < 1 || a.preview_every > 1000)
        fail(ErrorCode::InvalidArgument, "usage: --preview-every must be in 1..1000, got ", a.preview_every);
    if (a.taesd_preview_only && a.taesd.empty())
        fail(ErrorCode::InvalidArgument, "usage: --taesd-preview-only needs --taesd FILE");
    if (!a.preview.empty()) {
        try {
            check_output_path(a.preview);
        } catch (const Error& e) {
            fail(e.code(), e.code() == ErrorCode::InvalidArgument ? "usage: --preview: " : "--preview: ", e.what());
        }
    }
    // LoRAs: --lora FILE[:weight] (or a --lora-dir name) and the prompt's <lora:name:w> tags, resolved before the
    // model loads so that a wrong name fails at once.
    std::vector<LoraUse> loras;
    try {
        LoraLibrary lib;
        if (!a.lora_dir.empty()) lib = LoraLibrary::scan(a.lora_dir);
        for (const auto& arg : a.loras) {
            const LoraTag t = parse_lora_flag(arg);
            if (file_exists(t.name) || a.lora_dir.empty()) {
                require_regular_file(t.name, "--lora file");
                loras.push_back({t.name, stem(t.name), t.te, t.unet});
            } else {
                loras.push_back({lib.find(t.name).path, t.name, t.te, t.unet});
            }
        }
        const auto tags = resolve_lora_tags(parse_lora_tags(a.p.prompt), a.lora_dir.empty() ? nullptr : &lib);
        loras.insert(loras.end(), tags.begin(), tags.end());
    } catch (const Error& e) {
        fail(e.code(), e.code() == ErrorCode::InvalidArgument ? "usage: " : "", e.what());
    }
    // Textual inversions: files are read when the prompt (or negative prompt) names them, at encode time.
    if (!a.embedding_dir.empty()) {
        try {
            a.p.embeddings = EmbeddingLibrary::scan(a.embedding_dir);
        } catch (const Error& e) {
            fail(ErrorCode::InvalidArgument, "usage: --embedding-dir: ", e.what());
        }
    }
    if (a.p.seed < 0) a.p.seed = (int64_t)std::random_device{}();  // 0..2^32-1, as A1111
    // mpirun: the batch's seeds are split into contiguous shards, one per rank; each rank writes the files one
    // process would write for its seeds (same names, same images), rank 0 reports. A random seed is rank 0's.
    const int ranks = dist::size();
    int first_image = 0;
    const int all_images = a.p.batch_count;
    if (ranks > 1) {
        int64_t seed = a.p.seed;
        dist::broadcast(&seed, sizeof seed, 0);
        const dist::Range r = dist::shard(a.p.batch_count, ranks, dist::rank());
        first_image = (int)r.begin;
        a.p.seed = seed + r.begin;
        a.p.batch_count = (int)(r.end - r.begin);
        if (!dist::is_root()) a.quiet = true;
    }
    const auto t_all = std::chrono::steady_clock::now();
    auto report_ranks = [&](double done) {  // every rank calls it once: the sum is a collective
        if (ranks <= 1) return;
        dist::allreduce_sum(&done, 1);
        if (dist::is_root())
            std::fprintf(stderr, "%d rank(s) (%s) wrote %.0f of %d image(s) in %.2fs\n", ranks,
                         dist::world().description.c_str(), done, all_images,
                         std::chrono::duration<double>(std::chrono::steady_clock::now() - t_all).count());
    };
    if (a.p.batch_count == 0) {  // more ranks than images: this one has none
        report_ranks(0);
        return 0;
    }
    cpu::set_num_threads(a.threads);  // -t is bounded by the CLI's checks (cli_validate.h)
    // The server's input cap: a decompression bomb is refused on its header, before decoding.
    if (!a.init_img.empty()) a.p.init_image = read_image(a.init_img, kMaxInputImagePixels);
    check_control_args(a.control);
    parse_inpaint_args(a);

    Logger log;
    if (a.verbose) log.set_level(LogLevel::Debug);
    const auto t0 = std::chrono::steady_clock::now();
    ModelLoadOptions lo;
    lo.vae_path = a.vae;
    lo.family = a.family;
    lo.clip_l = a.clip_l;
    lo.clip_g = a.clip_g;
    lo.clip_h = a.clip_h;
    lo.t5xxl = a.t5xxl;
    lo.prediction = a.prediction;
    lo.precision = parse_usage_precision(a.precision);
    lo.weight_type = check_usage_weight_type(a.weight_type);
    lo.logger = &log;
    // The tiny autoencoder first: a wrong file fails in milliseconds, not after the model's load.
    if (!a.taesd.empty()) {
        a.p.taesd = TinyAutoencoder::load(a.taesd, "--taesd");
        a.p.taesd_decode = !a.taesd_preview_only;
    }
    const std::unique_ptr<DiffusionModel> loaded = load_model(a.model, lo);
    const DiffusionModel& model = *loaded;
    const double load_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (!a.quiet) std::fprintf(stderr, "loaded %s model '%s' in %.2fs\n", model.family_name().c_str(), a.model.c_str(), load_s);
    if (!loras.empty()) {
        LoraMerge merge;  // one-shot: the merged model is used and dropped, no restore
        std::vector<std::string> warnings;
        const auto tl = std::chrono::steady_clock::now();
        const std::string hashes = apply_loras(*loaded, loras, merge, &warnings);
        const double lora_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - tl).count();
        for (const auto& w : warnings) std::fprintf(stderr, "warning: %s\n", w.c_str());
        a.p.extra_infotext = lora_hashes_infotext(hashes);
        if (!a.quiet)
            for (const auto& u : loras)
                std::fprintf(stderr, "applied LoRA '%s' (text encoder %g, %s %g)\n", u.path.c_str(), u.te,
                             model.network_name().c_str(), u.unet);
        if (!a.quiet) std::fprintf(stderr, "merged %zu LoRA(s) into %zu layers in %.2fs\n", loras.size(), merge.layers(), lora_s);
    }
    // One-pass guidance kinds (Flux-dev's distilled guidance, schnell's none) never encode a negative prompt; say so
    // rather than fail, since UIs and scripts often send a default one.
    if (!a.p.negative_prompt.empty() &&
        (model.guidance() == GuidanceKind::Distilled || model.guidance() == GuidanceKind::None))
        std::fprintf(stderr, "note: %s takes no negative prompt (guidance: %s); --negative-prompt is ignored\n",
                     model.variant().c_str(), guidance_kind_name(model.guidance()));
    a.p.control = load_control_units(a.control, model);
    a.p.release_weights_before_decode = true;  // one-shot: the process ends after the images
    a.p.release_text_encoder_weights = true;
    const GenerationDefaults md = generation_defaults(model);
    auto unset = [](const CLI::Option* o) { return !(o && o->count() > 0); };
    if (unset(a.width_opt)) a.p.width = md.width;
    if (unset(a.height_opt)) a.p.height = md.height;
    if (unset(a.steps_opt) && a.p.sigmas.empty()) a.p.steps = md.steps;
    if (unset(a.cfg_opt)) a.p.cfg_scale = md.cfg_scale;
    if (unset(a.sampler_opt)) a.p.sampler = md.sampler;
    a.p.on_warning = [&](const std::string& w) { std::fprintf(stderr, "warning: %s\n", w.c_str()); };
    try {
        validate_params(model, a.p);
        validate_inpaint(model, a.p);
    } catch (const Error& e) {
        fail(ErrorCode::InvalidArgument, "usage: ", e.what());
    }

    // A terminal gets a bar redrawn in place; a log (stderr not a terminal) gets plain lines, one per 10%.
    const bool tty = isatty(STDERR_FILENO);
    ProgressBar bar(!a.quiet && tty);
    const auto t1 = std::chrono::steady_clock::now();
    auto since_t1 = [&] { return std::chrono::duration<double>(std::chrono::steady_clock::now() - t1).count(); };
    int images_done = 0;
    double done_s = 0;        // time of the images finished so far, decode and save included
    int last_logged = -1;     // non-tty: last 10% bucket printed
    const LatentFormat latent_format = model.latent_format();
    a.p.on_progress = [&](const GenerateProgress& pr) {
        // --preview: the sampler's current estimate, rewritten in place (atomically) every N steps.
        if (!a.preview.empty() && pr.latents && (pr.step % a.preview_every == 0 || pr.step == pr.total)) {
            const Image im = server::progress_preview(*pr.latents, pr.sigma, pr.denoised, latent_format, 512,
                                                      a.p.taesd.get());
            if (im.width > 0) write_image(a.preview, im);
        }
        // Overall ETA: finished images give the per-image time (decode included); before the first one, the steps.
        const double now = since_t1();
        const double in_image = now - done_s;
        const double frac = pr.total > 0 ? (double)pr.step / pr.total : 1.0;
        const double per_image = images_done > 0 ? done_s / images_done : (frac > 0 ? in_image / frac : 0.0);
        const double eta = std::max(0.0, per_image - in_image) + per_image * (pr.images - pr.image - 1);
        if (tty) {
            std::string label = pr.images > 1 ? str("image ", pr.image + 1, "/", pr.images, " (all: ETA ",
                                                    format_duration(eta), ")")
                                              : std::string("sampling");
            if (pr.passes > 1) label += pr.pass == 0 ? " (first pass)" : " (hires pass)";
            bar.update(label, pr.step, pr.total);
            return;
        }
        if (a.quiet) return;
        const int bucket = pr.total > 0 ? pr.step * 10 / pr.total : 10;
        if (bucket == last_logged && pr.step != 1) return;
        last_logged = bucket;
        std::fprintf(stderr, "image %d/%d step %d/%d elapsed %s ETA %s\n", pr.image + 1, pr.images, pr.step,
                     pr.total, format_duration(now).c_str(), format_duration(eta).c_str());
        std::fflush(stderr);
    };
    a.p.on_image = [&](const GeneratedImage& g) {  // saved as soon as it is decoded
        bar.finish();
        const std::string out = numbered(a.output, first_image + images_done);
        PngText text;
        if (!a.no_metadata) text.emplace_back("parameters", g.infotext);
        write_image(out, g.image, text);
        ++images_done;
        done_s = since_t1();
        last_logged = -1;
        if (!a.quiet) std::fprintf(stderr, "saved %s (seed %lld)\n", out.c_str(), (long long)g.seed);
    };
    const std::vector<GeneratedImage> images = generate(model, a.p);
    bar.finish();
    if (!a.quiet) std::fprintf(stderr, "generated %zu image(s) in %.2fs\n", images.size(), since_t1());
    if (const size_t over = packed_weights_over_budget_bytes(); over && !a.quiet)
        std::fprintf(stderr,
                     "note: %.0f MB of weights did not fit the memory budget for packed copies (%.0f MB kept) and were "
                     "packed on every use, read from the model file (NUANCE_PACKED_BUDGET_MB sets the budget)\n",
                     over / 1048576.0, packed_weights_bytes() / 1048576.0);
    report_ranks((double)images.size());
    return 0;
}

}  // namespace

Runner add_generate(CLI::App& app) {
    auto a = std::make_shared<GenerateArgs>();
    CLI::App* c = app.add_subcommand("generate", "Generate images (txt2img, or img2img with --init-img)");
    c->add_option("-m,--model", a->model,
                  "Checkpoint (.safetensors, .ckpt, .gguf), a UNet / transformer alone (with --clip-l [--clip-g] "
                  "or --clip-h, and --vae), or diffusers folder (default: the built-in nuance-emoji model)");
    c->add_option("--vae", a->vae, "VAE file: replaces the checkpoint's, or supplies it for a UNet / transformer alone");
    c->add_option("--clip-l", a->clip_l,
                  "CLIP-L text encoder file, for models that keep it apart (SD1 / SDXL UNet-only files, SD3, Flux)");
    c->add_option("--clip-g", a->clip_g,
                  "CLIP-G (OpenCLIP bigG) text encoder file, for models that keep it apart (SDXL UNet-only files, SD3)");
    c->add_option("--clip-h", a->clip_h,
                  "OpenCLIP ViT-H text encoder file, SD2's, for its UNet-only files (diffusers' text_encoder/ or "
                  "OpenCLIP's ViT-H-14 weights)");
    c->add_option("--t5xxl", a->t5xxl, "T5-XXL text encoder file, for models that keep it apart (SD3, Flux)");
    c->add_option("--family", a->family,
                  "Load as this model family instead of detecting it (see 'nuance info'; e.g. sd1, sdxl)");
    a->prompt_opt = c->add_option("-p,--prompt", a->p.prompt,
                                  "Prompt (A1111 syntax: (word:1.2), [word], BREAK); required unless --prompt-file");
    a->neg_opt = c->add_option("-n,--negative-prompt", a->p.negative_prompt, "Negative prompt");
    c->add_option("--prompt-file", a->prompt_file, "Read the prompt from a file");
    c->add_option("--negative-prompt-file", a->negative_prompt_file, "Read the negative prompt from a file");
    c->add_option("-o,--output", a->output, "Output image: .png (with the A1111 parameters) or .jpg/.jpeg (batches add _2, _3, ...)")->capture_default_str();
    a->width_opt = c->add_option("-W,--width", a->p.width, "Width in pixels (default: the model's native size)");
    a->height_opt = c->add_option("-H,--height", a->p.height, "Height in pixels (default: the model's native size)");
    a->steps_opt = c->add_option("--steps", a->p.steps, "Sampling steps (default: the model's)");
    a->cfg_opt = c->add_option("--cfg-scale", a->p.cfg_scale, "Guidance scale: classifier-free, or the distilled guidance of Flux-dev (default: the model's)");
    a->sampler_opt = c->add_option("--sampler,--sampling-method", a->p.sampler, "Sampler (see 'nuance samplers'; default: the model's)");
    c->add_option("--scheduler,--schedule", a->p.scheduler, "Sigma schedule: normal, karras, ...")->capture_default_str();
    c->add_option("--eta", a->p.eta, "Noise amount for ancestral samplers and DDIM (default: the sampler's)");
    c->add_option("--guidance-rescale", a->p.guidance_rescale,
                  "CFG rescale phi in [0, 1] (Lin et al. 2023; 0.7 for zero-SNR v models; 0 = off)");
    a->skip_layers_opt = c->add_option("--skip-layers", a->skip_layers,
                                       "Skip-layer guidance (SD3.5): transformer blocks left out of the extra "
                                       "conditional pass, e.g. 7,8,9 (default: 7,8,9 on SD3.5-Medium, else off; \"\" = off)");
    a->slg_scale_opt = c->add_option("--slg-scale", a->slg_scale,
                                     "Skip-layer guidance scale (default 2.8 where it is on; 0 = off)");
    c->add_option("--skip-layer-start", a->p.slg.start, "Skip-layer guidance from this fraction of the steps")
        ->capture_default_str();
    c->add_option("--skip-layer-end", a->p.slg.stop, "Skip-layer guidance until this fraction of the steps")
        ->capture_default_str();
    c->add_option("--sigmas", a->sigmas,
                  "Custom sigma schedule, e.g. \"14.6,7.0,3.5,1.2,0\" (N+1 values for N steps; replaces --scheduler)");
    c->add_option("-s,--seed", a->p.seed, "Seed in 0..2^63-1, or -1: random")->capture_default_str();
    c->add_option("-b,--batch-count", a->p.batch_count, "Number of images (seeds seed, seed+1, ...)")->capture_default_str();
    c->add_option("--clip-skip", a->p.clip_skip, "CLIP layers to skip (1 = last layer; 0 = model default)");
    c->add_option("--class-label", a->p.class_label,
                  "Class id for class-conditional models (DiT; an ImageNet class name goes in -p; -1: none)")->capture_default_str();
    c->add_option("--rng", a->rng, "Noise source: cuda (A1111 GPU noise) or cpu (torch CPU, ComfyUI)")->capture_default_str();
    c->add_option("--lora", a->loras,
                  "LoRA / LyCORIS file merged at FILE:weight (default 1; repeatable; a name from --lora-dir works too)");
    c->add_option("--lora-dir", a->lora_dir, "Folder of LoRAs for <lora:name:weight> in the prompt (A1111 syntax)");
    c->add_option("--embedding-dir,--embeddings-dir", a->embedding_dir,
                  "Folder of textual-inversion embeddings (.pt/.safetensors/.bin) used by file name in the prompts");
    c->add_option("-i,--init-img", a->init_img, "Init image for img2img (PNG/JPEG)");
    add_control_options(c, a->control);
    c->add_option("--strength", a->p.strength, "img2img denoising strength in (0, 1]")->capture_default_str();
    c->add_option("--taesd", a->taesd,
                  "Tiny autoencoder (TAESD/TAESDXL/TAESD3/TAEF1: madebyollin *_decoder file or diffusers "
                  "AutoencoderTiny folder): decodes the final images fast (lower quality) and the --preview images");
    c->add_flag("--taesd-preview-only", a->taesd_preview_only, "Use --taesd for --preview only; the VAE decodes the images");
    c->add_option("--preview", a->preview, "Write a live preview of the image being sampled to this PNG/JPEG");
    a->preview_every_opt =
        c->add_option("--preview-every", a->preview_every, "Steps between --preview updates")->capture_default_str();
    c->add_flag("--hr", a->p.hires.enabled,
                "Hires fix (A1111 enable_hr): sample at -W x -H, upscale, then an img2img pass at the larger size");
    a->hr_opts.push_back(c->add_option("--hr-scale", a->p.hires.scale, "Hires upscale factor (A1111 hr_scale)")
                             ->capture_default_str());
    a->hr_opts.push_back(c->add_option("--hr-resize", a->hr_resize,
                                       "Hires target WxH instead of --hr-scale (one side 0: from the aspect ratio)"));
    a->hr_opts.push_back(c->add_option("--hr-upscaler", a->p.hires.upscaler,
                                       "latent (bilinear, A1111 'Latent'), latent-nearest, latent-nearest-exact, "
                                       "lanczos (the decoded image), nearest, none")
                             ->capture_default_str());
    a->hr_opts.push_back(c->add_option("--hr-strength", a->p.hires.strength,
                                       "Denoising strength of the hires pass (A1111 denoising_strength)")
                             ->capture_default_str());
    a->hr_opts.push_back(c->add_option("--hr-steps", a->p.hires.steps, "Steps of the hires pass (0: the same as --steps)")
                             ->capture_default_str());
    c->add_option("--mask", a->mask,
                  "Inpainting mask (PNG/JPEG, any size: resized to the image): white = repaint; a PNG with "
                  "transparency: its opaque part is repainted");
    c->add_option("--mask-blur", a->p.inpaint.mask_blur, "Gaussian blur of the mask in pixels (A1111)")
        ->capture_default_str();
    c->add_flag("--invert-mask", a->p.inpaint.invert_mask, "Repaint where the mask is black");
    c->add_flag("--inpaint-full-res", a->p.inpaint.full_res,
                "\"Only masked\": inpaint the mask's box (+ padding) at the full working size and paste it back");
    c->add_option("--inpaint-padding", a->p.inpaint.full_res_padding, "Pixels around the mask's box (--inpaint-full-res)")
        ->capture_default_str();
    c->add_option("--inpaint-fill", a->inpaint_fill,
                  "What the masked area starts from: original | fill | latent-noise | latent-nothing (A1111 "
                  "inpainting_fill 1, 0, 2, 3)")
        ->capture_default_str();
    c->add_option("--outpaint", a->outpaint,
                  "Extend the image by left,right,top,bottom pixels (rounded up to multiples of 8) and paint the new "
                  "area");
    c->add_flag("--vae-tiling", a->p.vae_tiling.enabled,
                "VAE decode (and img2img encode) in overlapping tiles: bounded memory for large images");
    c->add_option("--vae-tile-size", a->p.vae_tiling.tile_px, "VAE tile side in pixels (with --vae-tiling)")
        ->capture_default_str();
    c->add_option("--vae-tile-overlap", a->p.vae_tiling.overlap_px,
                  "Overlap of VAE tiles in pixels, blended with linear ramps (with --vae-tiling)")
        ->capture_default_str();
    c->add_option("--prediction", a->prediction, "Override the model's prediction type: epsilon | v_prediction");
    c->add_option("--precision", a->precision, "Compute precision: auto (bf16 where the CPU has it) | bf16 | fp32")
        ->capture_default_str();
    c->add_option("--type", a->weight_type, kWeightTypeHelp);
    c->add_option("-t,--threads", a->threads, "CPU threads: 1..max(256, 4 x cores) (default 0: all cores)");
    c->add_flag("--disable-image-metadata", a->no_metadata, "Do not write the A1111 'parameters' PNG chunk");
    c->add_flag("-q,--quiet", a->quiet, "No progress output");
    c->add_flag("-v,--verbose", a->verbose, "Verbose log");
    return [a] { return run(*a); };
}

}  // namespace nuance::cli
