#include "core/op_stats.h"

namespace nuance {

namespace {
thread_local OpStats* g_stats = nullptr;  // per thread, installed only by OpStatsScope
}

OpStats* current_op_stats() { return g_stats; }

OpStatsScope::OpStatsScope(OpStats& s) : prev_(g_stats) { g_stats = &s; }
OpStatsScope::~OpStatsScope() { g_stats = prev_; }

}  // namespace nuance
