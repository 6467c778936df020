#include "server.h"

#include <netinet/in.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>
#include <ctime>

#include "base64.h"
#include "http_util.h"
#include "io/weights.h"

namespace nuance::server {

namespace {

const char* error_type(int status) {
    switch (status) {
        case 400: return "invalid_request_error";
        case 401: return "authentication_error";
        case 404: return "not_found_error";
        case 409: return "conflict_error";
        case 408: return "request_timeout";
        case 413: return "payload_too_large";
        case 414: return "uri_too_long";
        case 415: return "unsupported_media_type";
        case 431: return "headers_too_large";
        case 429: return "queue_full";
        case 501: return "not_implemented";
        case 503: return "service_unavailable";
        default: return status >= 500 ? "server_error" : "invalid_request_error";
    }
}

bool equal_const_time(const std::string& a, const std::string& b) {
    unsigned char diff = a.size() == b.size() ? 0 : 1;
    for (size_t i = 0; i < a.size(); ++i) diff |= (unsigned char)(a[i] ^ b[i % (b.empty() ? 1 : b.size())]);
    return diff == 0 && !b.empty();
}

bool authorized(const httplib::Request& req, const std::string& key) {
    if (key.empty()) return true;
    const std::string auth = req.get_header_value("Authorization");
    if (auth.rfind("Bearer ", 0) == 0 && equal_const_time(auth.substr(7), key)) return true;
    if (auth.rfind("Basic ", 0) == 0) {  // A1111 --api-auth clients: any user, the key as password
        try {
            const auto raw = base64_decode(auth.substr(6), "Authorization");
            const std::string up(raw.begin(), raw.end());
            const size_t colon = up.find(':');
            if (colon != std::string::npos && equal_const_time(up.substr(colon + 1), key)) return true;
            if (equal_const_time(up, key)) return true;
        } catch (const Error&) {
        }
    }
    if (req.has_header("X-API-Key") && equal_const_time(req.get_header_value("X-API-Key"), key)) return true;
    // EventSource cannot set headers: the web page passes the key in the query string.
    if (req.has_param("api_key") && equal_const_time(req.get_param_value("api_key"), key)) return true;
    return false;
}

bool is_public_path(const std::string& path) {
    return path == "/" || path == "/index.html" || path == "/favicon.ico" || path == "/health";
}

}  // namespace

std::string error_json(int status, const std::string& message) {
    const json e = {{"error", {{"message", message}, {"type", error_type(status)}, {"code", status}}}, {"detail", message}};
    return e.dump(-1, ' ', false, json::error_handler_t::replace);
}

void send_json(httplib::Response& res, int status, const json& body) {
    res.status = status;
    res.set_content(body.dump(-1, ' ', false, json::error_handler_t::replace), "application/json");
}

void send_error(httplib::Response& res, int status, const std::string& message) {
    res.status = status;
    res.set_content(error_json(status, message), "application/json");
}

Handler guarded(Handler h) {
    return [h = std::move(h)](const httplib::Request& req, httplib::Response& res) {
        try {
            h(req, res);
        } catch (const QueueFull& e) {
            res.set_header("Retry-After", "1");
            send_error(res, 429, e.what());
        } catch (const Error& e) {
            send_error(res, http_status_for(e.code()), e.what());
        } catch (const std::bad_alloc&) {
            send_error(res, 503, "out of memory");
        } catch (const std::exception& e) {
            send_error(res, 500, str("internal error: ", e.what()));
        }
    };
}

JobStatus run_sync(ServerContext& c, const ParsedRequest& pr, const std::string& kind) {
    JobRequest jr;
    jr.model = pr.model ? c.store.resolve(*pr.model) : c.store.default_model();
    jr.params = pr.params;
    jr.kind = kind;
    const std::string id = c.queue.submit(std::move(jr));
    std::optional<JobStatus> st = c.queue.wait_finished(id);
    c.queue.forget(id);
    NUANCE_CHECK_CODE(st.has_value(), Internal, "job ", id, " vanished");
    return *st;
}

std::string png_b64(const JobImage& img) { return base64_encode(img.png); }

std::string iso_timestamp_compact(double unix_seconds) {
    const std::time_t t = (std::time_t)unix_seconds;
    std::tm tm{};
    localtime_r(&t, &tm);
    char buf[32];
    std::strftime(buf, sizeof buf, "%Y%m%d%H%M%S", &tm);
    return buf;
}

namespace {

std::shared_ptr<const EmbeddingLibrary> embedding_library(const ServerOptions& o) {
    if (!o.embedding_dir.empty()) return EmbeddingLibrary::scan(o.embedding_dir);
    if (!o.models_dir.empty() && is_directory(o.models_dir + "/embeddings"))
        return EmbeddingLibrary::scan(o.models_dir + "/embeddings");
    return nullptr;
}

}  // namespace

Server::Impl::Impl(ServerOptions o)
    : opt(std::move(o)), store(opt.model, opt.models_dir), outputs(opt.output_dir), loras(opt.lora_dir),
      embeddings(embedding_library(opt)),
      queue(store, [&] {
          QueueOptions q = opt.queue;
          if (!q.logger) q.logger = opt.logger;
          q.defaults = &defaults;
          q.outputs = &outputs;
          q.loras = &loras;
          q.embeddings = embeddings;
          q.max_side = opt.limits.max_side;
          q.max_pixels = opt.limits.max_pixels;
          q.max_steps = opt.limits.max_steps;
          return q;
      }()) {}

Server::Server(ServerOptions o) : impl_(std::make_unique<Impl>(std::move(o))) {
    Impl& c = *impl_;
    httplib::Server& s = c.http;
    NUANCE_CHECK(c.opt.http_threads >= 1 && c.opt.http_threads <= kMaxHttpThreads, "http_threads must be in 1..",
                 kMaxHttpThreads, ", got ", c.opt.http_threads);
    NUANCE_CHECK(c.opt.max_body_bytes >= 1, "max_body_bytes must be >= 1");
    const int threads = std::max(4, c.opt.http_threads);
    s.new_task_queue = [threads] { return new httplib::ThreadPool((size_t)threads); };
    s.set_payload_max_length(c.opt.max_body_bytes);
    // Timeouts and keep-alive are HttpLimits' (http_conn.h): HttpServer runs its own connection loop.
    // SO_REUSEADDR only: httplib's default also sets SO_REUSEPORT, which lets a second server bind the same port
    // and take half of the connections.
    s.set_socket_options([](socket_t sock) {
        int yes = 1;
        setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
    });
    c.http.limits = c.opt.http;
    c.http.limits.max_body_bytes = c.opt.max_body_bytes;
    c.http.error_body = error_json;
    // Before any body is read: an unauthenticated request is answered 401 and its body never read.
    c.http.check_request = [&c](httplib::Request& req, ConnState& st) {
        if (is_public_path(req.path) || authorized(req, c.opt.api_key)) return;
        st.reject(401, "missing or wrong API key: send 'Authorization: Bearer <key>' (or 'X-API-Key: <key>')");
    };
    s.set_pre_routing_handler([&c](const httplib::Request& req, httplib::Response& res) {
        const ConnState* st = current_connection();
        if (st && st->reject_status != 0) {
            if (st->reject_status == 401) res.set_header("WWW-Authenticate", "Bearer");
            send_error(res, st->reject_status, st->reject_message);
            return httplib::Server::HandlerResponse::Handled;
        }
        if (is_public_path(req.path) || authorized(req, c.opt.api_key)) return httplib::Server::HandlerResponse::Unhandled;
        res.set_header("WWW-Authenticate", "Bearer");
        send_error(res, 401, "missing or wrong API key: send 'Authorization: Bearer <key>' (or 'X-API-Key: <key>')");
        return httplib::Server::HandlerResponse::Handled;
    });
    // Called for every response >= 400: fill the body only where a handler did not (unknown route, 413, ...).
    s.set_error_handler(httplib::Server::HandlerWithResponse([](const httplib::Request& req, httplib::Response& res) {
        if (!res.body.empty()) return httplib::Server::HandlerResponse::Unhandled;
        if (const ConnState* st = current_connection(); st && st->reject_status != 0) {  // e.g. a body over the limit
            send_error(res, st->reject_status, st->reject_message);
            return httplib::Server::HandlerResponse::Handled;
        }
        std::string msg;
        if (res.status == 404) msg = str("no route ", req.method, " ", req.path);
        else if (res.status == 413) msg = "the request body is over this server's size limit";
        else if (res.status == 416) msg = str("the Range '", req.get_header_value("Range").substr(0, 60), "' is not satisfiable");
        else if (res.status == 400) msg = str("malformed request (", req.method.empty() ? "request line" : "headers or body", ")");
        else msg = str("HTTP ", res.status, " for ", req.method, " ", req.path);
        send_error(res, res.status, msg);
        return httplib::Server::HandlerResponse::Handled;
    }));
    s.set_exception_handler([](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
        try {
            if (ep) std::rethrow_exception(ep);
        } catch (const std::exception& e) {
            send_error(res, 500, str("internal error: ", e.what()));
            return;
        } catch (...) {
        }
        send_error(res, 500, "internal error");
    });
    if (c.opt.logger) {
        s.set_logger([&c](const httplib::Request& req, const httplib::Response& res) {
            c.opt.logger->debug(req.method, " ", req.path, " -> ", res.status);
        });
    }
    add_sdapi_routes(c);
    add_openai_routes(c);
    add_job_routes(c);
    add_web_routes(c);
    add_defaults_routes(c);
    add_controlnet_routes(c);
}

Server::~Server() { stop(); }

int Server::bind() {
    Impl& c = *impl_;
    errno = 0;
    if (c.opt.port == 0) {
        c.port = c.http.bind_to_any_port(c.opt.host);
        NUANCE_CHECK_CODE(c.port > 0, Io, "cannot listen on ", c.opt.host, " (any port): ",
                          errno ? std::strerror(errno) : "not an address of this machine");
    } else {
        const bool ok = c.http.bind_to_port(c.opt.host, c.opt.port);
        const int e = errno;
        NUANCE_CHECK_CODE(ok, Io, "cannot listen on ", c.opt.host, ":", c.opt.port, ": ",
                          e == EADDRINUSE ? "address in use (is another server running there?)"
                          : e ? std::strerror(e) : "not an address of this machine");
        c.port = c.opt.port;
    }
    c.http.raise_backlog(SOMAXCONN);
    c.bound = true;
    return c.port;
}

void Server::run() {
    Impl& c = *impl_;
    if (!c.bound) bind();
    if (c.stopping) return;
    c.http.listen_after_bind();
}

void Server::stop() {
    Impl& c = *impl_;
    if (c.stopping.exchange(true)) return;
    c.queue.stop();  // releases handlers waiting on jobs, so the HTTP pool can drain
    c.http.stop();
}

int Server::port() const { return impl_->port; }
JobQueue& Server::queue() { return impl_->queue; }
ModelStore& Server::models() { return impl_->store; }

}  // namespace nuance::server
