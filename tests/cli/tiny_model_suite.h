// A test suite with its own temporary folder holding a tiny random SD1.5 made by the `nuance` binary once per suite.
// Derive as `class MySuite : public TinyModelSuite<MySuite>` (CRTP: one folder per suite).
#pragma once
#include <gtest/gtest.h>

#include <filesystem>
#include <string>
#include <unistd.h>

#include "../test_util.h"

namespace nuance::test {

template <class Suite>
class TinyModelSuite : public ::testing::Test {
protected:
    static void SetUpTestSuite() {
        dir_ = std::filesystem::path(NUANCE_SCRATCH_DIR) /
               ("nuance_" + std::string(::testing::UnitTest::GetInstance()->current_test_suite()->name()) + "_" +
                std::to_string(::getpid()));
        std::filesystem::create_directories(dir_);
        const CliRun r = run_cli("make-random --family sd15 --tiny -o " + model());
        ASSERT_EQ(r.code, 0) << r.out;
    }
    static void TearDownTestSuite() { std::filesystem::remove_all(dir_); }
    static std::string model() { return (dir_ / "tiny15.safetensors").string(); }
    static std::string path(const std::string& f) { return (dir_ / f).string(); }
    static inline std::filesystem::path dir_;
};

}  // namespace nuance::test
