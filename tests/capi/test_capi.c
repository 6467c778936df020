/* Tests of the C API, in C99, linking only the C API (nuance_c). Usage: nuance_capi_test TINY_MODEL.safetensors
 * (a tiny random SD1.5 checkpoint: `nuance make-random --family sd15 --tiny -o FILE`). Exit 0 when every check
 * passes; prints each failure with its line. */
#define _POSIX_C_SOURCE 200809L
#include <nuance.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int g_checks = 0, g_failures = 0;

#define CHECK(cond)                                                                      \
    do {                                                                                 \
        ++g_checks;                                                                      \
        if (!(cond)) {                                                                   \
            ++g_failures;                                                                \
            fprintf(stderr, "FAIL %s:%d: %s (last error: %s)\n", __FILE__, __LINE__, #cond, \
                    nuance_last_error());                                                \
        }                                                                                \
    } while (0)

static const char* g_model_path;
/* One CPU thread per context: the tests run beside others on small CI machines. */
static nuance_context_params g_ctx_params;
static nuance_model* g_model;

static int contains(const uint8_t* hay, size_t n, const char* needle) {
    const size_t k = strlen(needle);
    for (size_t i = 0; i + k <= n; ++i)
        if (memcmp(hay + i, needle, k) == 0) return 1;
    return 0;
}

static void tiny_params(nuance_generate_params* p, long long seed) {
    nuance_generate_params_init(p);
    p->prompt = "a red apple";
    p->negative_prompt = "blurry";
    p->width = 64;
    p->height = 64;
    p->steps = 2;
    p->seed = seed;
}

/* ---- library basics and error reporting ---- */
static void test_basics(void) {
    CHECK(strcmp(nuance_version(), "0.1.0") == 0);
    CHECK(strcmp(nuance_status_name(NUANCE_ERR_NOT_FOUND), "NUANCE_ERR_NOT_FOUND") == 0);
    CHECK(strcmp(nuance_status_name(NUANCE_OK), "NUANCE_OK") == 0);
    CHECK(nuance_sampler_count() >= 8);
    int has_euler_a = 0;
    for (int i = 0; i < nuance_sampler_count(); ++i) {
        CHECK(nuance_sampler_name(i) != NULL && nuance_sampler_display_name(i) != NULL);
        if (nuance_sampler_name(i) && strcmp(nuance_sampler_name(i), "euler_a") == 0) {
            has_euler_a = 1;
            CHECK(strcmp(nuance_sampler_display_name(i), "Euler a") == 0);
        }
    }
    CHECK(has_euler_a);
    CHECK(nuance_sampler_name(-1) == NULL && nuance_sampler_name(100000) == NULL);

    nuance_generate_params gp;
    memset(&gp, 0x7f, sizeof gp);
    nuance_generate_params_init(&gp);
    /* size, steps, CFG and sampler: 0 / -1 / NULL = the model's defaults */
    CHECK(gp.steps == 0 && gp.cfg_scale < 0 && gp.batch_count == 1 && gp.width == 0 && gp.height == 0);
    CHECK(gp.prompt == NULL && gp.init_image == NULL && gp.eta < 0 && gp.sampler == NULL);
    CHECK(gp.strength > 0.74f && gp.strength < 0.76f);
    CHECK(gp.vae_tiling == 0 && gp.vae_tile_size == 512 && gp.vae_tile_overlap == 64);
    CHECK(gp.loras == NULL && gp.lora_count == 0 && gp.lora_dir == NULL && gp.embedding_dir == NULL);
    nuance_context_params cp;
    memset(&cp, 0x7f, sizeof cp);
    nuance_context_params_init(&cp);
    CHECK(cp.n_threads == 0 && cp.preview_interval == 0);
}

