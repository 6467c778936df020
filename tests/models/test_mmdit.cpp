// SD3 / SD3.5 MMDiT: golden cases in both file layouts, config detection, the original key map.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "io/safetensors.h"
#include "io/weights.h"
#include "models/mmdit/mmdit_golden.h"
#include "models/mmdit/mmdit_load.h"
#include "models/mmdit/mmdit_original.h"
#include "ops/elementwise.h"
#include "../test_util.h"

using namespace nuance;
using ::testing::HasSubstr;

namespace {

const std::string kGolden = std::string(NUANCE_TEST_DATA) + "/golden/";

void expect_all_pass(const std::vector<CompareLine>& lines, size_t n) {
    EXPECT_EQ(lines.size(), n);
    for (const auto& l : lines) {
        EXPECT_TRUE(l.pass) << l.name << " max_abs=" << l.max_abs << " atol=" << l.atol << " " << l.reason;
        EXPECT_FALSE(l.skip) << l.name;
        EXPECT_GT(l.atol, 0.0) << l.name;
    }
}

}  // namespace

TEST(MMDiT, GoldenDiffusersLayout) {
    const auto lines = check_golden_sd3(kGolden + "sd3_transformer");
    expect_all_pass(lines, 2);
    EXPECT_EQ(lines[0].name, "sd3_transformer/sd3.out");
    EXPECT_EQ(lines[1].name, "sd3_transformer/sd35.out");
}

TEST(MMDiT, GoldenOriginalLayoutF32AndF16) {
    const auto lines = check_golden_sd3(kGolden + "original_sd3");
    expect_all_pass(lines, 4);
    EXPECT_EQ(lines[1].name, "original_sd3/sd3.out[f16 file]");
}

TEST(MMDiT, CheckGoldenCliRunsBothCasesWithoutSkip) {
    for (const char* c : {"sd3_transformer", "original_sd3"}) {
        const auto r = test::run_cli(" check-golden " + kGolden + c);
        EXPECT_EQ(r.code, 0) << r.out;
        EXPECT_THAT(r.out, HasSubstr(std::string(c) + "/sd35.out PASS")) << r.out;
        EXPECT_THAT(r.out, ::testing::Not(HasSubstr(" SKIP "))) << r.out;
        EXPECT_THAT(r.out, ::testing::Not(HasSubstr(" FAIL "))) << r.out;
    }
}
