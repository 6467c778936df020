#include "server.h"

#include <ctime>

#include "base64.h"
#include "http_util.h"

namespace nuance::server {

namespace {

const char* error_type(int status) {
    switch (status) {
        case 400: return "invalid_request_error";
        case 401: return "authentication_error";
        case 404: return "not_found_error";
        case 409: return "conflict_error";
        case 413: return "payload_too_large";
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

void send_json(httplib::Response& res, int status, const json& body) {
    res.status = status;
    res.set_content(body.dump(-1, ' ', false, json::error_handler_t::replace), "application/json");
}

void send_error(httplib::Response& res, int status, const std::string& message) {
    json e = {{"error", {{"message", message}, {"type", error_type(status)}, {"code", status}}}, {"detail", message}};
    send_json(res, status, e);
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

Server::Impl::Impl(ServerOptions o)
    : opt(std::move(o)), store(opt.model, opt.models_dir), queue(store, [&] {
          QueueOptions q = opt.queue;
          if (!q.logger) q.logger = opt.logger;
          return q;
      }()) {}

Server::Server(ServerOptions o) : impl_(std::make_unique<Impl>(std::move(o))) {
    Impl& c = *impl_;
    httplib::Server& s = c.http;
    const int threads = std::max(4, c.opt.http_threads);
    s.new_task_queue = [threads] { return new httplib::ThreadPool((size_t)threads); };
    s.set_payload_max_length(c.opt.max_body_bytes);
    s.set_keep_alive_max_count(1000);
    s.set_keep_alive_timeout(5);
    s.set_read_timeout(30);
    s.set_write_timeout(60);
    s.set_pre_routing_handler([&c](const httplib::Request& req, httplib::Response& res) {
        if (is_public_path(req.path) || authorized(req, c.opt.api_key)) return httplib::Server::HandlerResponse::Unhandled;
        res.set_header("WWW-Authenticate", "Bearer");
        send_error(res, 401, "missing or wrong API key: send 'Authorization: Bearer <key>' (or 'X-API-Key: <key>')");
        return httplib::Server::HandlerResponse::Handled;
    });
    // Called for every response >= 400: fill the body only where a handler did not (unknown route, 413, ...).
    s.set_error_handler(httplib::Server::HandlerWithResponse([](const httplib::Request& req, httplib::Response& res) {
        if (!res.body.empty()) return httplib::Server::HandlerResponse::Unhandled;
        std::string msg;
        if (res.status == 404) msg = str("no route ", req.method, " ", req.path);
        else if (res.status == 413) msg = "the request body is over this server's size limit";
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
}

Server::~Server() { stop(); }

int Server::bind() {
    Impl& c = *impl_;
    if (c.opt.port == 0) {
        c.port = c.http.bind_to_any_port(c.opt.host);
        NUANCE_CHECK_CODE(c.port > 0, Io, "cannot listen on ", c.opt.host, " (any port)");
    } else {
        NUANCE_CHECK_CODE(c.http.bind_to_port(c.opt.host, c.opt.port), Io, "cannot listen on ", c.opt.host, ":",
                          c.opt.port, " (address in use, or not an address of this machine)");
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
