// The sampler layer against diffusers' full sampling loops (tests/data/golden/schedulers): timesteps, sigmas,
// alphas_cumprod, every model input, every intermediate latent and the noise-draw order.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <map>
#include <set>
#include <string>

#include "core/error.h"
#include "eval/golden/schedulers_golden.h"

using namespace nuance;
using ::testing::HasSubstr;

namespace {

const std::string kCase = std::string(NUANCE_TEST_DATA) + "/golden/schedulers";

const std::vector<CompareLine>& lines() {
    static const std::vector<CompareLine> l = check_golden_schedulers(kCase);
    return l;
}

// entry -> its lines
std::map<std::string, std::vector<CompareLine>> by_entry() {
    std::map<std::string, std::vector<CompareLine>> m;
    for (const CompareLine& l : lines()) {
        std::string n = l.name.substr(std::string("schedulers/").size());
        m[n.substr(0, n.find('.'))].push_back(l);
    }
    return m;
}

void expect_entry_passes(const std::string& entry, bool has_sigmas, bool has_noise) {
    const auto m = by_entry();
    const auto it = m.find(entry);
    ASSERT_NE(it, m.end()) << "no lines for " << entry;
    std::set<std::string> what;
    for (const CompareLine& l : it->second) {
        EXPECT_FALSE(l.skip) << l.name << ": " << l.reason;
        EXPECT_TRUE(l.pass) << l.name << " max_abs=" << l.max_abs << " atol=" << l.atol << " " << l.reason;
        what.insert(l.name.substr(l.name.find('.') + 1));
    }
    EXPECT_TRUE(what.count("timesteps")) << entry;
    EXPECT_TRUE(what.count("x")) << entry;
    EXPECT_TRUE(what.count("model_in")) << entry;
    EXPECT_EQ(what.count("sigmas"), has_sigmas ? 1u : 0u) << entry;
    EXPECT_EQ(what.count("noise_order"), has_noise ? 1u : 0u) << entry;
}

}  // namespace

TEST(SamplersGolden, Euler) { expect_entry_passes("euler", true, false); }
TEST(SamplersGolden, EulerV) { expect_entry_passes("euler_v", true, false); }
TEST(SamplersGolden, EulerKarras) { expect_entry_passes("euler_karras", true, false); }
TEST(SamplersGolden, EulerSdxlLeading) { expect_entry_passes("euler_sdxl_leading", true, false); }
TEST(SamplersGolden, EulerAncestral) { expect_entry_passes("euler_ancestral", true, true); }
TEST(SamplersGolden, Ddim) { expect_entry_passes("ddim", false, false); }
TEST(SamplersGolden, DdimTrailing) { expect_entry_passes("ddim_trailing", false, false); }
TEST(SamplersGolden, DdimV) { expect_entry_passes("ddim_v", false, false); }
TEST(SamplersGolden, DdimVZeroSnr) { expect_entry_passes("ddim_v_zsnr", false, false); }
TEST(SamplersGolden, DdimEta1) { expect_entry_passes("ddim_eta1", false, true); }
TEST(SamplersGolden, DpmPP2M) { expect_entry_passes("dpmpp_2m", true, false); }
TEST(SamplersGolden, DpmPP2MKarras) { expect_entry_passes("dpmpp_2m_karras", true, false); }
TEST(SamplersGolden, DpmPP2MV) { expect_entry_passes("dpmpp_2m_v", true, false); }
// Beyond the first set: samplers of the later "full family" that already match.
TEST(SamplersGolden, Heun) { expect_entry_passes("heun", true, false); }
TEST(SamplersGolden, Lms) { expect_entry_passes("lms", true, false); }
TEST(SamplersGolden, Ddpm) { expect_entry_passes("ddpm", false, true); }
TEST(SamplersGolden, DpmPP2MSdeKarras) { expect_entry_passes("dpmpp_2m_sde_karras", true, true); }
TEST(SamplersGolden, FlowEulerSd3) { expect_entry_passes("flow_euler_sd3", true, false); }
TEST(SamplersGolden, FlowEulerFlux) { expect_entry_passes("flow_euler_flux", true, false); }
TEST(SamplersGolden, DpmPP2SSinglestep) { expect_entry_passes("dpm_singlestep", true, false); }
TEST(SamplersGolden, UniPC) { expect_entry_passes("unipc", true, false); }
TEST(SamplersGolden, Plms) { expect_entry_passes("pndm", false, false); }
TEST(SamplersGolden, Lcm) { expect_entry_passes("lcm", false, true); }
TEST(SamplersGolden, EulerChurnDiffusersOrder) { expect_entry_passes("euler_churn", true, true); }

TEST(SamplersGolden, EveryEntryRunsAndPasses) {
    const auto m = by_entry();
    EXPECT_EQ(m.size(), 24u);
    for (const auto& [entry, ls] : m)
        for (const CompareLine& l : ls) EXPECT_TRUE(l.pass && !l.skip) << l.name << ": " << l.reason;
}

TEST(SamplersGolden, NothingIsSkipped) {
    size_t skipped = 0;
    for (const CompareLine& l : lines()) skipped += l.skip ? 1 : 0;
    EXPECT_EQ(skipped, 0u);  // euler_churn, the last one, runs with ChurnMode::Diffusers
}

TEST(SamplersGolden, MissingCaseDirectoryIsAnError) {
    try {
        check_golden_schedulers(kCase + "/does_not_exist");
        FAIL() << "expected an Error";
    } catch (const Error& e) {
        EXPECT_EQ(e.code(), ErrorCode::NotFound);
        EXPECT_THAT(e.what(), HasSubstr("does_not_exist"));
    }
}
