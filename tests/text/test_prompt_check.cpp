// Prompt text checks (text/prompt_check.h): UTF-8 validity with the offending byte, NUL bytes, length.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "../test_util.h"
#include "text/prompt_check.h"

using namespace nuance;
using ::testing::HasSubstr;

TEST(PromptCheck, FindsTheFirstBadByte) {
    EXPECT_EQ(utf8_error_offset("plain ascii"), std::string::npos);
    EXPECT_EQ(utf8_error_offset("caf\xc3\xa9 \xf0\x9f\x8d\x8e"), std::string::npos);  // é and 🍎
    EXPECT_EQ(utf8_error_offset("red\xff"), 3u);
    EXPECT_EQ(utf8_error_offset("ab\xc3"), 2u);               // truncated sequence
    EXPECT_EQ(utf8_error_offset("\xc0\xaf"), 0u);             // overlong '/'
    EXPECT_EQ(utf8_error_offset("x\xed\xa0\x80"), 1u);        // surrogate U+D800
    EXPECT_EQ(utf8_error_offset("\xf4\x90\x80\x80"), 0u);     // above U+10FFFF
}

TEST(PromptCheck, MessagesNameThePromptAndTheOffset) {
    EXPECT_EQ(test::error_of([] { check_prompt_text("red\xff apple", "prompt"); }),
              "prompt is not valid UTF-8: byte 0xff at offset 3");
    EXPECT_EQ(test::error_of([] { check_prompt_text(std::string("ab\0c", 4), "negative prompt"); }),
              "negative prompt contains a NUL byte at offset 2");
    EXPECT_THAT(test::error_of([] { check_prompt_text(std::string(kMaxPromptBytes + 1, 'a'), "prompt"); }),
                HasSubstr("prompt is 1048577 bytes long, over the limit of 1048576 bytes"));
    EXPECT_EQ(test::error_of([] { check_prompt_text("(a lighthouse:1.2), BREAK \xe2\x9c\xa8", "prompt"); }),
              "(no error)");
}