static void test_load_errors(void) {
    nuance_model* m = (nuance_model*)&m; /* must be reset to NULL on failure */
    /* NULL path: the built-in model; with NUANCE_DEFAULT_MODEL pointing nowhere, a NOT_FOUND naming it. */
    setenv("NUANCE_DEFAULT_MODEL", "/nonexistent/builtin", 1);
    CHECK(nuance_model_load(NULL, NULL, &m) == NUANCE_ERR_NOT_FOUND);
    unsetenv("NUANCE_DEFAULT_MODEL");
    CHECK(m == NULL);
    CHECK(strstr(nuance_last_error(), "built-in") != NULL);
    CHECK(nuance_model_load("/nonexistent/dir/model.safetensors", NULL, &m) == NUANCE_ERR_NOT_FOUND);
    CHECK(strstr(nuance_last_error(), "/nonexistent/dir/model.safetensors") != NULL);
    CHECK(m == NULL);
    /* A file that is not a checkpoint: an error with a message, never a crash. */
    const char* junk = "nuance_capi_junk.safetensors";
    FILE* f = fopen(junk, "wb");
    CHECK(f != NULL);
    if (f) {
        fputs("\x10\x00\x00\x00\x00\x00\x00\x00{\"a\":1}garbage", f);
        fclose(f);
        const nuance_status s = nuance_model_load(junk, NULL, &m);
        CHECK(s != NUANCE_OK && m == NULL);
        CHECK(strlen(nuance_last_error()) > 0);
        remove(junk);
    }
    CHECK(nuance_model_load(g_model_path, NULL, NULL) == NUANCE_ERR_INVALID_ARGUMENT);
    {
        /* weight_type: a quantization recipe, anything else refused before the file is read. */
        nuance_model_params mp;
        nuance_model_params_init(&mp);
        CHECK(mp.weight_type == NULL);
        mp.weight_type = "q3";
        m = (nuance_model*)&m;
        CHECK(nuance_model_load(g_model_path, &mp, &m) == NUANCE_ERR_INVALID_ARGUMENT && m == NULL);
        CHECK(strstr(nuance_last_error(), "'q3' is not a quantized type") != NULL);
        mp.weight_type = "q8_0";
        CHECK(nuance_model_load(g_model_path, &mp, &m) == NUANCE_OK && m != NULL);
        nuance_model_free(m);
        m = NULL;
    }
    nuance_context* c = (nuance_context*)&c;
    CHECK(nuance_context_create(NULL, NULL, &c) == NUANCE_ERR_INVALID_ARGUMENT && c == NULL);
    nuance_model_free(NULL);
    nuance_context_free(NULL);
    nuance_images_free(NULL, 3);
}

/* ---- callbacks with user pointers ---- */
struct counters {
    int progress_calls, last_step, last_total, preview_calls, preview_ok, log_calls;
    int cancel_at_step;
    nuance_context* ctx;
};

static void on_progress(int step, int total, int image, int images, double elapsed_s, void* user) {
    struct counters* c = (struct counters*)user;
    c->progress_calls++;
    c->last_step = step;
    c->last_total = total;
    (void)image;
    (void)images;
    (void)elapsed_s;
    if (c->cancel_at_step > 0 && step >= c->cancel_at_step) nuance_context_cancel(c->ctx);
}

static void on_preview(const nuance_image* p, int step, int total, void* user) {
    struct counters* c = (struct counters*)user;
    c->preview_calls++;
    if (p && p->data && p->width > 0 && p->height > 0 && p->channels == 3 && step >= 1 && step <= total) c->preview_ok++;
}

static void on_log(nuance_log_level level, const char* msg, void* user) {
    struct counters* c = (struct counters*)user;
    (void)level;
    if (msg && *msg) c->log_calls++;
}

static int same_pixels(const nuance_image* a, const nuance_image* b) {
    return a->width == b->width && a->height == b->height && a->channels == b->channels &&
           memcmp(a->data, b->data, (size_t)a->width * a->height * a->channels) == 0;
}

