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

const char* file_kind(mode_t m) {
    if (S_ISDIR(m)) return "a directory";
    if (S_ISFIFO(m)) return "a FIFO";
    if (S_ISSOCK(m)) return "a socket";
    if (S_ISCHR(m)) return "a character device";
    if (S_ISBLK(m)) return "a block device";
    return "not a regular file";
}

[[noreturn]] void fail_errno(int e, const std::string& path, const char* what) {
    if (e == ENOENT) fail(ErrorCode::NotFound, what, " '", path, "' does not exist");
    if (e == ELOOP) fail(ErrorCode::InvalidArgument, what, " '", path, "': too many levels of symbolic links");
    if (e == ENOTDIR) fail(ErrorCode::NotFound, what, " '", path, "' does not exist (a parent is not a directory)");
    fail(ErrorCode::Io, "cannot open ", what, " '", path, "': ", std::strerror(e));
}

[[noreturn]] void fail_kind(mode_t m, const std::string& path, const char* what) {
    if (S_ISDIR(m)) fail(ErrorCode::InvalidArgument, what, " '", path, "' is a directory, expected a file");
    fail(ErrorCode::InvalidArgument, what, " '", path, "' is not a regular file (it is ", file_kind(m), ")");
}

class Fd {
public:
    explicit Fd(int fd) : fd_(fd) {}
    ~Fd() { if (fd_ >= 0) ::close(fd_); }
    int get() const { return fd_; }
    Fd(const Fd&) = delete;
    Fd& operator=(const Fd&) = delete;

private:
    int fd_;
};
}  // namespace

void require_regular_file(const std::string& path, const char* what) {
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) fail_errno(errno, path, what);
    if (!S_ISREG(st.st_mode)) fail_kind(st.st_mode, path, what);
}

int open_regular_file(const std::string& path, const char* what) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    if (fd < 0) fail_errno(errno, path, what);
    struct stat st {};
    if (::fstat(fd, &st) != 0) {
        const int e = errno;
        ::close(fd);
        fail(ErrorCode::Io, "cannot stat ", what, " '", path, "': ", std::strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        ::close(fd);
        fail_kind(st.st_mode, path, what);
    }
    return fd;
}

std::string read_file_prefix(const std::string& path, size_t n) {
    int fd = -1;
    try {
        fd = open_regular_file(path, "file");
    } catch (const Error&) {
        return "";
    }
    const Fd guard(fd);
    std::string s(n, '\0');
    size_t got = 0;
    while (got < n) {
        const ssize_t r = ::read(fd, s.data() + got, n - got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        got += (size_t)r;
    }
    s.resize(got);
    return s;
}

std::string read_small_file(const std::string& path, size_t max_bytes, const char* what) {
    const Fd fd(open_regular_file(path, what));
    struct stat st {};
    NUANCE_CHECK_CODE(::fstat(fd.get(), &st) == 0, Io, "cannot stat ", what, " '", path, "'");
    NUANCE_CHECK((uint64_t)st.st_size <= max_bytes, what, " '", path, "' is ", (uint64_t)st.st_size,
                 " bytes (at most ", max_bytes, " are accepted)");
    std::string s((size_t)st.st_size, '\0');
    size_t got = 0;
    while (got < s.size()) {
        const ssize_t r = ::read(fd.get(), s.data() + got, s.size() - got);
        if (r < 0 && errno == EINTR) continue;
        NUANCE_CHECK_CODE(r >= 0, Io, "cannot read ", what, " '", path, "': ", std::strerror(errno));
        if (r == 0) break;  // shrank while we read: take what is there
        got += (size_t)r;
    }
    s.resize(got);
    return s;
}

std::shared_ptr<Storage> map_file(const std::string& path) {
    const Fd fd(open_regular_file(path, "file"));
    struct stat st {};
    NUANCE_CHECK_CODE(::fstat(fd.get(), &st) == 0, Io, "cannot stat '", path, "'");
    auto m = std::make_shared<Mapping>();
    m->len = (size_t)st.st_size;
    if (m->len > 0) {
        m->addr = ::mmap(nullptr, m->len, PROT_READ, MAP_PRIVATE, fd.get(), 0);
        if (m->addr == MAP_FAILED) {
            m->addr = nullptr;
            const int e = errno;
            fail(ErrorCode::Io, "cannot mmap '", path, "': ", std::strerror(e));
        }
    }
    return Storage::wrap(m->addr, m->len, m, /*file_backed=*/true);
}

}  // namespace nuance
