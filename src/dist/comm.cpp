#include "dist/comm.h"

#include <algorithm>
#include <chrono>
#include <climits>
#include <cstdint>
#include <cstring>
#include <cstdlib>
#include <mutex>

#include "core/error.h"

#ifdef NUANCE_HAVE_MPI
#include <mpi.h>
#endif

namespace nuance::dist {

namespace {

const char* env(const char* name) {
    const char* v = std::getenv(name);
    return v && *v ? v : nullptr;
}

CommStats g_stats;

struct Timer {
    std::chrono::steady_clock::time_point t0 = std::chrono::steady_clock::now();
    ~Timer() {
        g_stats.seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        ++g_stats.calls;
    }
};

#ifdef NUANCE_HAVE_MPI
std::string mpi_error_text(int code) {
    char buf[MPI_MAX_ERROR_STRING];
    int len = 0;
    if (MPI_Error_string(code, buf, &len) != MPI_SUCCESS) return "MPI error " + std::to_string(code);
    return std::string(buf, (size_t)len);
}

void check_mpi(int rc, const char* what) {
    if (rc != MPI_SUCCESS) fail(ErrorCode::Io, "MPI ", what, " failed: ", mpi_error_text(rc));
}

void finalize_at_exit() {
    int init = 0, fin = 0;
    MPI_Initialized(&init);
    MPI_Finalized(&fin);
    if (init && !fin) MPI_Finalize();
}
#endif

WorldInfo make_world() {
    WorldInfo w;
    w.description = "single process";
    if (!launched_by_mpi_launcher()) return w;
#ifdef NUANCE_HAVE_MPI
    int provided = 0;
    check_mpi(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided), "MPI_Init_thread");
    std::atexit(finalize_at_exit);
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    check_mpi(MPI_Comm_rank(MPI_COMM_WORLD, &w.rank), "MPI_Comm_rank");
    check_mpi(MPI_Comm_size(MPI_COMM_WORLD, &w.size), "MPI_Comm_size");
    w.mpi = true;
    char ver[MPI_MAX_LIBRARY_VERSION_STRING];
    int len = 0;
    std::string lib = "MPI";
    if (MPI_Get_library_version(ver, &len) == MPI_SUCCESS) {
        lib.assign(ver, (size_t)len);
        const size_t cut = lib.find_first_of(",\n");
        if (cut != std::string::npos) lib.resize(cut);
    }
    w.description = lib + ", " + std::to_string(w.size) + (w.size == 1 ? " rank" : " ranks");
#else
    const int n = launcher_world_size();
    NUANCE_CHECK_CODE(n <= 1, Unsupported, "this process was started by an MPI launcher with ", n,
                      " ranks, but this nuance was built without MPI (install libopenmpi-dev and rebuild; "
                      "cmake -DNUANCE_MPI=ON)");
#endif
    return w;
}

}  // namespace

bool built_with_mpi() {
#ifdef NUANCE_HAVE_MPI
    return true;
#else
    return false;
#endif
}

int launcher_world_size() {
    for (const char* name : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE", "MPI_LOCALNRANKS"}) {
        const char* v = env(name);
        if (!v) continue;
        char* end = nullptr;
        const long n = std::strtol(v, &end, 10);
        if (end && *end == '\0' && n >= 1 && n <= (1 << 20)) return (int)n;
    }
    return 1;
}

bool launched_by_mpi_launcher() {
    return env("OMPI_COMM_WORLD_SIZE") || env("PMI_SIZE") || env("PMIX_RANK") || env("PMI_RANK");
}

const WorldInfo& world() {
    static std::once_flag once;
    static WorldInfo w;
    std::call_once(once, [] { w = make_world(); });
    return w;
}

void allreduce_sum(float* data, size_t n, size_t bucket_elems) {
    if (world().size == 1 || n == 0) return;
#ifdef NUANCE_HAVE_MPI
    Timer t;
    bucket_elems = std::min<size_t>(std::max<size_t>(bucket_elems, 1), (size_t)INT_MAX);
    for (size_t off = 0; off < n; off += bucket_elems) {
        const size_t len = std::min(bucket_elems, n - off);
        check_mpi(MPI_Allreduce(MPI_IN_PLACE, data + off, (int)len, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD),
                  "MPI_Allreduce (gradients)");
        g_stats.bytes += len * sizeof(float);
    }
#endif
}