static void test_generate(void) {
    nuance_context* ctx = NULL;
    CHECK(nuance_context_create(g_model, &g_ctx_params, &ctx) == NUANCE_OK && ctx != NULL);
    if (!ctx) return;
    struct counters cnt;
    memset(&cnt, 0, sizeof cnt);
    cnt.ctx = ctx;
    nuance_context_set_progress_callback(ctx, on_progress, &cnt);
    nuance_context_set_preview_callback(ctx, on_preview, &cnt);
    nuance_context_set_log_callback(ctx, on_log, &cnt, NUANCE_LOG_INFO);

    nuance_generate_params gp;
    tiny_params(&gp, 1234);
    nuance_image* a = NULL;
    int na = 0;
    CHECK(nuance_generate(ctx, &gp, &a, &na) == NUANCE_OK);
    CHECK(na == 1 && a != NULL);
    if (na == 1 && a) {
        CHECK(a[0].width == 64 && a[0].height == 64 && a[0].channels == 3 && a[0].data != NULL);
        CHECK(a[0].seed == 1234);
        CHECK(a[0].infotext && strstr(a[0].infotext, "Steps: 2") && strstr(a[0].infotext, "Seed: 1234"));
        CHECK(a[0].infotext && strstr(a[0].infotext, "Negative prompt: blurry"));
    }
    CHECK(cnt.progress_calls == 2 && cnt.last_step == 2 && cnt.last_total == 2);
    CHECK(cnt.preview_calls == 2 && cnt.preview_ok == 2);
    CHECK(cnt.log_calls >= 1);

    /* The same context again, same seed: identical pixels (contexts are reusable). */
    nuance_image* b = NULL;
    int nb = 0;
    CHECK(nuance_generate(ctx, &gp, &b, &nb) == NUANCE_OK && nb == 1);
    if (na == 1 && nb == 1) CHECK(same_pixels(&a[0], &b[0]));
    nuance_images_free(b, nb);

    /* Batch: seeds s, s+1. */
    gp.batch_count = 2;
    CHECK(nuance_generate(ctx, &gp, &b, &nb) == NUANCE_OK && nb == 2);
    if (nb == 2) {
        CHECK(b[0].seed == 1234 && b[1].seed == 1235);
        if (na == 1) CHECK(same_pixels(&a[0], &b[0]) && !same_pixels(&b[0], &b[1]));
    }
    nuance_images_free(b, nb);
    gp.batch_count = 1;

    /* Bad parameters: a status and a message naming the problem; the context stays usable. */
    gp.sampler = "no_such_sampler";
    b = (nuance_image*)&b;
    nb = 5;
    CHECK(nuance_generate(ctx, &gp, &b, &nb) == NUANCE_ERR_INVALID_ARGUMENT);
    CHECK(b == NULL && nb == 0);
    CHECK(strstr(nuance_last_error(), "no_such_sampler") != NULL);
    gp.sampler = "Euler a"; /* A1111 spelling */
    gp.width = 65;
    CHECK(nuance_generate(ctx, &gp, &b, &nb) == NUANCE_ERR_INVALID_ARGUMENT);
    CHECK(strstr(nuance_last_error(), "65") != NULL);
    gp.width = 64;
    gp.steps = -1; /* 0 = the model's default */
    CHECK(nuance_generate(ctx, &gp, &b, &nb) == NUANCE_ERR_INVALID_ARGUMENT);
    CHECK(strstr(nuance_last_error(), "steps") != NULL);
    gp.steps = 2;
    gp.rng = "quantum";
    CHECK(nuance_generate(ctx, &gp, &b, &nb) == NUANCE_ERR_INVALID_ARGUMENT);
    gp.rng = "cpu";
    CHECK(nuance_generate(ctx, NULL, &b, &nb) == NUANCE_ERR_INVALID_ARGUMENT);
    CHECK(nuance_generate(NULL, &gp, &b, &nb) == NUANCE_ERR_INVALID_ARGUMENT);
    CHECK(nuance_generate(ctx, &gp, NULL, NULL) == NUANCE_ERR_INVALID_ARGUMENT);
    CHECK(nuance_generate(ctx, &gp, &b, &nb) == NUANCE_OK && nb == 1);
    if (nb == 1) CHECK(b[0].infotext && strstr(b[0].infotext, "Sampler: Euler a") && strstr(b[0].infotext, "RNG: CPU"));
    nuance_images_free(b, nb);
    gp.rng = "cuda";

    /* Cancel from the progress callback: CANCELLED after the first step; the next call runs normally. */
    cnt.progress_calls = 0;
    cnt.cancel_at_step = 1;
    gp.steps = 50;
    CHECK(nuance_generate(ctx, &gp, &b, &nb) == NUANCE_ERR_CANCELLED);
    CHECK(b == NULL && nb == 0 && cnt.progress_calls == 1);
    cnt.cancel_at_step = 0;
    gp.steps = 2;
    CHECK(nuance_generate(ctx, &gp, &b, &nb) == NUANCE_OK && nb == 1);
    if (na == 1 && nb == 1) CHECK(same_pixels(&a[0], &b[0]));
    nuance_images_free(b, nb);

    /* img2img from the first result. */
    if (na == 1) {
        gp.init_image = &a[0];
        gp.strength = 0.5f;
        gp.steps = 4;
        CHECK(nuance_generate(ctx, &gp, &b, &nb) == NUANCE_OK && nb == 1);
        if (nb == 1) CHECK(b[0].width == 64 && b[0].infotext && strstr(b[0].infotext, "Denoising strength: 0.5"));
        nuance_images_free(b, nb);
        nuance_image bad = a[0];
        bad.channels = 2;
        gp.init_image = &bad;
        CHECK(nuance_generate(ctx, &gp, &b, &nb) == NUANCE_ERR_INVALID_ARGUMENT);
        CHECK(strstr(nuance_last_error(), "channels") != NULL);
        gp.init_image = NULL;
    }

    /* Tiled VAE decode: one tile covering the image is the untiled decode; smaller tiles decode in pieces; a bad
     * overlap is a usage error naming it. */
    gp.steps = 2;
    gp.vae_tiling = 1;
    gp.vae_tile_size = 64;
    gp.vae_tile_overlap = 16;
    CHECK(nuance_generate(ctx, &gp, &b, &nb) == NUANCE_OK && nb == 1);
    if (na == 1 && nb == 1) CHECK(same_pixels(&a[0], &b[0]));
    nuance_images_free(b, nb);
    gp.vae_tile_size = 32;
    gp.vae_tile_overlap = 8;
    CHECK(nuance_generate(ctx, &gp, &b, &nb) == NUANCE_OK && nb == 1);
    if (nb == 1) CHECK(b[0].width == 64 && b[0].height == 64);
    nuance_images_free(b, nb);
    gp.vae_tile_overlap = 24;
    CHECK(nuance_generate(ctx, &gp, &b, &nb) == NUANCE_ERR_INVALID_ARGUMENT);
    CHECK(strstr(nuance_last_error(), "overlap 24") != NULL);
    gp.vae_tiling = 0;

    /* PNG out and back in. */
    if (na == 1) {
        uint8_t* png = NULL;
        size_t size = 0;
        CHECK(nuance_image_encode_png(&a[0], &png, &size) == NUANCE_OK);
        CHECK(png && size > 8 && memcmp(png, "\x89PNG", 4) == 0);
        CHECK(png && size > 8 && contains(png, size, "parameters"));
        nuance_free(png);
        const char* path = "nuance_capi_out.png";
        CHECK(nuance_image_write_png(&a[0], path) == NUANCE_OK);
        nuance_image* back = NULL;
        CHECK(nuance_image_read(path, &back) == NUANCE_OK);
        if (back) CHECK(same_pixels(&a[0], back));
        nuance_images_free(back, 1);
        remove(path);
        CHECK(nuance_image_read("/nonexistent.png", &back) != NUANCE_OK && back == NULL);
        CHECK(nuance_image_write_png(&a[0], "/nonexistent-dir/x.png") != NUANCE_OK);
    }
    nuance_images_free(a, na);
    nuance_context_free(ctx);
}

