#include "core/logger.h"

#include <cstdio>

namespace nuance {
void Logger::log(LogLevel l, const std::string& msg) const {
    if (l < min_) return;
    if (sink_) { sink_(l, msg); return; }
    static const char* names[] = {"debug", "info", "warn", "error"};
    std::fprintf(stderr, "[%s] %s\n", names[static_cast<int>(l)], msg.c_str());
}
}  // namespace nuance
