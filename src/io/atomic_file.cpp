#include "io/atomic_file.h"

#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "core/error.h"

namespace nuance {

namespace {

constexpr const char* kTempTag = ".tmp.";

// The pid of a "<name>.tmp.<pid>" file name, or -1.
long temp_file_pid(const std::string& name) {
    const size_t at = name.rfind(kTempTag);
    if (at == std::string::npos || at == 0) return -1;
    const std::string digits = name.substr(at + std::strlen(kTempTag));
    if (digits.empty() || digits.size() > 9) return -1;  // Linux pids are < 2^22
    long pid = 0;
    for (char c : digits) {
        if (c < '0' || c > '9') return -1;
        pid = pid * 10 + (c - '0');
    }
    return pid > 0 ? pid : -1;
}

bool process_runs(long pid) { return ::kill((pid_t)pid, 0) == 0 || errno != ESRCH; }

}  // namespace

void write_file_atomic(const std::string& path, const std::function<bool(FILE*)>& write) {
    const std::string tmp = path + kTempTag + std::to_string(::getpid());
    FILE* f = std::fopen(tmp.c_str(), "wb");
    if (!f) fail(ErrorCode::Io, "cannot write '", tmp, "': ", std::strerror(errno));
    errno = 0;
    bool ok = false;
    try {
        ok = write(f);
    } catch (...) {  // a writer that throws (e.g. a tensor that fails its checks) leaves no temp file behind
        std::fclose(f);
        std::remove(tmp.c_str());
        throw;
    }
    ok = ok && std::fflush(f) == 0 && ::fsync(fileno(f)) == 0;
    const int err = errno;
    ok = (std::fclose(f) == 0) && ok;
    if (!ok) {
        std::remove(tmp.c_str());
        fail(ErrorCode::Io, "writing '", path, "' failed: ", std::strerror(err ? err : EIO));
    }
    if (std::rename(tmp.c_str(), path.c_str()) != 0) {
        const int e = errno;
        std::remove(tmp.c_str());
        fail(ErrorCode::Io, "cannot rename '", tmp, "' to '", path, "': ", std::strerror(e));
    }
}

std::vector<std::string> remove_stale_temp_files(const std::string& dir) {
    namespace fs = std::filesystem;
    std::vector<std::string> removed;
    std::error_code ec;
    fs::directory_iterator it(dir.empty() ? "." : dir, ec), end;
    const long self = (long)::getpid();
    for (size_t seen = 0; !ec && it != end && seen < 1000000; it.increment(ec), ++seen) {
        const long pid = temp_file_pid(it->path().filename().string());
        if (pid < 0 || pid == self || process_runs(pid)) continue;
        std::error_code ec2;
        if (ec2 || fs::is_directory(it->symlink_status(ec2))) continue;  // never a folder (a link is removed, not its target)
        if (fs::remove(it->path(), ec2) && !ec2) removed.push_back(it->path().string());
    }
    return removed;
}

}  // namespace nuance