/* ---- threads ---- */
struct worker_arg {
    long long seed;
    nuance_image* images;
    int count;
    nuance_status status;
    char error[256];
};

static void* worker(void* p) {
    struct worker_arg* w = (struct worker_arg*)p;
    nuance_context* ctx = NULL;
    w->status = nuance_context_create(g_model, &g_ctx_params, &ctx);
    if (w->status != NUANCE_OK) return NULL;
    nuance_generate_params gp;
    tiny_params(&gp, w->seed);
    for (int rep = 0; rep < 2; ++rep) { /* reuse the context */
        nuance_images_free(w->images, w->count);
        w->images = NULL;
        w->count = 0;
        w->status = nuance_generate(ctx, &gp, &w->images, &w->count);
        if (w->status != NUANCE_OK) break;
    }
    /* A failure on this thread must not change the message other threads see. */
    gp.sampler = "thread_local_check";
    nuance_image* x = NULL;
    int nx = 0;
    nuance_generate(ctx, &gp, &x, &nx);
    snprintf(w->error, sizeof w->error, "%s", nuance_last_error());
    nuance_context_free(ctx);
    return NULL;
}

static void test_threads(void) {
    enum { N = 4 };
    struct worker_arg args[N];
    pthread_t th[N];
    memset(args, 0, sizeof args);
    /* Reference results, sequentially. */
    nuance_image* ref[N];
    nuance_context* ctx = NULL;
    CHECK(nuance_context_create(g_model, &g_ctx_params, &ctx) == NUANCE_OK);
    for (int i = 0; i < N; ++i) {
        nuance_generate_params gp;
        tiny_params(&gp, 100 + i);
        int n = 0;
        ref[i] = NULL;
        CHECK(nuance_generate(ctx, &gp, &ref[i], &n) == NUANCE_OK && n == 1);
    }
    nuance_context_free(ctx);
    /* Main thread's message before the workers fail on their threads. */
    nuance_model* m = NULL;
    CHECK(nuance_model_load("/main/thread/missing.safetensors", NULL, &m) == NUANCE_ERR_NOT_FOUND);
    for (int i = 0; i < N; ++i) {
        args[i].seed = 100 + i;
        CHECK(pthread_create(&th[i], NULL, worker, &args[i]) == 0);
    }
    for (int i = 0; i < N; ++i) pthread_join(th[i], NULL);
    for (int i = 0; i < N; ++i) {
        CHECK(args[i].status == NUANCE_OK && args[i].count == 1);
        if (args[i].count == 1 && ref[i]) CHECK(same_pixels(&args[i].images[0], ref[i]));
        CHECK(strstr(args[i].error, "thread_local_check") != NULL);
        nuance_images_free(args[i].images, args[i].count);
        nuance_images_free(ref[i], 1);
    }
    CHECK(strstr(nuance_last_error(), "/main/thread/missing.safetensors") != NULL);
}

