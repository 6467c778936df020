// Helpers shared by the GoogleTest files (include as "../test_util.h" from tests/<area>/).
#pragma once
#include <array>
#include <cstdio>
#include <functional>
#include <string>
#include <sys/wait.h>

#include "core/error.h"

namespace nuance::test {

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
