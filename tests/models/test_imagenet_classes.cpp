// ImageNet class names for --class-label: numbers, names, synonyms, errors.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "models/dit/imagenet_classes.h"
#include "../test_util.h"

using namespace nuance;
using ::testing::HasSubstr;
using nuance::test::error_of;

TEST(ImageNetClasses, KnownEntries) {
    EXPECT_EQ(imagenet_class_name(0), "tench, Tinca tinca");
    EXPECT_EQ(imagenet_class_name(207), "golden retriever");
    EXPECT_EQ(imagenet_class_short_name(2), "great white shark");
    EXPECT_EQ(imagenet_class_name(999), "toilet tissue, toilet paper, bathroom tissue");
    EXPECT_THAT(error_of([] { imagenet_class_name(1000); }), HasSubstr("ImageNet class 1000 is out of range [0, 1000)"));
    EXPECT_THAT(error_of([] { imagenet_class_name(-1); }), HasSubstr("ImageNet class -1 is out of range"));
}

TEST(ImageNetClasses, ExactSynonymAndCaseInsensitive) {
    EXPECT_EQ(imagenet_class_id("golden retriever"), 207);
    EXPECT_EQ(imagenet_class_id("Golden Retriever"), 207);
    EXPECT_EQ(imagenet_class_id("  golden retriever "), 207);
    EXPECT_EQ(imagenet_class_id("white shark"), 2);  // a later lemma, as DiTPipeline.get_label_ids takes it
    EXPECT_EQ(imagenet_class_id("Carcharodon carcharias"), 2);
    EXPECT_EQ(imagenet_class_id("umbrella"), 879);
    EXPECT_EQ(imagenet_class_id("tench, Tinca tinca"), 0);  // the whole string too
    // Every class is reachable by its first lemma but the 13 whose first lemma another class shares (crane, maillot,
    // cardigan, ...: those are ambiguous, below).
    int reachable = 0;
    for (int64_t i = 0; i < kImageNetClasses; ++i) {
        try {
            reachable += imagenet_class_id(imagenet_class_short_name(i)) == i;
        } catch (const Error&) {
        }
    }
    EXPECT_EQ(reachable, 987);
}

TEST(ImageNetClasses, UnknownNameListsNearMatches) {
    EXPECT_THAT(error_of([] { imagenet_class_id("golden retriver"); }),
                HasSubstr("unknown ImageNet class name 'golden retriver'; did you mean: golden retriever (207)"));
    const std::string e = error_of([] { imagenet_class_id("retriever"); });
    EXPECT_THAT(e, HasSubstr("unknown ImageNet class name 'retriever'; did you mean: "));
    EXPECT_THAT(e, HasSubstr("golden retriever (207)"));
    EXPECT_THAT(e, HasSubstr("Labrador retriever (208)"));
    EXPECT_THAT(error_of([] { imagenet_class_id("qqqqqqqqqqqqqqqqqqqqqqqqqqqqqq"); }),
                HasSubstr("unknown ImageNet class name 'qqqqqqqqqqqqqqqqqqqqqqqqqqqqqq'; pass a class number 0..999"));
    EXPECT_THAT(error_of([] { imagenet_class_id(std::string(300, 'a')); }),
                HasSubstr("ImageNet class name of 300 bytes is too long (at most 256)"));
    EXPECT_THAT(error_of([] { imagenet_class_id("  "); }), HasSubstr("ImageNet class name is empty"));
}

TEST(ImageNetClasses, SharedLemmaIsAmbiguous) {
    EXPECT_THAT(error_of([] { imagenet_class_id("crane"); }),
                HasSubstr("ImageNet class name 'crane' is ambiguous: it names classes 134 (crane) and 517 (crane); "
                          "pass the class number"));
}

TEST(ImageNetClasses, ParseClassLabel) {
    EXPECT_EQ(parse_class_label("207"), 207);
    EXPECT_EQ(parse_class_label("golden retriever"), 207);
    EXPECT_EQ(parse_class_label("0"), 0);
    EXPECT_EQ(parse_class_label("7", 10), 7);
    EXPECT_THAT(error_of([] { parse_class_label("1000"); }), HasSubstr("--class-label 1000 is out of range [0, 999]"));
    EXPECT_THAT(error_of([] { parse_class_label("-3"); }), HasSubstr("--class-label -3 is out of range [0, 999]"));
    EXPECT_THAT(error_of([] { parse_class_label("123456789012345678901234"); }),
                HasSubstr("--class-label 123456789012345678901234 is out of range [0, 999]"));
    EXPECT_THAT(error_of([] { parse_class_label("10", 10); }),
                HasSubstr("--class-label 10 is out of range [0, 9] (the model has 10 classes)"));
    EXPECT_THAT(error_of([] { parse_class_label("golden retriever", 10); }),
                HasSubstr("--class-label 'golden retriever': the model has 10 classes, not ImageNet's 1000, so only "
                          "class numbers 0..9 work"));
}
