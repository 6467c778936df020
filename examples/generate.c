/* Generates images through the nuance C API: the smallest complete embedding example (C99).
 *
 *   nuance_example_generate -m model.safetensors -p "a lighthouse at dusk" [-n NEG] [-W W] [-H H]
 *                           [--steps N] [--cfg S] [--sampler NAME] [--seed 42] [-b 1] [-o out.png]
 *
 * Size, steps, CFG and sampler default to the model's own (nuance_generate_params_init leaves them unset).
 *
 * Shows: params _init + fill, per-context progress/preview/log callbacks with a user pointer, status codes with
 * nuance_last_error(), writing PNGs with the A1111 "parameters" chunk, and freeing everything.
 */
#include <nuance.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct progress_state {
    const char* label;
    int previews;
};

static void on_progress(int step, int total, int image, int images, double elapsed_s, void* user) {
    const struct progress_state* st = (const struct progress_state*)user;
    fprintf(stderr, "\r%s: image %d/%d, step %d/%d (%.1f s)", st->label, image + 1, images, step, total, elapsed_s);
    if (step == total) fputc('\n', stderr);
}

static void on_preview(const nuance_image* preview, int step, int total, void* user) {
    struct progress_state* st = (struct progress_state*)user;
    (void)preview;
    (void)step;
    (void)total;
    st->previews++;
}

static void on_log(nuance_log_level level, const char* message, void* user) {
    (void)user;
    fprintf(stderr, "[%s] %s\n", level >= NUANCE_LOG_ERROR ? "error" : level >= NUANCE_LOG_WARN ? "warn" : "info", message);
}

static int usage(const char* argv0) {
    fprintf(stderr, "usage: %s -m MODEL -p PROMPT [-n NEG] [-W W] [-H H] [--steps N] [--cfg S] [--sampler NAME] "
                    "[--seed N] [-b COUNT] [-o OUT.png]\n", argv0);
    return 2;
}

int main(int argc, char** argv) {
    const char* model_path = NULL;
    const char* out_path = "output.png";
    nuance_generate_params gp;
    nuance_generate_params_init(&gp);
    gp.prompt = "";
    for (int i = 1; i < argc; ++i) {
        const char* a = argv[i];
        const char* v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v) return usage(argv[0]);
        if (!strcmp(a, "-m")) model_path = v;
        else if (!strcmp(a, "-p")) gp.prompt = v;
        else if (!strcmp(a, "-n")) gp.negative_prompt = v;
        else if (!strcmp(a, "-W")) gp.width = atoi(v);
        else if (!strcmp(a, "-H")) gp.height = atoi(v);
        else if (!strcmp(a, "--steps")) gp.steps = atoi(v);
        else if (!strcmp(a, "--cfg")) gp.cfg_scale = (float)atof(v);
        else if (!strcmp(a, "--sampler")) gp.sampler = v;
        else if (!strcmp(a, "--seed")) gp.seed = atoll(v);
        else if (!strcmp(a, "-b")) gp.batch_count = atoi(v);
        else if (!strcmp(a, "-o")) out_path = v;
        else return usage(argv[0]);
        ++i;
    }
    if (!model_path) return usage(argv[0]);

    nuance_model_params mp;
    nuance_model_params_init(&mp);
    mp.log = on_log;
    nuance_model* model = NULL;
    if (nuance_model_load(model_path, &mp, &model) != NUANCE_OK) {
        fprintf(stderr, "cannot load model: %s\n", nuance_last_error());
        return 1;
    }
    nuance_context* ctx = NULL;
    if (nuance_context_create(model, NULL, &ctx) != NUANCE_OK) {
        fprintf(stderr, "cannot create context: %s\n", nuance_last_error());
        nuance_model_free(model);
        return 1;
    }
    struct progress_state st = {"sampling", 0};
    nuance_context_set_progress_callback(ctx, on_progress, &st);
    nuance_context_set_preview_callback(ctx, on_preview, &st);
    nuance_context_set_log_callback(ctx, on_log, NULL, NUANCE_LOG_INFO);

    nuance_image* images = NULL;
    int count = 0;
    const nuance_status s = nuance_generate(ctx, &gp, &images, &count);
    int rc = 0;
    if (s != NUANCE_OK) {
        fprintf(stderr, "generation failed (%s): %s\n", nuance_status_name(s), nuance_last_error());
        rc = 1;
    }
    for (int i = 0; i < count; ++i) {
        char path[4096];
        if (i == 0) snprintf(path, sizeof path, "%s", out_path);
        else snprintf(path, sizeof path, "%s.%d.png", out_path, i + 1);
        if (nuance_image_write_png(&images[i], path) != NUANCE_OK) {
            fprintf(stderr, "cannot write %s: %s\n", path, nuance_last_error());
            rc = 1;
        } else {
            printf("%s (seed %lld, %dx%d)\n%s\n", path, (long long)images[i].seed, images[i].width, images[i].height,
                   images[i].infotext);
        }
    }
    fprintf(stderr, "%d preview(s) received\n", st.previews);
    nuance_images_free(images, count);
    nuance_context_free(ctx);
    nuance_model_free(model);
    return rc;
}
