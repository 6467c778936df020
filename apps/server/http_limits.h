// Bounds on what one HTTP connection may send and how slowly (see http_conn.h). Its own header so that
// ServerOptions can carry them without pulling in httplib.
#pragma once
#include <cstddef>
#include <cstdint>

namespace nuance::server {

struct HttpLimits {
    size_t max_head_bytes = 64u << 10;       // request line + headers
    size_t max_header_lines = 100;           // header fields per request
    size_t max_body_bytes = 64u << 20;       // Content-Length limit; chunked bodies count their framing too
    int head_timeout_ms = 30000;             // the whole head must arrive within this
    int read_timeout_ms = 30000;             // body: longest wait for the next bytes
    // Body: the whole body must arrive within max(body_timeout_ms, length / body_min_bytes_per_s) of the head's
    // end (length: Content-Length; for a chunked body, the bytes received so far), so a client sending a byte just
    // before each read timeout cannot hold a connection thread forever (slowloris).
    int body_timeout_ms = 60000;
    size_t body_min_bytes_per_s = 64u << 10;
    int write_timeout_ms = 60000;
    int keep_alive_timeout_ms = 5000;        // idle time between requests on one connection
    size_t keep_alive_max = 1000;            // requests per connection
    // After a refused request the connection closes; first up to `drain_bytes` of its body (or, for a body over
    // the size limit, up to its announced length, at most 2 * max_body_bytes) are read and dropped within
    // `drain_timeout_ms`, so a client still sending reads the answer instead of a reset. Nothing is kept.
    size_t drain_bytes = 256u << 10;
    int drain_timeout_ms = 2000;
    size_t trim_after_body_bytes = 1u << 20; // malloc_trim(0) after a body this large
};

// The body deadline in ms after the head for a body of `length` bytes: max(body_timeout_ms, length / rate).
int64_t body_deadline_ms(const HttpLimits& lim, uint64_t length);

}  // namespace nuance::server
