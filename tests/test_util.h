// Helpers shared by the GoogleTest files (include as "../test_util.h" from tests/<area>/).
#pragma once
#include <array>
#include <cstdio>
#include <functional>
#include <string>
#include <sys/resource.h>
#include <sys/wait.h>

#include <csignal>

#include "core/error.h"

namespace nuance::test {

// A full disk for this process while in scope: files may not grow past `bytes` (writes fail with EFBIG; SIGXFSZ is
// ignored so the process is not killed). The previous limit and signal handler come back at scope exit.
class FileSizeLimit {
public:
    explicit FileSizeLimit(rlim_t bytes) {
        getrlimit(RLIMIT_FSIZE, &old_);
        prev_ = std::signal(SIGXFSZ, SIG_IGN);
        struct rlimit lim = old_;
        lim.rlim_cur = bytes;
        setrlimit(RLIMIT_FSIZE, &lim);
    }
    ~FileSizeLimit() {
        setrlimit(RLIMIT_FSIZE, &old_);
        std::signal(SIGXFSZ, prev_);
    }
    FileSizeLimit(const FileSizeLimit&) = delete;
    FileSizeLimit& operator=(const FileSizeLimit&) = delete;

private:
    struct rlimit old_ {};
    void (*prev_)(int) = SIG_DFL;
};

// The message of the nuance::Error that `f` throws, or "(no error)" when it throws none.
inline std::string error_of(const std::function<void()>& f) {
    try {
        f();
    } catch (const Error& e) {
        return e.what();
    }
    return "(no error)";
}

#ifdef NUANCE_CLI_PATH
// Runs the built `nuance` binary with `args` (shell syntax), capturing stdout + stderr.
struct CliRun {
    int code = -1;
    std::string out;  // stdout + stderr
};

// `env`: assignments put before the command, e.g. "NUANCE_DEFAULT_MODEL=/x ".
inline CliRun run_cli(const std::string& args, const std::string& env = "") {
    CliRun r;
    const std::string cmd = env + std::string(NUANCE_CLI_PATH) + " " + args + " 2>&1";
    FILE* p = popen(cmd.c_str(), "r");
    if (!p) return r;
    std::array<char, 4096> buf;
    size_t n;
    while ((n = fread(buf.data(), 1, buf.size(), p)) > 0) r.out.append(buf.data(), n);
    const int st = pclose(p);
    r.code = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    return r;
}
#endif

}  // namespace nuance::test
