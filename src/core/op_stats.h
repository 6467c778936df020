// Counting the work the dense kernels do (FLOPs), for `nuance bench`: a counter installed for a scope on the current
// thread; kernels add to it when one is installed. Counting is off (a null pointer test) everywhere else.
#pragma once
#include <cstdint>

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

inline void count_flops(double flops) {
    if (OpStats* s = current_op_stats()) {
        s->flops += flops;
        s->calls += 1;
    }
}

}  // namespace nuance
