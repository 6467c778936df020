// The process group of a data-parallel run (issue 17): MPI's world when the process was started by mpirun/srun and
// nuance was built with MPI, else a world of one. Every collective is a no-op in a world of one, so single-process
// code paths stay bit-exact.
//
// Collectives throw nuance::Error naming the operation and MPI's message (MPI_ERRORS_RETURN is set on the world);
// a rank that dies makes Open MPI's runtime end the whole job, so the others never wait for it forever.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace nuance::dist {

struct WorldInfo {
    int rank = 0;
    int size = 1;
    bool mpi = false;          // true when MPI was initialised (launched by an MPI launcher, MPI built in)
    std::string description;   // "Open MPI v4.1.4, 2 ranks on 1 host(s)" / "single process"
};

// True when the environment says an MPI launcher started this process (OMPI_COMM_WORLD_SIZE, PMI_SIZE,
// PMIX_RANK or SLURM's PMI variables). Such a launch with more than one rank and no MPI in the build is an error.
bool launched_by_mpi_launcher();
int launcher_world_size();  // the size the launcher's environment names, 1 when none

// Initialises MPI once (idempotent, thread-safe); later calls return the same world. MPI is finalised at exit.
const WorldInfo& world();
inline int rank() { return world().rank; }
inline int size() { return world().size; }
inline bool is_root() { return world().rank == 0; }
bool built_with_mpi();

// Element-wise sum over all ranks, in place, in buckets of at most `bucket_elems` values (MPI counts are int).
// Every rank gets the same bytes (checked by check_replicas).
void allreduce_sum(float* data, size_t n, size_t bucket_elems = size_t(1) << 22);
void allreduce_sum(double* data, size_t n);
void broadcast(void* data, size_t bytes, int root);
void barrier();
// Every rank's `value`, in rank order.
std::vector<uint64_t> allgather(uint64_t value);
// Every rank's bytes (sizes may differ, empty allowed), concatenated in rank order on `root`; the other ranks get an
// empty vector. Sent point to point in pieces of at most 1 GiB (MPI counts are int), so any size works.
std::vector<uint8_t> gather_bytes(const void* data, size_t bytes, int root = 0);

// Communication counters of this process (for the training report).
struct CommStats {
    double seconds = 0;      // wall time inside collectives
    uint64_t bytes = 0;      // payload bytes all-reduced / broadcast by this rank
    uint64_t calls = 0;
};
CommStats comm_stats();

// The rank range of `n` items split into `parts` contiguous shards (sizes differ by at most one).
struct Range {
    int64_t begin = 0, end = 0;
};
Range shard(int64_t n, int parts, int index);

}  // namespace nuance::dist
