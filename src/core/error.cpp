#include "core/error.h"

namespace nuance {
const char* error_code_name(ErrorCode c) {
    switch (c) {
        case ErrorCode::InvalidArgument: return "invalid argument";
        case ErrorCode::NotFound: return "not found";
        case ErrorCode::Unsupported: return "unsupported";
        case ErrorCode::Io: return "I/O error";
        case ErrorCode::OutOfMemory: return "out of memory";
        case ErrorCode::Cancelled: return "cancelled";
        case ErrorCode::Internal: return "internal error";
    }
    return "error";
}
}  // namespace nuance
