// nuance serve: the HTTP server (A1111 /sdapi/v1, OpenAI /v1/images, native /api/v1/jobs) and the web page.
#include <csignal>
#include <cstdio>
#include <fstream>
#include <malloc.h>
#include <pthread.h>
#include <thread>

#include "../server/server.h"
#include "commands.h"
#include "io/weight_file.h"
#include "models/default_model.h"
#include "models/taesd/taesd.h"

namespace nuance::cli {

namespace {

struct ServeArgs {
    server::ServerOptions o;
    std::string vae, taesd, api_key_file, prediction, precision = "auto", weight_type;
    int max_body_mb = 64;
    int history_mb = 512;
    bool verbose = false, quiet = false;
};

// Every option is checked before anything starts: a bad value is a usage error (exit 2) naming the flag and value.
template <typename T>
void check_range(const char* flag, T v, T lo, T hi) {
    NUANCE_CHECK(v >= lo && v <= hi, "usage: ", flag, " must be in ", lo, "..", hi, ", got ", v);
}

void validate(const ServeArgs& a) {
    const server::Limits& l = a.o.limits;
    const server::QueueOptions& q = a.o.queue;
    check_range("--port", a.o.port, 0, 65535);
    check_range("--max-body-mb", a.max_body_mb, 1, 4096);
    check_range("--http-threads", a.o.http_threads, 1, server::kMaxHttpThreads);
    check_range("--threads", q.threads, 0, 1024);
    check_range("--queue-size", q.max_queued, (size_t)1, (size_t)100000);
    check_range("--max-models", q.max_models, (size_t)1, (size_t)64);
    check_range("--history", q.history, (size_t)0, (size_t)100000);
    check_range("--history-mb", a.history_mb, 1, 1 << 20);
    check_range("--preview-interval", q.preview_interval, 0, 100000);
    check_range("--max-side", l.max_side, 8, 16384);
    check_range("--max-pixels", l.max_pixels, (int64_t)64, (int64_t)16384 * 16384);
    check_range("--max-steps", l.max_steps, 1, 10000);
    check_range("--max-images", l.max_images, 1, 1000);
    NUANCE_CHECK(!a.o.host.empty() && a.o.host.size() <= 255, "usage: --host must be an address, got '", a.o.host, "'");
}

int run(ServeArgs& a) {
    if (a.o.model.empty() && a.o.models_dir.empty()) a.o.model = default_model_path();  // the built-in model
    if (a.o.model.empty() && a.o.models_dir.empty())
        fail(ErrorCode::InvalidArgument, "usage: no model: pass -m/--model FILE|FOLDER or --models-dir DIR (the ",
             "built-in model models/", kDefaultModelName, " was not found)");
    if (!a.api_key_file.empty()) {
        // A regular file of at most 64 KiB (a FIFO or /dev/zero would block or never end); the key is its first line.
        const std::string text = read_small_file(a.api_key_file, 64u << 10, "API key file");
        a.o.api_key = text.substr(0, text.find('\n'));
        while (!a.o.api_key.empty() && (a.o.api_key.back() == '\r' || a.o.api_key.back() == ' ')) a.o.api_key.pop_back();
        NUANCE_CHECK(!a.o.api_key.empty(), "API key file '", a.api_key_file, "' is empty");
    }
    validate(a);
    a.o.max_body_bytes = (size_t)a.max_body_mb << 20;
    a.o.queue.history_bytes = (size_t)a.history_mb << 20;
    a.o.queue.load.vae_path = a.vae;
    if (!a.taesd.empty()) a.o.queue.taesd = TinyAutoencoder::load(a.taesd, "--taesd");
    a.o.queue.load.prediction = a.prediction;
    a.o.queue.load.precision = parse_usage_precision(a.precision);
    a.o.queue.load.weight_type = check_usage_weight_type(a.weight_type);
    Logger log;
    if (a.verbose) log.set_level(LogLevel::Debug);
    if (a.quiet) log.set_level(LogLevel::Warn);
    a.o.logger = &log;
    a.o.queue.load.logger = &log;

    // glibc gives each HTTP thread its own malloc arena; freed request bodies stay in them (bursts of large bad
    // requests grew RSS by ~570 MB). Few arenas + malloc_trim after large bodies (http_conn.cpp) keep it bounded.
    mallopt(M_ARENA_MAX, 2);

    // SIGINT/SIGTERM are taken by one thread (sigwait) that stops the server; every other thread blocks them.
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &sigs, nullptr);
    std::signal(SIGPIPE, SIG_IGN);

