// Shared by the route files: the server's state, JSON responses, uniform error bodies, exception mapping.
#pragma once
#include <httplib.h>

#include <atomic>
#include <functional>
#include <nlohmann/json.hpp>

#include "defaults.h"
#include "http_conn.h"
#include "model_store.h"
#include "server.h"
#include "text/embedding_library.h"

namespace nuance::server {

using nlohmann::json;

struct Server::Impl {
    ServerOptions opt;
    ModelStore store;
    DefaultsCache defaults;  // per-model generation defaults (defaults.h)
    OutputDir outputs;       // --output-dir
    LoraStore loras;         // --lora-dir
    std::shared_ptr<const EmbeddingLibrary> embeddings;  // --embedding-dir (or <models-dir>/embeddings); may be null
    JobQueue queue;
    HttpServer http;
    std::atomic<bool> stopping{false};
    std::atomic<bool> bound{false};
    int port = 0;
    Impl(ServerOptions o);
};
using ServerContext = Server::Impl;

// Writes `body` as JSON (UTF-8; invalid bytes are replaced, never thrown on).
void send_json(httplib::Response& res, int status, const json& body);

// Error body understood by A1111 clients ("detail") and OpenAI clients ("error.message"):
//   {"error": {"message": ..., "type": ..., "code": status}, "detail": ...}
void send_error(httplib::Response& res, int status, const std::string& message);

// Wraps a handler: Error -> its HTTP status, QueueFull -> 429, bad_alloc -> 503, anything else -> 500.
using Handler = std::function<void(const httplib::Request&, httplib::Response&)>;
Handler guarded(Handler h);

// Generation for the synchronous routes: queue the job, wait for it, forget it.
JobStatus run_sync(ServerContext& c, const ParsedRequest& pr, const std::string& kind);

std::string png_b64(const JobImage& img);
std::string iso_timestamp_compact(double unix_seconds);  // A1111 job_timestamp: "20240131235959"

void add_sdapi_routes(ServerContext& c);
void add_openai_routes(ServerContext& c);
void add_job_routes(ServerContext& c);
void add_web_routes(ServerContext& c);
void add_controlnet_routes(ServerContext& c);  // /controlnet/* (routes_controlnet.cpp)
void add_defaults_routes(ServerContext& c);  // GET /api/v1/models, /api/v1/outputs[/NAME]
json model_list_json(ServerContext& c);       // every model with its defaults (routes_defaults.cpp)
json default_model_defaults(ServerContext& c);  // the default model's defaults

}  // namespace nuance::server
