#include "core/op_stats.h"

namespace nuance {

namespace {
thread_local OpStats* g_stats = nullptr;      // per thread, installed only by OpStatsScope
thread_local OpProfile* g_profile = nullptr;  // per thread, installed only by OpProfileScope
thread_local OpTimer* g_timer = nullptr;      // innermost running OpTimer of this thread
}  // namespace

OpStats* current_op_stats() { return g_stats; }

OpStatsScope::OpStatsScope(OpStats& s) : prev_(g_stats) { g_stats = &s; }
OpStatsScope::~OpStatsScope() { g_stats = prev_; }

OpProfile* current_op_profile() { return g_profile; }
OpTimer* current_op_timer() { return g_timer; }

OpProfileScope::OpProfileScope(OpProfile& p) : prev_(g_profile) { g_profile = &p; }
OpProfileScope::~OpProfileScope() { g_profile = prev_; }

void OpTimer::start(const char* name) {
    name_ = name;
    parent_ = g_timer;
    g_timer = this;
    t0_ = std::chrono::steady_clock::now();
}

void OpTimer::stop() {
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0_).count();
    g_timer = parent_;
    if (parent_) parent_->child_s_ += s;
    if (OpProfile* p = g_profile) {
        OpProfileEntry& e = (*p)[name_];
        e.calls += 1;
        e.seconds += s - child_s_;
        e.flops += flops_;
    }
}

}  // namespace nuance
