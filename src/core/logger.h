// Logger: a per-context sink for messages (design.md §4: no process-global callbacks).
#pragma once
#include <functional>
#include <string>

#include "core/error.h"

namespace nuance {

enum class LogLevel { Debug = 0, Info = 1, Warn = 2, Error = 3 };

class Logger {
public:
    using Sink = std::function<void(LogLevel, const std::string&)>;
    Logger() = default;  // default sink: stderr, Info and above
    explicit Logger(Sink sink, LogLevel min = LogLevel::Info) : sink_(std::move(sink)), min_(min) {}
    void set_level(LogLevel l) { min_ = l; }
    LogLevel level() const { return min_; }
    void log(LogLevel l, const std::string& msg) const;
    template <class... A> void debug(const A&... a) const { if (min_ <= LogLevel::Debug) log(LogLevel::Debug, str(a...)); }
    template <class... A> void info(const A&... a) const { if (min_ <= LogLevel::Info) log(LogLevel::Info, str(a...)); }
    template <class... A> void warn(const A&... a) const { if (min_ <= LogLevel::Warn) log(LogLevel::Warn, str(a...)); }

private:
    Sink sink_;
    LogLevel min_ = LogLevel::Info;
};

}  // namespace nuance
