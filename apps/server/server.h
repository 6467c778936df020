// `nuance serve`: an HTTP server with the A1111 (/sdapi/v1), OpenAI (/v1/images) and native job (/api/v1/jobs)
// APIs and a web page at /. Generation runs on JobQueue workers; HTTP handlers only parse, queue and wait.
//
//     ServerOptions o;  o.models_dir = "models";  o.port = 0;
//     Server s(o);
//     int port = s.bind();              // throws Error(Io) when the address is taken
//     std::thread t([&] { s.run(); });  // serves until stop()
//     ...
//     s.stop();  t.join();
#pragma once
#include <memory>
#include <string>

#include "http_limits.h"
#include "job_queue.h"
#include "request_parse.h"

namespace nuance::server {

constexpr int kMaxHttpThreads = 256;

struct ServerOptions {
    std::string host = "127.0.0.1";
    int port = 7860;            // A1111's port, where its clients look first; 0 = any free port
    std::string model;          // -m: one checkpoint (the default model)
    std::string models_dir;     // --models-dir: checkpoints requests may name
    std::string lora_dir;       // --lora-dir: LoRAs that request prompts may name (<lora:name:w>)
    // --embedding-dir: textual inversions that request prompts may name; "" = <models-dir>/embeddings when that
    // folder exists (A1111's embeddings/ next to its models), else none
    std::string embedding_dir;
    std::string controlnet_dir;  // --controlnet-dir: ControlNets that A1111 ControlNet units may name
    std::string output_dir;     // --output-dir: every image is saved there (NNNNN-SEED.png); "" = not saved
    std::string api_key;        // non-empty: every API route needs it (Bearer, X-API-Key, Basic password, ?api_key=)
    size_t max_body_bytes = 64u << 20;
    int http_threads = 64;      // connections served at once (long-polls and event streams hold one each), 1..256
    QueueOptions queue;
    Limits limits;
    HttpLimits http;            // connection limits and timeouts (its max_body_bytes is replaced by the one above)
    const Logger* logger = nullptr;  // nullptr: silent
};

class Server {
public:
    explicit Server(ServerOptions o);  // throws Error for a missing model / models dir
    ~Server();
    Server(const Server&) = delete;
    Server& operator=(const Server&) = delete;

    int bind();   // returns the bound port
    void run();   // blocks until stop()
    void stop();  // thread-safe, idempotent: cancels jobs, closes connections, joins workers
    int port() const;

    JobQueue& queue();
    ModelStore& models();

    struct Impl;

private:
    std::unique_ptr<Impl> impl_;
};

}  // namespace nuance::server
