// nuance::Error and the NUANCE_CHECK family: every failure a user, a file or a request can cause
// becomes an Error with a code and a message naming the thing and the values (design.md §3).
#pragma once
#include <cstdint>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace nuance {

enum class ErrorCode { InvalidArgument, NotFound, Unsupported, Io, OutOfMemory, Cancelled, Internal };

const char* error_code_name(ErrorCode c);

class Error : public std::runtime_error {
public:
    Error(ErrorCode code, const std::string& msg) : std::runtime_error(msg), code_(code) {}
    ErrorCode code() const { return code_; }

private:
    ErrorCode code_;
};

namespace detail {
template <class T>
void append(std::ostringstream& os, const T& v) { os << v; }
template <class T>
void append(std::ostringstream& os, const std::vector<T>& v) {
    os << '[';
    for (size_t i = 0; i < v.size(); ++i) os << (i ? ", " : "") << v[i];
    os << ']';
}
}  // namespace detail

// str("tensor '", name, "': expected ", shape_a, ", got ", shape_b); vectors print as [a, b, c].
template <class... Args>
std::string str(const Args&... args) {
    std::ostringstream os;
    (detail::append(os, args), ...);
    return os.str();
}

template <class... Args>
[[noreturn]] void fail(ErrorCode code, const Args&... args) { throw Error(code, str(args...)); }

}  // namespace nuance

// For anything a user, a file or a request can cause.
#define NUANCE_CHECK(cond, ...) \
    do { if (!(cond)) ::nuance::fail(::nuance::ErrorCode::InvalidArgument, __VA_ARGS__); } while (0)
#define NUANCE_CHECK_CODE(cond, code, ...) \
    do { if (!(cond)) ::nuance::fail(::nuance::ErrorCode::code, __VA_ARGS__); } while (0)
// Internal invariants: a failure here is our bug, reported as Internal (never abort()).
#define NUANCE_ASSERT(cond, ...) \
    do { if (!(cond)) ::nuance::fail(::nuance::ErrorCode::Internal, "internal: ", #cond, " ", ##__VA_ARGS__); } while (0)
