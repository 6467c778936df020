// write_file_atomic: the content lands whole, or the old file stays and no temp file is left.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "../test_util.h"
#include "io/atomic_file.h"

namespace nuance {
namespace {

namespace fs = std::filesystem;

std::string read_all(const fs::path& p) {
    std::ifstream f(p);
    std::stringstream s;
    s << f.rdbuf();
    return s.str();
}

TEST(AtomicFile, WritesWholeOrKeepsTheOldFile) {
    const fs::path dir = fs::temp_directory_path() / ("nuance_atomic_" + std::to_string(::getpid()));
    fs::create_directories(dir);
    const fs::path p = dir / "a.txt";
    write_file_atomic(p.string(), [](FILE* f) { return std::fputs("first", f) >= 0; });
    EXPECT_EQ(read_all(p), "first");
    // A writer that fails half-way: an Io error naming the file, the old content kept, no temp file left.
    const std::string err = test::error_of([&] {
        write_file_atomic(p.string(), [](FILE* f) {
            std::fputs("partial", f);
            return false;
        });
    });
    EXPECT_THAT(err, ::testing::HasSubstr("writing '" + p.string() + "' failed"));
    EXPECT_EQ(read_all(p), "first");
    for (const auto& e : fs::directory_iterator(dir)) EXPECT_EQ(e.path().filename(), "a.txt");
    // An unwritable folder: the error names the temp file's place.
    EXPECT_THAT(test::error_of([] { write_file_atomic("/nonexistent/dir/x.bin", [](FILE*) { return true; }); }),
                ::testing::HasSubstr("cannot write '/nonexistent/dir/x.bin.tmp."));
    fs::remove_all(dir);
}

}  // namespace
}  // namespace nuance