void allreduce_sum(double* data, size_t n) {
    if (world().size == 1 || n == 0) return;
#ifdef NUANCE_HAVE_MPI
    Timer t;
    for (size_t off = 0; off < n; off += (size_t)INT_MAX) {
        const size_t len = std::min((size_t)INT_MAX, n - off);
        check_mpi(MPI_Allreduce(MPI_IN_PLACE, data + off, (int)len, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD),
                  "MPI_Allreduce");
        g_stats.bytes += len * sizeof(double);
    }
#endif
}

void broadcast(void* data, size_t bytes, int root) {
    if (world().size == 1 || bytes == 0) return;
    NUANCE_CHECK(root >= 0 && root < world().size, "broadcast: root ", root, " outside 0..", world().size - 1);
#ifdef NUANCE_HAVE_MPI
    Timer t;
    char* p = static_cast<char*>(data);
    for (size_t off = 0; off < bytes; off += (size_t)INT_MAX) {
        const size_t len = std::min((size_t)INT_MAX, bytes - off);
        check_mpi(MPI_Bcast(p + off, (int)len, MPI_BYTE, root, MPI_COMM_WORLD), "MPI_Bcast");
        g_stats.bytes += len;
    }
#endif
}

void barrier() {
    if (world().size == 1) return;
#ifdef NUANCE_HAVE_MPI
    Timer t;
    check_mpi(MPI_Barrier(MPI_COMM_WORLD), "MPI_Barrier");
#endif
}

std::vector<uint64_t> allgather(uint64_t value) {
    std::vector<uint64_t> out((size_t)world().size, value);
    if (world().size == 1) return out;
#ifdef NUANCE_HAVE_MPI
    Timer t;
    check_mpi(MPI_Allgather(&value, 1, MPI_UINT64_T, out.data(), 1, MPI_UINT64_T, MPI_COMM_WORLD),
              "MPI_Allgather");
#endif
    return out;
}

std::vector<uint8_t> gather_bytes(const void* data, size_t bytes, int root) {
    const int n = world().size;
    NUANCE_CHECK(root >= 0 && root < n, "gather_bytes: root ", root, " outside 0..", n - 1);
    NUANCE_CHECK(bytes == 0 || data, "gather_bytes: no data for ", bytes, " bytes");
    const uint8_t* p = static_cast<const uint8_t*>(data);
    if (n == 1) return std::vector<uint8_t>(p, p + bytes);
    const std::vector<uint64_t> sizes = allgather((uint64_t)bytes);
    std::vector<uint8_t> out;
#ifdef NUANCE_HAVE_MPI
    Timer t;
    constexpr size_t kPiece = size_t(1) << 30;
    constexpr int kTag = 7317;
    if (world().rank != root) {
        for (size_t off = 0; off < bytes; off += kPiece) {
            const size_t len = std::min(kPiece, bytes - off);
            check_mpi(MPI_Send(p + off, (int)len, MPI_BYTE, root, kTag, MPI_COMM_WORLD), "MPI_Send (gather)");
            g_stats.bytes += len;
        }
        return out;
    }
    uint64_t total = 0;
    for (uint64_t s : sizes)
        NUANCE_CHECK(!__builtin_add_overflow(total, s, &total) && total <= (uint64_t)PTRDIFF_MAX,
                     "gather_bytes: the ranks' sizes overflow");
    out.resize((size_t)total);
    size_t at = 0;
    for (int r = 0; r < n; ++r) {
        const size_t len_r = (size_t)sizes[(size_t)r];
        if (r == root) {
            if (len_r) std::memcpy(out.data() + at, p, len_r);
        } else {
            for (size_t off = 0; off < len_r; off += kPiece) {
                const size_t len = std::min(kPiece, len_r - off);
                check_mpi(MPI_Recv(out.data() + at + off, (int)len, MPI_BYTE, r, kTag, MPI_COMM_WORLD,
                                   MPI_STATUS_IGNORE),
                          "MPI_Recv (gather)");
            }
        }
        at += len_r;
    }
#endif
    return out;
}

CommStats comm_stats() { return g_stats; }

Range shard(int64_t n, int parts, int index) {
    NUANCE_CHECK(parts >= 1 && index >= 0 && index < parts && n >= 0, "shard: index ", index, " of ", parts,
                 " parts of ", n);
    const int64_t base = n / parts, extra = n % parts;
    Range r;
    r.begin = index * base + std::min<int64_t>(index, extra);
    r.end = r.begin + base + (index < extra ? 1 : 0);
    return r;
}

}  // namespace nuance::dist
