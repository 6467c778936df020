#pragma once
// Absolute paths of the test data and the built CLI. They live in one translation unit (test_paths.cpp, whose
// compile definitions CMakeLists.txt sets) so that every other test file compiles the same in any checkout and
// ccache can share objects between checkouts. This header is force-included into every test file.
namespace nuance::test_paths {
const char* test_data();  // tests/data
const char* cli_path();   // the built `nuance` binary
// A folder of this test process's own under the temp directory, made on first use and removed when the tests end
// (a GoogleTest environment's TearDown), for files a test writes and does not need afterwards.
const char* scratch_dir();
}  // namespace nuance::test_paths
#define NUANCE_TEST_DATA (::nuance::test_paths::test_data())
#define NUANCE_CLI_PATH (::nuance::test_paths::cli_path())
#define NUANCE_SCRATCH_DIR (::nuance::test_paths::scratch_dir())
