// Running `mpirun -np N nuance ...` from a test (tests/dist): a shell with its output and time, and the launcher
// (a skip when nuance was built without MPI or no mpiexec is on PATH; a failure under CI).
#pragma once
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "dist/comm.h"

namespace nuance {

struct Shell {
    int code = -1;
    std::string out;
    double seconds = 0;
};

inline Shell run_shell(const std::string& cmd) {
    Shell r;
    const auto t0 = std::chrono::steady_clock::now();
    FILE* p = popen((cmd + " 2>&1").c_str(), "r");
    if (!p) return r;
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, p)) > 0) r.out.append(buf, n);
    const int st = pclose(p);
    r.code = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return r;
}

// mpirun/mpiexec from PATH when nuance was built with MPI, else "" (a skip; a failure under CI, where
// scripts/install-deps.sh installs Open MPI).
inline std::string mpirun_or_skip() {
    if (!dist::built_with_mpi()) return "";
    const Shell which = run_shell("command -v mpiexec || command -v mpirun");
    if (which.code != 0 || which.out.empty()) return "";
    const std::string exe = which.out.substr(0, which.out.find('\n'));
    // Root in containers and CI; --oversubscribe: 2 ranks on however few cores; loopback TCP + shared memory.
    return "env OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 " + exe + " --oversubscribe ";
}

#define REQUIRE_MPI(var)                                                                                          \
    const std::string var = mpirun_or_skip();                                                                     \
    if (var.empty()) {                                                                                            \
        if (std::getenv("CI")) FAIL() << "no MPI: nuance built without it, or no mpiexec (apt-get install "     \
                                         "libopenmpi-dev openmpi-bin)";                                         \
        GTEST_SKIP() << "no MPI (nuance built without it, or no mpiexec on PATH)";                          \
    }

}  // namespace nuance
