// The C API (include/nuance.h): the only place exceptions become status codes (design.md §3). Every exported
// function catches everything; failures set a thread-local message.
#include "nuance.h"

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <new>
#include <shared_mutex>
#include <unordered_set>

#include "adapters/lora_library.h"
#include "text/embedding_library.h"

#include "backends/backend.h"
#include "backends/cpu/dnnl_context.h"
#include "core/threads.h"
#include "io/image.h"
#include "io/weights.h"
#include "models/default_model.h"
#include "models/model_defaults.h"
#include "models/model_family.h"
#include "pipelines/generate.h"
#include "pipelines/generate_defaults.h"
#include "samplers/registry.h"
#include "server/preview.h"

using namespace nuance;

struct nuance_model {
    std::shared_ptr<const DiffusionModel> m;
    std::string family;  // what nuance_model_family returns (stable storage)
    // Generations share the weights: one with LoRAs merges into them and holds this exclusively until it has
    // restored them; the others hold it shared.
    std::shared_ptr<std::shared_mutex> weights = std::make_shared<std::shared_mutex>();
};

struct nuance_context {
    std::shared_ptr<const DiffusionModel> m;
    std::shared_ptr<std::shared_mutex> weights;  // the model's
    int n_threads = 0;
    int preview_interval = 0;
    nuance_progress_fn progress = nullptr;
    void* progress_user = nullptr;
    nuance_preview_fn preview = nullptr;
    void* preview_user = nullptr;
    nuance_log_fn log = nullptr;
    void* log_user = nullptr;
    nuance_log_level log_level = NUANCE_LOG_INFO;
    std::atomic<bool> cancel{false};
    std::atomic<bool> busy{false};
};

namespace {

thread_local std::string t_last_error;

nuance_status set_error(nuance_status s, const std::string& msg);

// Live handles. A pointer that nuance_*_create/load did not return, or that was already freed, is not in the set:
// calls with it fail with NUANCE_ERR_INVALID_ARGUMENT instead of touching freed memory (a double free is reported,
// not repeated). The lock is held only to look up, insert and erase, and while a lookup's short action runs
// (cancel, callbacks), so a concurrent free waits for it.
struct HandleRegistry {
    std::mutex mu;
    std::unordered_set<const void*> models, contexts;
};
HandleRegistry& registry() {
    static HandleRegistry* r = new HandleRegistry();  // never destroyed: handles may be freed during exit
    return *r;
}
bool live_model(const nuance_model* m) { return m && registry().models.count(m) > 0; }
bool live_context(const nuance_context* c) { return c && registry().contexts.count(c) > 0; }

// Runs f(ctx) under the registry lock when ctx is live; else records the error (the setters return void).
template <class F>
void with_live_context(nuance_context* ctx, const char* fn, F&& f) {
    if (!ctx) return;
    std::lock_guard<std::mutex> lock(registry().mu);
    if (!live_context(ctx)) {
        set_error(NUANCE_ERR_INVALID_ARGUMENT, str(fn, ": not a live context handle (freed already, or never ",
                                                   "returned by nuance_context_create)"));
        return;
    }
    f(ctx);
}

nuance_status status_for(ErrorCode c) {
    switch (c) {
        case ErrorCode::InvalidArgument: return NUANCE_ERR_INVALID_ARGUMENT;
        case ErrorCode::NotFound: return NUANCE_ERR_NOT_FOUND;
        case ErrorCode::Unsupported: return NUANCE_ERR_UNSUPPORTED;
        case ErrorCode::Io: return NUANCE_ERR_IO;
        case ErrorCode::OutOfMemory: return NUANCE_ERR_OUT_OF_MEMORY;
        case ErrorCode::Cancelled: return NUANCE_ERR_CANCELLED;
        case ErrorCode::Internal: return NUANCE_ERR_INTERNAL;
    }
    return NUANCE_ERR_INTERNAL;
}

nuance_status set_error(nuance_status s, const std::string& msg) {
    try {
        t_last_error = msg;
    } catch (...) {  // out of memory while reporting: keep the old message
    }
    return s;
}

template <class F>
nuance_status guard(F&& f) {
    try {
        f();
        return NUANCE_OK;
    } catch (const Error& e) {
        return set_error(status_for(e.code()), e.what());
    } catch (const std::bad_alloc&) {
        return set_error(NUANCE_ERR_OUT_OF_MEMORY, "out of memory");
    } catch (const std::exception& e) {
        return set_error(NUANCE_ERR_INTERNAL, std::string("internal error: ") + e.what());
    } catch (...) {
        return set_error(NUANCE_ERR_INTERNAL, "internal error: unknown exception");
    }
}

Logger make_logger(nuance_log_fn fn, void* user, nuance_log_level level) {
    if (!fn) return Logger([](LogLevel, const std::string&) {}, LogLevel::Error);
    return Logger([fn, user](LogLevel l, const std::string& msg) { fn((nuance_log_level)l, msg.c_str(), user); },
                  (LogLevel)level);
}

char* dup_cstr(const std::string& s) {
    char* p = static_cast<char*>(std::malloc(s.size() + 1));
    if (!p) throw std::bad_alloc();
    std::memcpy(p, s.c_str(), s.size() + 1);
    return p;
}

Image to_image(const nuance_image* in, const char* what) {
    NUANCE_CHECK(in->data != nullptr, what, ": data is NULL");
    NUANCE_CHECK(in->width > 0 && in->height > 0 && in->width <= 65535 && in->height <= 65535, what, ": size ",
                 in->width, "x", in->height, " is not valid");
    NUANCE_CHECK(in->channels == 1 || in->channels == 3 || in->channels == 4, what, ": channels must be 1, 3 or 4, got ",
                 in->channels);
    Image img;
    img.width = in->width;
    img.height = in->height;
    img.channels = in->channels;
    const size_t n = (size_t)in->width * in->height * in->channels;
    img.pixels.assign(in->data, in->data + n);
    return img;
}

// Fills `out` (whose fields must be zero) from an Image; frees nothing on failure (the caller does).
void fill_image(nuance_image& out, const Image& img, int64_t seed, const std::string* infotext) {
    out.width = img.width;
    out.height = img.height;
    out.channels = img.channels;
    out.seed = seed;
    out.data = static_cast<uint8_t*>(std::malloc(img.pixels.size() ? img.pixels.size() : 1));
    if (!out.data) throw std::bad_alloc();
    std::memcpy(out.data, img.pixels.data(), img.pixels.size());
    if (infotext) out.infotext = dup_cstr(*infotext);
}

int default_side(const DiffusionModel& m) { return generation_defaults(m).width; }

}  // namespace