/* One context used from two threads at once: the second call gets BUSY; cancel from another thread works. */
struct long_run {
    nuance_context* ctx;
    nuance_status status;
    volatile int started;
};

static void on_started(int step, int total, int image, int images, double elapsed_s, void* user) {
    struct long_run* r = (struct long_run*)user;
    (void)step;
    (void)total;
    (void)image;
    (void)images;
    (void)elapsed_s;
    __atomic_store_n(&r->started, 1, __ATOMIC_SEQ_CST);
}

static void* long_worker(void* p) {
    struct long_run* r = (struct long_run*)p;
    nuance_generate_params gp;
    tiny_params(&gp, 5);
    gp.steps = 1000;
    nuance_image* im = NULL;
    int n = 0;
    r->status = nuance_generate(r->ctx, &gp, &im, &n);
    nuance_images_free(im, n);
    return NULL;
}

static void test_busy_and_cross_thread_cancel(void) {
    struct long_run r;
    memset(&r, 0, sizeof r);
    CHECK(nuance_context_create(g_model, &g_ctx_params, &r.ctx) == NUANCE_OK);
    if (!r.ctx) return;
    nuance_context_set_progress_callback(r.ctx, on_started, &r);
    pthread_t th;
    CHECK(pthread_create(&th, NULL, long_worker, &r) == 0);
    while (!__atomic_load_n(&r.started, __ATOMIC_SEQ_CST)) {
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    nuance_generate_params gp;
    tiny_params(&gp, 6);
    nuance_image* im = NULL;
    int n = 0;
    CHECK(nuance_generate(r.ctx, &gp, &im, &n) == NUANCE_ERR_BUSY && im == NULL);
    nuance_context_cancel(r.ctx);
    pthread_join(th, NULL);
    CHECK(r.status == NUANCE_ERR_CANCELLED);
    nuance_context_free(r.ctx);
}

/* ---- LoRAs per generation ---- */
/* Writes a one-module kohya LoRA for the tiny model's first text-encoder q_proj ([64, 64]): down [1, 64] and up
 * [64, 1], every value `v`, so delta(W) = v^2 everywhere. `module` replaces the module name (one that matches
 * nothing makes the file fit no layer). Returns 0 on success. */
static int write_lora(const char* path, const char* module, float v) {
    char header[512];
    int n = snprintf(header, sizeof header,
                     "{\"%s.lora_down.weight\":{\"dtype\":\"F32\",\"shape\":[1,64],\"data_offsets\":[0,256]},"
                     "\"%s.lora_up.weight\":{\"dtype\":\"F32\",\"shape\":[64,1],\"data_offsets\":[256,512]}}",
                     module, module);
    if (n <= 0 || n >= (int)sizeof header - 8) return 1;
    while (n % 8) header[n++] = ' ';
    FILE* f = fopen(path, "wb");
    if (!f) return 1;
    unsigned char len[8];
    for (int i = 0; i < 8; ++i) len[i] = (unsigned char)(((unsigned long long)n >> (8 * i)) & 0xff);
    fwrite(len, 1, 8, f);
    fwrite(header, 1, (size_t)n, f);
    for (int i = 0; i < 128; ++i) fwrite(&v, sizeof v, 1, f);
    return fclose(f) != 0;
}

static void test_loras(void) {
    char good[96], none[128];
    snprintf(good, sizeof good, "/tmp/nuance_capi_lora_%ld.safetensors", (long)time(NULL) ^ (long)clock());
    snprintf(none, sizeof none, "%s.none.safetensors", good);
    CHECK(write_lora(good, "lora_te_text_model_encoder_layers_0_self_attn_q_proj", 0.5f) == 0);
    CHECK(write_lora(none, "lora_te_no_such_layer", 0.5f) == 0);
    nuance_context* ctx = NULL;
    CHECK(nuance_context_create(g_model, &g_ctx_params, &ctx) == NUANCE_OK);
    if (!ctx) return;
    nuance_generate_params gp;
    nuance_image *plain = NULL, *with = NULL, *again = NULL, *zero = NULL, *im = NULL;
    int n = 0;
    tiny_params(&gp, 11);
    CHECK(nuance_generate(ctx, &gp, &plain, &n) == NUANCE_OK && n == 1);
    nuance_lora l = {good, 1.0f};
    gp.loras = &l;
    gp.lora_count = 1;
    CHECK(nuance_generate(ctx, &gp, &with, &n) == NUANCE_OK && n == 1);
    if (plain && with) {
        CHECK(!same_pixels(plain, with)); /* the LoRA changed the text encoder */
        CHECK(with->infotext && strstr(with->infotext, "Lora hashes: ") != NULL);
        CHECK(with->infotext && strstr(with->infotext, "nuance_capi_lora_") != NULL);
    }
    l.weight = 0.0f; /* strength 0: merged as nothing */
    CHECK(nuance_generate(ctx, &gp, &zero, &n) == NUANCE_OK && n == 1);
    if (plain && zero) CHECK(same_pixels(plain, zero));
    /* errors: nothing merged, and the model is as it was */
    l.weight = 1.0f;
    l.path = none;
    CHECK(nuance_generate(ctx, &gp, &im, &n) == NUANCE_ERR_INVALID_ARGUMENT && im == NULL && n == 0);
    CHECK(strstr(nuance_last_error(), "match a layer") != NULL);
    l.path = "/nonexistent/lora.safetensors";
    CHECK(nuance_generate(ctx, &gp, &im, &n) == NUANCE_ERR_NOT_FOUND);
    CHECK(strstr(nuance_last_error(), "/nonexistent/lora.safetensors") != NULL);
    gp.loras = NULL;
    CHECK(nuance_generate(ctx, &gp, &im, &n) == NUANCE_ERR_INVALID_ARGUMENT);
    CHECK(strstr(nuance_last_error(), "loras is NULL") != NULL);
    gp.lora_count = -1;
    CHECK(nuance_generate(ctx, &gp, &im, &n) == NUANCE_ERR_INVALID_ARGUMENT);
    gp.lora_count = 0;
    gp.prompt = "a red apple <lora:nothing:0.5>"; /* a tag without lora_dir */
    CHECK(nuance_generate(ctx, &gp, &im, &n) == NUANCE_ERR_INVALID_ARGUMENT);
    CHECK(strstr(nuance_last_error(), "<lora:nothing:0.5>") != NULL);
    gp.prompt = "a red apple";
    gp.embedding_dir = "/nonexistent/embeddings"; /* textual inversions: a missing folder is named */
    CHECK(nuance_generate(ctx, &gp, &im, &n) == NUANCE_ERR_NOT_FOUND);
    CHECK(strstr(nuance_last_error(), "/nonexistent/embeddings") != NULL);
    gp.embedding_dir = NULL;
    CHECK(nuance_generate(ctx, &gp, &again, &n) == NUANCE_OK && n == 1);
    if (plain && again) CHECK(same_pixels(plain, again)); /* restored bit-exactly after every call */
    nuance_images_free(plain, 1);
    nuance_images_free(with, with ? 1 : 0);
    nuance_images_free(zero, zero ? 1 : 0);
    nuance_images_free(again, again ? 1 : 0);
    nuance_context_free(ctx);
    remove(good);
    remove(none);
}

/* Contexts keep the model alive after nuance_model_free. */
static void test_model_lifetime(void) {
    nuance_model* m = NULL;
    CHECK(nuance_model_load(g_model_path, NULL, &m) == NUANCE_OK);
    if (!m) return;
    CHECK(strcmp(nuance_model_family(m), "sd1") == 0);
    CHECK(nuance_model_default_size(m) == 512);
    nuance_context* ctx = NULL;
    CHECK(nuance_context_create(m, &g_ctx_params, &ctx) == NUANCE_OK);
    nuance_model_free(m);
    nuance_generate_params gp;
    tiny_params(&gp, 9);
    nuance_image* im = NULL;
    int n = 0;
    CHECK(nuance_generate(ctx, &gp, &im, &n) == NUANCE_OK && n == 1);
    nuance_images_free(im, n);
    nuance_context_free(ctx);
}

int main(int argc, char** argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s TINY_MODEL.safetensors\n", argv[0]);
        return 2;
    }
    g_model_path = argv[1];
    nuance_context_params_init(&g_ctx_params);
    g_ctx_params.n_threads = 1;
    nuance_set_num_threads(1);
    test_basics();
    test_load_errors();
    if (nuance_model_load(g_model_path, NULL, &g_model) != NUANCE_OK) {
        fprintf(stderr, "cannot load %s: %s\n", g_model_path, nuance_last_error());
        return 1;
    }
    test_generate();
    test_threads();
    test_busy_and_cross_thread_cancel();
    test_loras();
    test_model_lifetime();
    nuance_model_free(g_model);
    printf("C API: %d checks, %d failures\n", g_checks, g_failures);
    return g_failures == 0 ? 0 : 1;
}
