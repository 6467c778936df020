// write_file_atomic: the content lands whole, or the old file stays and no temp file is left.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "../test_util.h"
#include "io/atomic_file.h"
#include "train/checkpoint.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

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
    const fs::path dir = fs::path(NUANCE_SCRATCH_DIR) / ("nuance_atomic_" + std::to_string(::getpid()));
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

// A pid that ran and is gone: a child that exited and was reaped.
pid_t dead_pid() {
    const pid_t p = fork();
    if (p == 0) _exit(0);
    int st = 0;
    waitpid(p, &st, 0);
    return p;
}

void touch(const fs::path& p, size_t bytes = 16) { std::ofstream(p) << std::string(bytes, 'x'); }

TEST(AtomicFile, StaleTempFilesOfDeadWritersAreRemoved) {
    const fs::path dir = fs::path(NUANCE_SCRATCH_DIR) / ("nuance_stale_" + std::to_string(::getpid()));
    fs::remove_all(dir);
    fs::create_directories(dir);
    // What `kill -9` during a checkpoint write leaves, next to files that must stay.
    const pid_t dead = dead_pid();
    const pid_t live = fork();
    if (live == 0) {
        ::pause();
        _exit(0);
    }
    const std::string d = std::to_string(dead), l = std::to_string(live), me = std::to_string(::getpid());
    touch(dir / ("step-0000010.safetensors.tmp." + d), 4096);
    touch(dir / ("config.json.tmp." + d));
    touch(dir / ("step-0000020.safetensors.tmp." + l));  // a live writer: kept
    touch(dir / ("step-0000030.safetensors.tmp." + me));  // this process: kept
    touch(dir / "notes.tmp.abc");                          // not a pid: kept
    touch(dir / "step-0000005.safetensors");
    fs::create_directories(dir / ("folder.tmp." + d));     // a folder: kept
    const std::vector<std::string> removed = remove_stale_temp_files(dir.string());
    EXPECT_THAT(removed, ::testing::UnorderedElementsAre((dir / ("step-0000010.safetensors.tmp." + d)).string(),
                                                         (dir / ("config.json.tmp." + d)).string()));
    std::vector<std::string> left;
    for (const auto& e : fs::directory_iterator(dir)) left.push_back(e.path().filename().string());
    EXPECT_THAT(left, ::testing::UnorderedElementsAre("step-0000020.safetensors.tmp." + l,
                                                      "step-0000030.safetensors.tmp." + me, "notes.tmp.abc",
                                                      "step-0000005.safetensors", "folder.tmp." + d));
    ::kill(live, SIGKILL);
    waitpid(live, nullptr, 0);
    // Resume (newest_checkpoint) and pruning clean up too, now that the other writer is gone.
    EXPECT_EQ(newest_checkpoint(dir.string()), (dir / "step-0000005.safetensors").string());
    EXPECT_FALSE(fs::exists(dir / ("step-0000020.safetensors.tmp." + l)));
    touch(dir / ("step-0000040.safetensors.tmp." + std::to_string(dead_pid())));
    prune_checkpoints(dir.string(), 1);
    left.clear();
    for (const auto& e : fs::directory_iterator(dir)) left.push_back(e.path().filename().string());
    EXPECT_THAT(left, ::testing::UnorderedElementsAre("step-0000030.safetensors.tmp." + me, "notes.tmp.abc",
                                                      "step-0000005.safetensors", "folder.tmp." + d));
    // An export folder: write_json cleans its folder before writing.
    touch(dir / ("model_index.json.tmp." + std::to_string(dead_pid())));
    write_json((dir / "model_index.json").string(), {{"a", 1}});
    EXPECT_EQ(read_all(dir / "model_index.json"), "{\n  \"a\": 1\n}\n");
    left.clear();
    for (const auto& e : fs::directory_iterator(dir))
        if (e.path().filename().string().rfind("model_index.json", 0) == 0) left.push_back(e.path().filename().string());
    EXPECT_THAT(left, ::testing::ElementsAre("model_index.json"));
    // A missing folder: nothing to do, no error.
    EXPECT_TRUE(remove_stale_temp_files((dir / "missing").string()).empty());
    fs::remove_all(dir);
}

}  // namespace
}  // namespace nuance
