/* nuance C API (C99): load Stable Diffusion checkpoints and generate images from C or any language with a C FFI.
 *
 *   nuance_model_params mp;  nuance_model_params_init(&mp);
 *   nuance_model* model;
 *   if (nuance_model_load("sd15.safetensors", &mp, &model) != NUANCE_OK) fprintf(stderr, "%s\n", nuance_last_error());
 *   nuance_context* ctx;
 *   nuance_context_create(model, NULL, &ctx);        // contexts share the model; each has its own callbacks
 *   nuance_context_set_progress_callback(ctx, on_progress, user);
 *   nuance_generate_params gp;  nuance_generate_params_init(&gp);
 *   gp.prompt = "a lighthouse at dusk";  gp.steps = 20;
 *   nuance_image* images;  int n;
 *   if (nuance_generate(ctx, &gp, &images, &n) == NUANCE_OK) { nuance_image_write_png(&images[0], "out.png"); }
 *   nuance_images_free(images, n);
 *   nuance_context_free(ctx);  nuance_model_free(model);  // any order: the model lives while a context uses it
 *
 * Rules:
 * - Every function that can fail returns a nuance_status; NUANCE_OK is 0. The message of the last failure on the
 *   calling thread is nuance_last_error() (valid until that thread's next failing call). No C++ exception ever
 *   leaves this API.
 * - Params structs are filled with defaults by their _init function; set what you need after that. Strings are
 *   UTF-8 and are copied during the call (the caller keeps ownership).
 * - A context runs one generation at a time (a second concurrent nuance_generate on the same context fails with
 *   NUANCE_ERR_BUSY). Several threads may generate at once on separate contexts, sharing one model or not.
 *   A context can be reused for any number of generations.
 * - Handles are checked: a model or context handle that was freed already (or never created) makes the call fail
 *   with NUANCE_ERR_INVALID_ARGUMENT (functions returning void ignore it and set nuance_last_error()); a double
 *   free is reported, not performed. nuance_context_free on a context that is generating is refused
 *   (NUANCE_ERR_BUSY in nuance_last_error()). nuance_image arrays are plain memory and cannot be checked.
 * - NaN/Inf in the model's outputs (broken weights) fail nuance_generate with NUANCE_ERR_INVALID_ARGUMENT naming
 *   the stage and step, never a black image.
 * - Callbacks are per context and run on the thread that called nuance_generate. They must not call
 *   nuance_generate or nuance_context_free on the same context. nuance_context_cancel is safe from any thread,
 *   including from a callback.
 */
#ifndef NUANCE_H
#define NUANCE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(_WIN32)
#define NUANCE_API __declspec(dllexport)
#elif defined(__GNUC__)
#define NUANCE_API __attribute__((visibility("default")))
#else
#define NUANCE_API
#endif

#define NUANCE_VERSION_MAJOR 0
#define NUANCE_VERSION_MINOR 1
#define NUANCE_VERSION_PATCH 0

typedef enum nuance_status {
    NUANCE_OK = 0,
    NUANCE_ERR_INVALID_ARGUMENT = 1, /* a bad parameter, prompt, size, sampler name, or a NULL pointer */
    NUANCE_ERR_NOT_FOUND = 2,        /* a file that does not exist */
    NUANCE_ERR_UNSUPPORTED = 3,      /* a model or file format this version cannot handle */
    NUANCE_ERR_IO = 4,               /* reading or writing failed */
    NUANCE_ERR_OUT_OF_MEMORY = 5,
    NUANCE_ERR_CANCELLED = 6,        /* nuance_context_cancel stopped the generation */
    NUANCE_ERR_BUSY = 7,             /* the context is already generating on another thread */
    NUANCE_ERR_INTERNAL = 8          /* a bug in nuance: please report the message */
} nuance_status;

typedef enum nuance_log_level {
    NUANCE_LOG_DEBUG = 0,
    NUANCE_LOG_INFO = 1,
    NUANCE_LOG_WARN = 2,
    NUANCE_LOG_ERROR = 3
} nuance_log_level;

typedef struct nuance_model nuance_model;     /* loaded weights; thread-safe to share between contexts */
typedef struct nuance_context nuance_context; /* one generation at a time, its own callbacks and cancel flag */

/* An 8-bit image, row-major, channels interleaved (RGB: channels = 3). Images returned by nuance_generate also
 * carry the seed and the A1111 "parameters" text; images passed in may leave those 0/NULL. */
typedef struct nuance_image {
    int width, height, channels;
    uint8_t* data;      /* width * height * channels bytes */
    int64_t seed;
    char* infotext;     /* NUL-terminated; NULL for input images */
} nuance_image;

