#include "io/atomic_file.h"

#include <cerrno>
#include <cstring>
#include <unistd.h>

#include "core/error.h"

namespace nuance {

void write_file_atomic(const std::string& path, const std::function<bool(FILE*)>& write) {
    const std::string tmp = path + ".tmp." + std::to_string(::getpid());
    FILE* f = std::fopen(tmp.c_str(), "wb");
    if (!f) fail(ErrorCode::Io, "cannot write '", tmp, "': ", std::strerror(errno));
    errno = 0;
    bool ok = write(f);
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

}  // namespace nuance
