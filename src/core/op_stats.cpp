#include "core/op_stats.h"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <vector>

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
        // A tensor copy is a helper, not an op of the model: it is charged to the op that made it ("copy in conv2d"),
        // so that the profile says which layout or dtype conversions are worth removing.
        const bool helper = parent_ && std::strcmp(name_, "copy") == 0;
        OpProfileEntry& e = helper ? (*p)[std::string(name_) + " in " + parent_->name_] : (*p)[name_];
        e.calls += 1;
        e.seconds += s - child_s_;
        e.flops += flops_;
    }
}

std::string format_op_profile(const OpProfile& prof, double total_s, const std::string& part, int64_t divide) {
    const double d = (double)std::max<int64_t>(1, divide);
    const double total = total_s > 0 ? total_s : 1e-30;
    std::vector<std::pair<std::string, OpProfileEntry>> rows(prof.begin(), prof.end());
    std::sort(rows.begin(), rows.end(), [](const auto& x, const auto& y) { return x.second.seconds > y.second.seconds; });
    std::string out;
    char buf[512];
    double in_ops = 0;
    for (const auto& [name, e] : rows) {
        in_ops += e.seconds;
        std::snprintf(buf, sizeof buf, "profile part=%s op=%s calls=%lld ms=%.1f share=%.1f%%", part.c_str(),
                      name.c_str(), (long long)((double)e.calls / d + 0.5), e.seconds * 1e3 / d,
                      100.0 * e.seconds / total);
        out += buf;
        if (e.flops > 0 && e.seconds > 0) {
            std::snprintf(buf, sizeof buf, " gflops_per_s=%.1f", e.flops / 1e9 / e.seconds);
            out += buf;
        }
        out += '\n';
    }
    std::snprintf(buf, sizeof buf, "profile part=%s op=(outside ops) ms=%.1f share=%.1f%%\nprofile part=%s total_ms=%.1f\n",
                  part.c_str(), (total_s - in_ops) * 1e3 / d, 100.0 * (total_s - in_ops) / total, part.c_str(),
                  total_s * 1e3 / d);
    out += buf;
    return out;
}

}  // namespace nuance
