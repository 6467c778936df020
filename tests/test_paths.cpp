#include "test_paths.h"

#ifndef NUANCE_TEST_DATA_DIR
#error "NUANCE_TEST_DATA_DIR must be defined (CMakeLists.txt)"
#endif

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <string>

namespace nuance::test_paths {
namespace {
std::string& scratch() {
    static std::string s;
    return s;
}
class ScratchCleanup : public ::testing::Environment {
public:
    void TearDown() override {
        std::error_code ec;  // best effort: a test that left a file open must not fail the run here
        if (!scratch().empty()) std::filesystem::remove_all(scratch(), ec);
    }
};
[[maybe_unused]] ::testing::Environment* const g_cleanup = ::testing::AddGlobalTestEnvironment(new ScratchCleanup);
}  // namespace

const char* test_data() { return NUANCE_TEST_DATA_DIR; }
const char* cli_path() { return NUANCE_CLI_BINARY; }
const char* scratch_dir() {
    std::string& s = scratch();
    if (s.empty()) {
        s = (std::filesystem::path(::testing::TempDir()) / ("nuance_test_" + std::to_string(::getpid()))).string();
        std::filesystem::create_directories(s);
    }
    return s.c_str();
}
}  // namespace nuance::test_paths
