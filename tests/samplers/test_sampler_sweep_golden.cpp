// The sampler layer against diffusers 0.31 over a sweep of configurations (tests/data/golden/scheduler_sweep, made
// by tools/make_sampler_sweep_golden.py): every scheduler nuance maps, step counts 1..150, every timestep spacing,
// epsilon and v-prediction, zero terminal SNR, Karras sigmas, eta, several seeds and toy models. Timesteps and
// sigmas match to rtol 1e-6, every recorded latent to atol 1e-5 * max(1, |x|).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdio>
#include <map>
#include <string>

#include "core/error.h"
#include "samplers/golden_check.h"

using namespace nuance;

namespace {

const std::string kCase = std::string(NUANCE_TEST_DATA) + "/golden/scheduler_sweep";

const std::vector<CompareLine>& lines() {
    static const std::vector<CompareLine> l = check_golden_schedulers(kCase, "scheduler_sweep");
    return l;
}

struct Group {
    int entries = 0, failed = 0;
    double worst_x = 0;
    std::string first_failure;
};

// "ddim-eps-trailing-n12.x" -> entry "ddim-eps-trailing-n12", group "ddim-eps-trailing", sampler "ddim".
std::string entry_of(const std::string& name) {
    const std::string n = name.substr(name.find('/') + 1);
    return n.substr(0, n.find('.'));
}
std::string group_of(const std::string& entry) { return entry.substr(0, entry.rfind("-n")); }

std::map<std::string, Group> groups() {
    std::map<std::string, std::map<std::string, bool>> ok;  // group -> entry -> passes
    std::map<std::string, Group> g;
    for (const CompareLine& l : lines()) {
        const std::string e = entry_of(l.name), grp = group_of(e);
        Group& G = g[grp];
        if (!ok[grp].count(e)) ok[grp][e] = true;
        if (!l.pass || l.skip) {
            if (ok[grp][e] && G.first_failure.empty())
                G.first_failure = l.name + ": " + l.reason + " (max_abs " + std::to_string(l.max_abs) + ")";
            ok[grp][e] = false;
        }
        if (l.name.size() > 2 && l.name.compare(l.name.size() - 2, 2, ".x") == 0)
            G.worst_x = std::max(G.worst_x, l.max_abs);
    }
    for (auto& [grp, es] : ok) {
        g[grp].entries = (int)es.size();
        for (auto& [e, pass] : es) g[grp].failed += pass ? 0 : 1;
    }
    return g;
}

}  // namespace

TEST(SamplerSweepGolden, EveryEntryMatchesDiffusers) {
    const auto g = groups();
    ASSERT_GT(g.size(), 50u);
    int entries = 0;
    for (const auto& [name, G] : g) {
        entries += G.entries;
        // The per-configuration table (max |x - x_ref| over every step count and recorded latent).
        std::printf("  %-34s %3d entries  max|dx| %.3g%s\n", name.c_str(), G.entries, G.worst_x,
                    G.failed ? ("  FAILED " + std::to_string(G.failed)).c_str() : "");
        EXPECT_EQ(G.failed, 0) << name << ": " << G.first_failure;
    }
    EXPECT_GT(entries, 700);
}

TEST(SamplerSweepGolden, NothingIsSkipped) {
    for (const CompareLine& l : lines()) EXPECT_FALSE(l.skip) << l.name << ": " << l.reason;
}