extern "C" {

const char* nuance_version(void) { return "0.1.0"; }

const char* nuance_status_name(nuance_status s) {
    switch (s) {
        case NUANCE_OK: return "NUANCE_OK";
        case NUANCE_ERR_INVALID_ARGUMENT: return "NUANCE_ERR_INVALID_ARGUMENT";
        case NUANCE_ERR_NOT_FOUND: return "NUANCE_ERR_NOT_FOUND";
        case NUANCE_ERR_UNSUPPORTED: return "NUANCE_ERR_UNSUPPORTED";
        case NUANCE_ERR_IO: return "NUANCE_ERR_IO";
        case NUANCE_ERR_OUT_OF_MEMORY: return "NUANCE_ERR_OUT_OF_MEMORY";
        case NUANCE_ERR_CANCELLED: return "NUANCE_ERR_CANCELLED";
        case NUANCE_ERR_BUSY: return "NUANCE_ERR_BUSY";
        case NUANCE_ERR_INTERNAL: return "NUANCE_ERR_INTERNAL";
    }
    return "NUANCE_ERR_UNKNOWN";
}

const char* nuance_last_error(void) { return t_last_error.c_str(); }

void nuance_set_num_threads(int n) {
    try {
        if (n > max_threads()) {  // refused, not clamped; the count in use stays
            set_error(NUANCE_ERR_INVALID_ARGUMENT, str("nuance_set_num_threads: n must be at most ", max_threads(),
                                                       " (nuance_max_threads()), got ", n, "; ignored"));
            return;
        }
        cpu::set_num_threads(n);
    } catch (...) {
    }
}

int nuance_max_threads(void) { return max_threads(); }

int nuance_sampler_count(void) {
    try {
        return (int)list_samplers().size();
    } catch (...) {
        return 0;
    }
}

const char* nuance_sampler_name(int index) {
    try {
        const auto& l = list_samplers();
        return index >= 0 && (size_t)index < l.size() ? l[(size_t)index].name.c_str() : nullptr;
    } catch (...) {
        return nullptr;
    }
}

const char* nuance_sampler_display_name(int index) {
    try {
        const auto& l = list_samplers();
        return index >= 0 && (size_t)index < l.size() ? l[(size_t)index].display_name.c_str() : nullptr;
    } catch (...) {
        return nullptr;
    }
}

void nuance_model_params_init(nuance_model_params* p) {
    if (!p) return;
    std::memset(p, 0, sizeof *p);
    p->log_level = NUANCE_LOG_INFO;
}

nuance_status nuance_model_load(const char* path, const nuance_model_params* params, nuance_model** out) {
    if (out) *out = nullptr;
    return guard([&] {
        NUANCE_CHECK(out != nullptr, "nuance_model_load: out is NULL");
        std::string builtin;
        if (path == nullptr || !*path) {  // the built-in model
            builtin = default_model_path();
            NUANCE_CHECK_CODE(!builtin.empty(), NotFound, "nuance_model_load: path is NULL or empty and the built-in ",
                              "model (models/", kDefaultModelName, ") was not found (set NUANCE_DEFAULT_MODEL)");
            path = builtin.c_str();
        }
        nuance_model_params defaults;
        nuance_model_params_init(&defaults);
        const nuance_model_params& mp = params ? *params : defaults;
        const Logger log = make_logger(mp.log, mp.log_user, mp.log_level);
        ModelLoadOptions lo;
        if (mp.vae_path) lo.vae_path = mp.vae_path;
        if (mp.prediction) lo.prediction = mp.prediction;
        lo.precision = mp.precision ? parse_precision(mp.precision) : Precision::Auto;
        lo.logger = &log;
        if (mp.clip_l_path) lo.clip_l = mp.clip_l_path;
        if (mp.clip_g_path) lo.clip_g = mp.clip_g_path;
        if (mp.clip_h_path) lo.clip_h = mp.clip_h_path;
        if (mp.t5xxl_path) lo.t5xxl = mp.t5xxl_path;
        if (mp.family) lo.family = mp.family;
        if (mp.weight_type) lo.weight_type = mp.weight_type;
        std::shared_ptr<const DiffusionModel> m = load_model(path, lo);
        auto h = std::make_unique<nuance_model>();
        h->family = m->family_name();
        h->m = std::move(m);
        std::lock_guard<std::mutex> lock(registry().mu);
        registry().models.insert(h.get());
        *out = h.release();
    });
}

void nuance_model_free(nuance_model* model) {
    if (!model) return;
    {
        std::lock_guard<std::mutex> lock(registry().mu);
        if (registry().models.erase(model) == 0) {
            set_error(NUANCE_ERR_INVALID_ARGUMENT,
                      "nuance_model_free: not a live model handle (freed already, or never returned by nuance_model_load)");
            return;
        }
    }
    delete model;
    nuance::prune_packed_weights();  // the model's packed weight copies go with it (else at the next packing)
}

const char* nuance_model_family(const nuance_model* model) {
    std::lock_guard<std::mutex> lock(registry().mu);
    if (!live_model(model) || !model->m) return "";
    return model->family.c_str();
}

int nuance_model_default_size(const nuance_model* model) {
    std::lock_guard<std::mutex> lock(registry().mu);
    return live_model(model) && model->m ? default_side(*model->m) : 0;
}

void nuance_context_params_init(nuance_context_params* p) {
    if (!p) return;
    std::memset(p, 0, sizeof *p);
}

nuance_status nuance_context_create(nuance_model* model, const nuance_context_params* params, nuance_context** out) {
    if (out) *out = nullptr;
    return guard([&] {
        NUANCE_CHECK(model != nullptr, "nuance_context_create: model is NULL");
        NUANCE_CHECK(out != nullptr, "nuance_context_create: out is NULL");
        auto c = std::make_unique<nuance_context>();
        {
            std::lock_guard<std::mutex> lock(registry().mu);
            NUANCE_CHECK(live_model(model) && model->m, "nuance_context_create: model is not a live model handle ",
                         "(freed already, or never returned by nuance_model_load)");
            c->m = model->m;
            c->weights = model->weights;
        }
        if (params) {
            check_thread_count(params->n_threads, "nuance_context_create: n_threads");
            NUANCE_CHECK(params->preview_interval >= 0, "nuance_context_create: preview_interval must be >= 0, got ",
                         params->preview_interval);
            c->n_threads = params->n_threads;
            c->preview_interval = params->preview_interval;
        }
        std::lock_guard<std::mutex> lock(registry().mu);
        registry().contexts.insert(c.get());
        *out = c.release();
    });
}

void nuance_context_free(nuance_context* ctx) {
    if (!ctx) return;
    {
        std::lock_guard<std::mutex> lock(registry().mu);
        if (!live_context(ctx)) {
            set_error(NUANCE_ERR_INVALID_ARGUMENT, "nuance_context_free: not a live context handle (freed already, "
                                                   "or never returned by nuance_context_create)");
            return;
        }
        if (ctx->busy.load()) {  // freeing under a running generation would pull the memory from under it
            set_error(NUANCE_ERR_BUSY, "nuance_context_free: the context is generating; not freed (cancel it and "
                                       "free it after nuance_generate returns)");
            return;
        }
        registry().contexts.erase(ctx);
    }
    delete ctx;
}


void nuance_context_set_progress_callback(nuance_context* ctx, nuance_progress_fn fn, void* user) {
    with_live_context(ctx, "nuance_context_set_progress_callback", [&](nuance_context* c) {
        c->progress = fn;
        c->progress_user = user;
    });
}

void nuance_context_set_preview_callback(nuance_context* ctx, nuance_preview_fn fn, void* user) {
    with_live_context(ctx, "nuance_context_set_preview_callback", [&](nuance_context* c) {
        c->preview = fn;
        c->preview_user = user;
    });
}

void nuance_context_set_log_callback(nuance_context* ctx, nuance_log_fn fn, void* user, nuance_log_level level) {
    with_live_context(ctx, "nuance_context_set_log_callback", [&](nuance_context* c) {
        c->log = fn;
        c->log_user = user;
        c->log_level = level;
    });
}

void nuance_context_cancel(nuance_context* ctx) {
    with_live_context(ctx, "nuance_context_cancel", [](nuance_context* c) { c->cancel.store(true); });
}

void nuance_generate_params_init(nuance_generate_params* p) {
    if (!p) return;
    std::memset(p, 0, sizeof *p);
    const GenerateParams d;
    // Size, steps, CFG and sampler: 0 / -1 / NULL = the model's (models/model_defaults.h): a 32x32 model is not
    // asked for 512x512.
    p->width = p->height = 0;
    p->steps = 0;
    p->cfg_scale = -1.0f;
    p->sampler = nullptr;
    p->scheduler = nullptr;
    p->eta = -1.0f;
    p->seed = d.seed;
    p->batch_count = 1;
    p->rng = "cuda";
    p->strength = d.strength;
    p->vae_tiling = d.vae_tiling.enabled ? 1 : 0;
    p->vae_tile_size = (int)d.vae_tiling.tile_px;
    p->vae_tile_overlap = (int)d.vae_tiling.overlap_px;
}

nuance_status nuance_generate(nuance_context* ctx, const nuance_generate_params* params, nuance_image** out_images,
                              int* out_count) {
    if (out_images) *out_images = nullptr;
    if (out_count) *out_count = 0;
    if (!ctx) return set_error(NUANCE_ERR_INVALID_ARGUMENT, "nuance_generate: ctx is NULL");
    {
        // busy is taken under the lock: nuance_context_free then refuses to free the context until we are done.
        std::lock_guard<std::mutex> lock(registry().mu);
        if (!live_context(ctx))
            return set_error(NUANCE_ERR_INVALID_ARGUMENT, "nuance_generate: ctx is not a live context handle (freed "
                                                          "already, or never returned by nuance_context_create)");
        if (ctx->busy.exchange(true))
            return set_error(NUANCE_ERR_BUSY, "nuance_generate: this context is already generating on another thread");
    }
    struct Release {
        nuance_context* c;
        ~Release() { c->busy.store(false); }
    } release{ctx};
    ctx->cancel.store(false);
    nuance_image* images = nullptr;
    int count = 0, allocated = 0;
    const nuance_status st = guard([&] {
        NUANCE_CHECK(params != nullptr, "nuance_generate: params is NULL");
        NUANCE_CHECK(out_images != nullptr && out_count != nullptr, "nuance_generate: out_images/out_count is NULL");
        const DiffusionModel& m = *ctx->m;
        const Logger log = make_logger(ctx->log, ctx->log_user, ctx->log_level);
        GenerateParams p;
        p.prompt = params->prompt ? params->prompt : "";
        p.negative_prompt = params->negative_prompt ? params->negative_prompt : "";
        NUANCE_CHECK(params->width >= 0 && params->height >= 0, "size ", params->width, "x", params->height,
                     " is negative");
        p.width = params->width;
        p.height = params->height;
        p.steps = params->steps;
        p.cfg_scale = params->cfg_scale;
        p.sampler = params->sampler ? params->sampler : "";
        p.scheduler = params->scheduler ? params->scheduler : "";
        NUANCE_CHECK(p.steps >= 0, "steps ", p.steps, " is negative (0 = the model's default)");
        p.eta = params->eta;
        p.seed = params->seed >= 0 ? params->seed
                                   : (int64_t)(std::chrono::steady_clock::now().time_since_epoch().count() & 0xffffffff);
        p.batch_count = params->batch_count;
        p.clip_skip = params->clip_skip;
        p.rng = parse_rng_kind(params->rng ? params->rng : "cuda");
        if (params->init_image) {
            p.init_image = to_image(params->init_image, "init_image");
            p.strength = params->strength;
        }
        p.vae_tiling.enabled = params->vae_tiling != 0;
        p.vae_tiling.tile_px = params->vae_tile_size;
        p.vae_tiling.overlap_px = params->vae_tile_overlap;
        // LoRAs (the params' files, then the prompt's tags) and textual inversions.
        NUANCE_CHECK(params->lora_count >= 0 && params->lora_count <= 64, "lora_count ", params->lora_count,
                     " is outside 0..64");
        NUANCE_CHECK(params->lora_count == 0 || params->loras != nullptr, "lora_count is ", params->lora_count,
                     " but loras is NULL");
        std::vector<LoraUse> loras;
        for (int i = 0; i < params->lora_count; ++i) {
            const nuance_lora& l = params->loras[i];
            NUANCE_CHECK(l.path && *l.path, "loras[", i, "].path is NULL or empty");
            NUANCE_CHECK(std::isfinite(l.weight) && std::fabs(l.weight) <= 100.0f, "loras[", i, "].weight ", l.weight,
                         " is not a number in [-100, 100]");
            require_regular_file(l.path, "LoRA file");
            loras.push_back({l.path, stem(l.path), l.weight, l.weight});
        }
        {
            const auto tags = parse_lora_tags(p.prompt);
            LoraLibrary lib;
            if (!tags.empty() && params->lora_dir) lib = LoraLibrary::scan(params->lora_dir);
            const auto uses = resolve_lora_tags(tags, params->lora_dir ? &lib : nullptr);
            loras.insert(loras.end(), uses.begin(), uses.end());
            NUANCE_CHECK(loras.size() <= 64, loras.size(), " LoRAs in all; at most 64");
        }
        if (params->embedding_dir) p.embeddings = EmbeddingLibrary::scan(params->embedding_dir);
        apply_generation_defaults(p, generation_defaults(m));
        validate_params(m, p);
        // Exclusive while LoRAs are merged into the shared weights; shared otherwise.
        std::unique_lock<std::shared_mutex> exclusive(*ctx->weights, std::defer_lock);
        std::shared_lock<std::shared_mutex> shared(*ctx->weights, std::defer_lock);
        LoraMerge merge;
        struct Restore {
            LoraMerge& m;
            ~Restore() { m.restore(); }
        } restore{merge};  // declared after the locks: restored before they are released
        if (!loras.empty()) {
            exclusive.lock();
            std::vector<std::string> warnings;
            p.extra_infotext = lora_hashes_infotext(
                apply_loras(const_cast<DiffusionModel&>(m), loras, merge, &warnings));
            for (const auto& w : warnings) log.warn(w);
        } else {
            shared.lock();
        }
        if (ctx->n_threads > 0) cpu::set_num_threads(ctx->n_threads);
        p.cancelled = [ctx] { return ctx->cancel.load(std::memory_order_relaxed); };
        const int every = ctx->preview_interval > 0 ? ctx->preview_interval : 1;
        const LatentFormat latents = m.latent_format();
        p.on_progress = [&](const GenerateProgress& pr) {
            if (ctx->progress) ctx->progress(pr.step, pr.total, pr.image, pr.images, pr.elapsed_s, ctx->progress_user);
            if (ctx->preview && pr.latents && (pr.step % every == 0 || pr.step == pr.total)) {
                const Image im = server::progress_preview(*pr.latents, pr.sigma, server::progress_denoised(pr), latents);
                if (im.width > 0) {
                    nuance_image v{};
                    v.width = im.width;
                    v.height = im.height;
                    v.channels = im.channels;
                    v.data = const_cast<uint8_t*>(im.pixels.data());
                    ctx->preview(&v, pr.step, pr.total, ctx->preview_user);
                }
            }
        };
        log.info("generating ", p.batch_count, " image(s) ", p.width, "x", p.height, ", ", p.steps, " steps, sampler ",
                 p.sampler, ", seed ", p.seed);
        const std::vector<GeneratedImage> gen = generate(m, p);
        images = static_cast<nuance_image*>(std::calloc(gen.size() ? gen.size() : 1, sizeof(nuance_image)));
        if (!images) throw std::bad_alloc();
        allocated = (int)(gen.size() ? gen.size() : 1);
        for (const auto& g : gen) {
            fill_image(images[count], g.image, g.seed, &g.infotext);
            ++count;
        }
        log.info("generated ", count, " image(s)");
    });
    if (st != NUANCE_OK) {
        nuance_images_free(images, allocated);  // calloc'd: entries not filled are all zero
        if (ctx->log) ctx->log(NUANCE_LOG_ERROR, nuance_last_error(), ctx->log_user);
        return st;
    }
    *out_images = images;
    *out_count = count;
    return NUANCE_OK;
}

void nuance_images_free(nuance_image* images, int count) {
    if (!images) return;
    for (int i = 0; i < count; ++i) {
        std::free(images[i].data);
        std::free(images[i].infotext);
    }
    std::free(images);
}

nuance_status nuance_image_encode_png(const nuance_image* image, uint8_t** out, size_t* out_size) {
    if (out) *out = nullptr;
    if (out_size) *out_size = 0;
    return guard([&] {
        NUANCE_CHECK(image != nullptr && out != nullptr && out_size != nullptr, "nuance_image_encode_png: NULL argument");
        const Image img = to_image(image, "image");
        PngText text;
        if (image->infotext) text.emplace_back("parameters", image->infotext);
        const std::vector<uint8_t> png = encode_png(img, text);
        uint8_t* buf = static_cast<uint8_t*>(std::malloc(png.size()));
        if (!buf) throw std::bad_alloc();
        std::memcpy(buf, png.data(), png.size());
        *out = buf;
        *out_size = png.size();
    });
}

nuance_status nuance_image_write_png(const nuance_image* image, const char* path) {
    return guard([&] {
        NUANCE_CHECK(image != nullptr && path != nullptr && *path, "nuance_image_write_png: NULL argument");
        const Image img = to_image(image, "image");
        PngText text;
        if (image->infotext) text.emplace_back("parameters", image->infotext);
        write_png(path, img, text);  // encoded in memory, written atomically: a failed write keeps the old file
    });
}

nuance_status nuance_image_read(const char* path, nuance_image** out) {
    if (out) *out = nullptr;
    nuance_image* img = nullptr;
    const nuance_status st = guard([&] {
        NUANCE_CHECK(path != nullptr && *path && out != nullptr, "nuance_image_read: NULL argument");
        const Image im = read_image(path, kMaxInputImagePixels);
        img = static_cast<nuance_image*>(std::calloc(1, sizeof(nuance_image)));
        if (!img) throw std::bad_alloc();
        fill_image(*img, im, 0, nullptr);
    });
    if (st != NUANCE_OK) {
        nuance_images_free(img, img ? 1 : 0);
        return st;
    }
    *out = img;
    return NUANCE_OK;
}

void nuance_free(void* p) { std::free(p); }

}  // extern "C"
