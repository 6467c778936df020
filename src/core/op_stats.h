// Counting the work the dense kernels do (FLOPs), for `nuance bench`: a counter installed for a scope on the current
// thread; kernels add to it when one is installed. Counting is off (a null pointer test) everywhere else.
// The op profile (`nuance bench --profile`) works the same way: ops open an OpTimer named for themselves, which
// records wall time (exclusive of nested ops) and counted FLOPs per name while an OpProfileScope is installed.
#pragma once
#include <chrono>
#include <cstdint>
#include <map>
#include <string>

namespace nuance {

struct OpStats {
    double flops = 0;  // multiply-adds count as 2
    int64_t calls = 0;
};

// The counter of the current thread, or nullptr.
OpStats* current_op_stats();

class OpStatsScope {
public:
    explicit OpStatsScope(OpStats& s);
    ~OpStatsScope();
    OpStatsScope(const OpStatsScope&) = delete;
    OpStatsScope& operator=(const OpStatsScope&) = delete;

private:
    OpStats* prev_;
};

struct OpProfileEntry {
    int64_t calls = 0;
    double seconds = 0;  // exclusive: time in nested ops is theirs
    double flops = 0;
};
using OpProfile = std::map<std::string, OpProfileEntry>;

OpProfile* current_op_profile();

// The profile as text, one line per op, slowest first, then the time outside any op and the total:
// `profile part=<part> op=<op> calls=<n> ms=<ms> share=<%> [gflops_per_s=<g>]` (what `nuance bench --profile` and
// `nuance train --profile` print). `total_s` is the wall time the profile covered; `divide` averages over that many
// runs (the figures are per run).
std::string format_op_profile(const OpProfile& prof, double total_s, const std::string& part, int64_t divide = 1);

class OpProfileScope {
public:
    explicit OpProfileScope(OpProfile& p);
    ~OpProfileScope();
    OpProfileScope(const OpProfileScope&) = delete;
    OpProfileScope& operator=(const OpProfileScope&) = delete;

private:
    OpProfile* prev_;
};

// Times the enclosing op under `name` (a string literal) when a profile is installed on this thread.
class OpTimer {
public:
    explicit OpTimer(const char* name) {
        if (current_op_profile()) start(name);
    }
    ~OpTimer() {
        if (name_) stop();
    }
    OpTimer(const OpTimer&) = delete;
    OpTimer& operator=(const OpTimer&) = delete;
    void add_flops(double f) { flops_ += f; }

private:
    void start(const char* name);
    void stop();
    const char* name_ = nullptr;
    OpTimer* parent_ = nullptr;
    std::chrono::steady_clock::time_point t0_;
    double child_s_ = 0, flops_ = 0;
};

OpTimer* current_op_timer();

inline void count_flops(double flops) {
    if (OpStats* s = current_op_stats()) {
        s->flops += flops;
        s->calls += 1;
    }
    if (OpTimer* t = current_op_timer()) t->add_flops(flops);
}

}  // namespace nuance