    server::Server srv(a.o);
    const int port = srv.bind();
    std::string models;
    for (const auto& e : srv.models().list()) models += (models.empty() ? "" : ", ") + e.name;
    std::printf("nuance serve: listening on http://%s:%d (models: %s)%s\n", a.o.host.c_str(), port,
                models.empty() ? "none yet" : models.c_str(), a.o.api_key.empty() ? "" : " [API key required]");
    std::fflush(stdout);
    if (a.o.host != "127.0.0.1" && a.o.host != "localhost" && a.o.host != "::1" && a.o.api_key.empty())
        log.warn("listening on ", a.o.host, " without --api-key: anyone who can reach this port can use it");

    std::thread waiter([&] {
        int sig = 0;
        sigwait(&sigs, &sig);
        if (sig != 0) srv.stop();
    });
    srv.run();
    // run() also returns when the listener fails; wake the waiter so it can be joined.
    srv.stop();
    pthread_kill(waiter.native_handle(), SIGTERM);
    waiter.join();
    if (!a.quiet) std::fprintf(stderr, "nuance serve: stopped\n");
    return 0;
}

}  // namespace

Runner add_serve(CLI::App& app) {
    auto a = std::make_shared<ServeArgs>();
    CLI::App* c = app.add_subcommand("serve", "HTTP server: A1111 and OpenAI-compatible APIs, job API, web page at /");
    c->add_option("--host", a->o.host, "Address to listen on (use 0.0.0.0 for every interface)")->capture_default_str();
    c->add_option("--port", a->o.port, "Port (0: any free port, printed at start)")->capture_default_str();
    c->add_option("-m,--model", a->o.model, "Checkpoint or diffusers folder: the default model");
    c->add_option("--models-dir", a->o.models_dir, "Folder of checkpoints that requests may name");
    c->add_option("--lora-dir", a->o.lora_dir, "Folder of LoRAs (GET /sdapi/v1/loras) that request prompts may use as <lora:name:weight>");
    c->add_option("--embedding-dir,--embeddings-dir", a->o.embedding_dir,
                  "Folder of textual-inversion embeddings that request prompts may name (default: <models-dir>/embeddings when present)");
    c->add_option("--controlnet-dir", a->o.controlnet_dir,
                  "Folder of ControlNets that A1111 ControlNet units (alwayson_scripts.controlnet) may name");
    c->add_option("--vae", a->vae, "Replace every model's VAE with this file");
    c->add_option("--taesd", a->taesd,
                  "Tiny autoencoder (TAESD/TAESDXL/TAESD3/TAEF1 decoder file or diffusers folder) for the live previews");
    c->add_option("--prediction", a->prediction, "Override the prediction type: epsilon | v_prediction");
    c->add_option("--precision", a->precision, "Compute precision: auto (bf16 where the CPU has it) | bf16 | fp32")
        ->capture_default_str();
    c->add_option("--type", a->weight_type, kWeightTypeHelp);
    c->add_option("--api-key", a->o.api_key, "Require this key (Authorization: Bearer KEY, X-API-Key, or Basic password)");
    c->add_option("--api-key-file", a->api_key_file, "Read the API key from the first line of this file");
    c->add_option("--output-dir", a->o.output_dir,
                  "Save every generated image here (NNNNN-SEED.png with its parameters); the web page lists them");
    c->add_option("--queue-size", a->o.queue.max_queued, "Jobs that may wait; more get HTTP 429")->capture_default_str();
    c->add_option("--max-models", a->o.queue.max_models, "Models loaded at once (one worker each)")->capture_default_str();
    c->add_option("--max-side", a->o.limits.max_side, "Largest width/height a request may ask for")->capture_default_str();
    c->add_option("--max-pixels", a->o.limits.max_pixels, "Largest width*height")->capture_default_str();
    c->add_option("--max-steps", a->o.limits.max_steps, "Most sampling steps per image")->capture_default_str();
    c->add_option("--max-images", a->o.limits.max_images, "Most images per request")->capture_default_str();
    c->add_option("--max-body-mb", a->max_body_mb, "Largest request body, MiB")->capture_default_str();
    c->add_option("--history", a->o.queue.history, "Finished jobs kept for polling")->capture_default_str();
    c->add_option("--history-mb", a->history_mb, "Most MiB of finished jobs' images kept")->capture_default_str();
    c->add_option("--preview-interval", a->o.queue.preview_interval, "Steps between live previews (0: none)")->capture_default_str();
    c->add_option("--http-threads", a->o.http_threads, "Connections served at once")->capture_default_str();
    c->add_option("-t,--threads", a->o.queue.threads, "CPU threads per worker (default: all cores)");
    c->add_flag("-v,--verbose", a->verbose, "Log every request");
    c->add_flag("-q,--quiet", a->quiet, "Log warnings and errors only");
    return [a] { return run(*a); };
}

}  // namespace nuance::cli
