#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/weight_file.h"

namespace nuance {

namespace {
struct Mapping {
    void* addr = nullptr;
    size_t len = 0;
    ~Mapping() { if (addr && len) munmap(addr, len); }
};
}  // namespace

std::shared_ptr<Storage> map_file(const std::string& path) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        const int e = errno;
        fail(e == ENOENT ? ErrorCode::NotFound : ErrorCode::Io, "cannot open '", path, "': ", std::strerror(e));
    }
    struct stat st {};
    if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        ::close(fd);
        fail(ErrorCode::Io, "'", path, "' is not a regular file");
    }
    auto m = std::make_shared<Mapping>();
    m->len = (size_t)st.st_size;
    if (m->len > 0) {
        m->addr = ::mmap(nullptr, m->len, PROT_READ, MAP_PRIVATE, fd, 0);
        if (m->addr == MAP_FAILED) {
            m->addr = nullptr;
            const int e = errno;
            ::close(fd);
            fail(ErrorCode::Io, "cannot mmap '", path, "': ", std::strerror(e));
        }
    }
    ::close(fd);
    return Storage::wrap(m->addr, m->len, m, /*file_backed=*/true);
}

}  // namespace nuance