/* Called after every sampling step: step in 1..total of image `image` (0-based) of `images`. */
typedef void (*nuance_progress_fn)(int step, int total, int image, int images, double elapsed_s, void* user);
/* A cheap preview of the current sample (a linear map of the latents, a few times smaller than the output). The
 * image is only valid during the call. */
typedef void (*nuance_preview_fn)(const nuance_image* preview, int step, int total, void* user);
typedef void (*nuance_log_fn)(nuance_log_level level, const char* message, void* user);

/* ---- library ---- */
NUANCE_API const char* nuance_version(void);                 /* "0.1.0" */
NUANCE_API const char* nuance_status_name(nuance_status s);  /* "NUANCE_ERR_NOT_FOUND", ... */
NUANCE_API const char* nuance_last_error(void);              /* thread-local; "" when nothing failed */
/* CPU threads for the calling thread's work; <= 0: all cores. n > nuance_max_threads() is refused: the count in use
 * stays and nuance_last_error() says why. */
NUANCE_API void nuance_set_num_threads(int n);
NUANCE_API int nuance_max_threads(void);                     /* max(256, 4 x hardware threads) */

/* Samplers by canonical name ("euler_a", "dpmpp_2m", ...); any spelling of nuance_generate_params.sampler works
 * ("Euler a", "k_dpmpp_2m"). index in 0..count-1, else NULL. */
NUANCE_API int nuance_sampler_count(void);
NUANCE_API const char* nuance_sampler_name(int index);
NUANCE_API const char* nuance_sampler_display_name(int index); /* A1111 spelling: "Euler a" */

/* ---- models ---- */
typedef struct nuance_model_params {
    const char* vae_path;    /* NULL: the checkpoint's VAE */
    const char* prediction;  /* NULL: from the model; else "epsilon" | "v_prediction" */
    nuance_log_fn log;       /* messages while loading; NULL: silent */
    void* log_user;
    nuance_log_level log_level;
    const char* precision;   /* NULL or "auto": bf16 where the CPU has native bf16, else fp32; "fp32" | "bf16" */
    /* Text encoders kept in their own files (SD1/SDXL UNet-only files, SD3, Flux; the CLI's --clip-l --clip-g
     * --t5xxl, and clip_h_path below); NULL: none. A family that cannot use one fails the load, naming it. */
    const char* clip_l_path;
    const char* clip_g_path;
    const char* t5xxl_path;
    const char* family;      /* NULL: detect from the file; else a family name ("sd1", "sdxl" ...) to load as */
    const char* clip_h_path; /* SD2's OpenCLIP ViT-H text encoder for its UNet-only files (the CLI's --clip-h) */
    /* NULL or "": the weights as the file stores them; else quantized in memory as they load (the CLI's --type):
     * "q8_0", "q4_0", "q5_0", "q4_k", "q4_k_m", ... (the denoiser and the text encoders; the VAE keeps its dtype).
     * Anything else fails the load with NUANCE_ERR_INVALID_ARGUMENT. */
    const char* weight_type;
} nuance_model_params;

NUANCE_API void nuance_model_params_init(nuance_model_params* p);
/* path: a .safetensors / .ckpt checkpoint or a diffusers folder; NULL or "": the built-in nuance-emoji model
 * ($NUANCE_DEFAULT_MODEL, or models/nuance-emoji beside the library's source or install). params may be NULL. */
NUANCE_API nuance_status nuance_model_load(const char* path, const nuance_model_params* params, nuance_model** out);
NUANCE_API void nuance_model_free(nuance_model* model); /* NULL is fine; contexts keep the weights alive */
NUANCE_API const char* nuance_model_family(const nuance_model* model); /* registry name: "sd1", "sd2", "sdxl" ... */
NUANCE_API int nuance_model_default_size(const nuance_model* model);   /* native side: 32 (nuance-emoji), 512, 768, 1024 */

/* ---- contexts ---- */
typedef struct nuance_context_params {
    int n_threads;        /* CPU threads used while generating; 0: all cores; at most nuance_max_threads() */
    int preview_interval; /* steps between preview callbacks; 0: every step */
} nuance_context_params;

NUANCE_API void nuance_context_params_init(nuance_context_params* p);
/* params may be NULL (defaults). The context holds a reference to the model. */
NUANCE_API nuance_status nuance_context_create(nuance_model* model, const nuance_context_params* params, nuance_context** out);
NUANCE_API void nuance_context_free(nuance_context* ctx); /* NULL is fine; not while it generates */

