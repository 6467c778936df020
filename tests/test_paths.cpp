#include "test_paths.h"

#ifndef NUANCE_TEST_DATA_DIR
#error "NUANCE_TEST_DATA_DIR must be defined (CMakeLists.txt)"
#endif

namespace nuance::test_paths {
const char* test_data() { return NUANCE_TEST_DATA_DIR; }
const char* cli_path() { return NUANCE_CLI_BINARY; }
}  // namespace nuance::test_paths
