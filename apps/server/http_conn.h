// The server's connection loop. httplib 0.11 (Debian 12's libcpp-httplib, compiled) reads requests without bounds:
// any number of headers, request lines and chunked bodies of any size, gzip/brotli bodies inflated with no limit,
// a POST without Content-Length read until the peer closes, and multi-range answers of any size. HttpServer
// replaces its per-connection loop (process_and_close_socket, virtual) with one that
//   - reads each request head (request line + headers) into a bounded buffer first: at most `max_head_bytes`,
//     `max_header_lines` headers, `head_timeout_ms` in all; over a limit, it answers 414/431/408 itself and closes;
//   - gives each body an overall deadline (HttpLimits::body_deadline_ms): a client trickling bytes just under the
//     per-read timeout (slowloris) is answered 408 and closed;
//   - checks the head before anything reads the body (framing: Content-Length, Transfer-Encoding,
//     Content-Encoding; then the server's own check, e.g. the API key): a refused request is answered at once,
//     its body is never read, and the connection closes;
//   - counts body bytes, so a chunked body cannot pass `max_body_bytes` (+ 64 KiB of chunk framing);
//   - gives memory back to the system after large bodies (malloc_trim).
// Each connection runs on one pool thread; the handlers see its ConnState through current_connection().
#pragma once
#include <httplib.h>

#include <atomic>
#include <cstddef>
#include <functional>
#include <string>

#include "http_limits.h"

namespace nuance::server {

// The request being served on this thread's connection.
struct ConnState {
    int reject_status = 0;       // != 0: answer with this status and message; the body is not read
    std::string reject_message;
    bool close = false;          // close the connection after this answer
    bool dropped_range = false;  // a multi-range (or oversize) Range header was dropped: the answer is the whole body
    size_t body_bytes = 0;       // body bytes read so far
    uint64_t body_length = 0;    // the Content-Length (0 for a chunked body: its deadline follows body_bytes)
    size_t drain_bytes = 0;      // after a refusal: body bytes to read and drop before closing (bounded, see below)
    void reject(int status, std::string message) {
        if (reject_status == 0) {
            reject_status = status;
            reject_message = std::move(message);
        }
        close = true;
    }
};

// The calling thread's connection state; nullptr outside HttpServer's connection threads.
ConnState* current_connection();

// "HTTP/1.1 <status> <reason>" reason phrases for the statuses this server writes itself.
const char* http_reason(int status);

class HttpServer : public httplib::Server {
public:
    HttpLimits limits;
    // Called for every request head after the framing checks passed, before routing reads a body: may call
    // st.reject(status, message) (e.g. a missing API key).
    std::function<void(httplib::Request&, ConnState&)> check_request;
    // The JSON error body for `status` and `message` (the same shape as every other error answer).
    std::function<std::string(int, const std::string&)> error_body;

    // httplib listens with a backlog of 5: bursts of new connections then wait for SYN retransmits (~1 s).
    // listen() again on the bound socket raises it (Linux adjusts the backlog of a listening socket).
    void raise_backlog(int n);

private:
    bool process_and_close_socket(socket_t sock) override;
    void check_framing(httplib::Request& req, ConnState& st) const;
};

}  // namespace nuance::server
