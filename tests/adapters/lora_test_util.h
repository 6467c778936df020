// Scratch folder of one adapter test (removed with it) and the safetensors files the test writes there.
#pragma once
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <string>
#include <utility>
#include <vector>

#include "core/tensor.h"
#include "io/safetensors.h"

namespace nuance::test {

struct AdapterDir {
    std::filesystem::path path;
    explicit AdapterDir(const std::string& tag = "nuance_lora_") {
        path = std::filesystem::path(NUANCE_SCRATCH_DIR) /
               (tag + std::to_string(::getpid()) + "_" + ::testing::UnitTest::GetInstance()->current_test_info()->name());
        std::filesystem::create_directories(path);
    }
    ~AdapterDir() {
        std::error_code ec;
        std::filesystem::remove_all(path, ec);
    }
    AdapterDir(const AdapterDir&) = delete;
    AdapterDir& operator=(const AdapterDir&) = delete;
    // Writes `t` as <path>/<name> and returns the file's path.
    std::string file(const std::string& name, const std::vector<std::pair<std::string, Tensor>>& t) const {
        const std::string p = (path / name).string();
        save_safetensors(p, t);
        return p;
    }
};

}  // namespace nuance::test
