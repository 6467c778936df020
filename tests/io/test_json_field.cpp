// Typed optional JSON fields (io/json_field.h): the fallback for absent/null, the value when it has the right type,
// and a message naming the place, the field, the wanted type and the value otherwise.
#include <gtest/gtest.h>

#include "../test_util.h"
#include "io/json_field.h"

namespace nuance {
namespace {

using nlohmann::json;

TEST(JsonField, FallbackValueAndErrors) {
    const json o = {{"s", "x"}, {"b", true}, {"i", 7}, {"neg", -3}, {"f", 0.5}, {"n", nullptr},
                    {"big", 5000000000LL}, {"long", std::string(200, 'y')}};
    EXPECT_EQ(json_field<std::string>(o, "s", "d", "cfg"), "x");
    EXPECT_EQ(json_field<std::string>(o, "missing", "d", "cfg"), "d");
    EXPECT_EQ(json_field<std::string>(o, "n", "d", "cfg"), "d");
    EXPECT_EQ(json_field(o, "b", false, "cfg"), true);
    EXPECT_EQ(json_field(o, "i", 0, "cfg"), 7);
    EXPECT_EQ(json_field<int64_t>(o, "big", 0, "cfg"), 5000000000LL);
    EXPECT_EQ(json_field(o, "i", 0.0, "cfg"), 7.0);
    EXPECT_EQ(json_field(o, "f", 0.0f, "cfg"), 0.5f);
    EXPECT_EQ(test::error_of([&] { json_field(o, "s", 0, "cfg"); }), "cfg: field 's' must be an integer, got \"x\"");
    EXPECT_EQ(test::error_of([&] { json_field(o, "f", 0, "cfg"); }), "cfg: field 'f' must be an integer, got 0.5");
    EXPECT_EQ(test::error_of([&] { json_field(o, "big", 0, "cfg"); }),
              "cfg: field 'big' must be an integer in -2147483648..2147483647, got 5000000000");
    EXPECT_EQ(test::error_of([&] { json_field<uint64_t>(o, "neg", 0, "cfg"); }),
              "cfg: field 'neg' must be a non-negative integer in 0..18446744073709551615, got -3");
    EXPECT_EQ(test::error_of([&] { json_field(o, "i", false, "cfg"); }), "cfg: field 'i' must be a boolean, got 7");
    EXPECT_EQ(test::error_of([&] { json_field(o, "b", 0.0, "cfg"); }), "cfg: field 'b' must be a number, got true");
    EXPECT_EQ(test::error_of([&] { json_field(o, "long", 0.0, "cfg"); }),
              "cfg: field 'long' must be a number, got \"" + std::string(63, 'y') + "...");
    EXPECT_EQ(test::error_of([&] { json_field(json::array(), "a", 0, "cfg"); }),
              "cfg must be a JSON object, got array");
    EXPECT_EQ(json_required<int64_t>(o, "i", "cfg"), 7);
    EXPECT_EQ(test::error_of([&] { json_required<int64_t>(o, "n", "cfg"); }),
              "cfg: missing field 'n' (an integer)");
}

TEST(JsonField, FloatOutOfRangeIsRefused) {
    const json o = {{"x", 1e300}};
    EXPECT_EQ(json_field(o, "x", 0.0, "cfg"), 1e300);
    EXPECT_EQ(test::error_of([&] { json_field(o, "x", 0.0f, "cfg"); }), "cfg: field 'x' must be a number, got 1e+300");
}

}  // namespace
}  // namespace nuance