/* Callbacks (NULL fn: none). Set them while the context is idle. */
NUANCE_API void nuance_context_set_progress_callback(nuance_context* ctx, nuance_progress_fn fn, void* user);
NUANCE_API void nuance_context_set_preview_callback(nuance_context* ctx, nuance_preview_fn fn, void* user);
NUANCE_API void nuance_context_set_log_callback(nuance_context* ctx, nuance_log_fn fn, void* user, nuance_log_level level);

/* Asks the running generation to stop after the current model call; nuance_generate then returns
 * NUANCE_ERR_CANCELLED. Thread-safe. The flag is cleared when the next nuance_generate starts. */
NUANCE_API void nuance_context_cancel(nuance_context* ctx);

/* ---- generation ---- */
/* A LoRA / LyCORIS file (kohya, diffusers/PEFT, LoHa, LoKr, DoRA; .safetensors/.pt/.ckpt) for one generation. */
typedef struct nuance_lora {
    const char* path;
    float weight;  /* strength for the denoiser and the text encoders (A1111's <lora:name:weight>); 1.0 is full */
} nuance_lora;

typedef struct nuance_generate_params {
    const char* prompt;           /* A1111 syntax: (word:1.2), [word], BREAK */
    const char* negative_prompt;  /* NULL = "" */
    int width, height;            /* 0: the model's default size (32 for nuance-emoji, 512 SD1, 1024 SDXL); else multiples of 8 */
    int steps;                    /* 0: the model's default (20) */
    float cfg_scale;              /* < 0: the model's default (7.0; 5.0 for nuance-emoji) */
    const char* sampler;          /* NULL: the model's default ("euler_a") */
    const char* scheduler;        /* "normal" (also "karras", "exponential", ...); NULL = the sampler's default */
    float eta;                    /* < 0: the sampler's default */
    int64_t seed;                 /* < 0: random (0..2^32-1); image i uses seed + i (must fit in int64) */
    int batch_count;              /* images, one after another: 1 */
    int clip_skip;                /* 0: the model's default */
    const char* rng;              /* "cuda" (A1111 GPU noise, default) | "cpu" (torch CPU / ComfyUI) */
    const nuance_image* init_image; /* img2img when not NULL (RGB or RGBA; resized to width x height) */
    float strength;               /* img2img denoising strength in (0, 1]: 0.75 */
    int vae_tiling;               /* 1: VAE decode (and img2img encode) in overlapping tiles, bounded memory: 0 */
    int vae_tile_size;            /* tile side in pixels, a multiple of 8: 512 */
    int vae_tile_overlap;         /* overlap of tiles in pixels, a multiple of 8, at most half the tile: 64 */
    /* LoRAs merged into the model for this call only and restored (bit-exactly) before it returns, in order, with
     * the prompt's <lora:name:w> tags (names from lora_dir) after them. While a call with LoRAs runs, other contexts
     * on the same model wait (the weights are shared); calls without LoRAs run side by side. A file that fits no
     * layer of the model, or a missing one, fails the call with nothing merged. At most 64 in all. */
    const nuance_lora* loras;     /* NULL: none */
    int lora_count;               /* entries of loras: 0 */
    const char* lora_dir;         /* folder for the prompt's <lora:name:w> tags; NULL: a tag is an error */
    const char* embedding_dir;    /* textual-inversion embeddings the prompts name by file name; NULL: none */
} nuance_generate_params;

NUANCE_API void nuance_generate_params_init(nuance_generate_params* p);
/* On NUANCE_OK, *out_images is an array of *out_count images; free it with nuance_images_free. On failure
 * *out_images is NULL and *out_count 0. */
NUANCE_API nuance_status nuance_generate(nuance_context* ctx, const nuance_generate_params* params,
                                         nuance_image** out_images, int* out_count);
NUANCE_API void nuance_images_free(nuance_image* images, int count);

/* ---- images ---- */
/* PNG with the image's infotext as the A1111 "parameters" chunk (when not NULL). Free *out with nuance_free.
 * nuance_image_write_png encodes in memory and writes atomically (temp file + rename): a full disk or a crash leaves
 * the old file intact. */
NUANCE_API nuance_status nuance_image_encode_png(const nuance_image* image, uint8_t** out, size_t* out_size);
NUANCE_API nuance_status nuance_image_write_png(const nuance_image* image, const char* path);
/* Reads a PNG or JPEG as RGB; truncated or corrupt files fail, and so do images over 4096x2048 pixels (checked on
 * the header, before decoding). Free with nuance_images_free(image, 1). */
NUANCE_API nuance_status nuance_image_read(const char* path, nuance_image** out);
NUANCE_API void nuance_free(void* p);

#ifdef __cplusplus
}
#endif

#endif /* NUANCE_H */
