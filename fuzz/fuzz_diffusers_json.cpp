// The JSON files of a diffusers folder, through the code that reads them: unet/config.json (UNetConfig::apply_json)
// and sharded-checkpoint indexes (*.safetensors.index.json, io/weights.cpp; the input is written to a temp file that
// load_weights opens: its shards never exist, so they fail with NotFound). The VAE and CLIP config readers are not
// linked here (fuzz/fuzz.cmake says why).
#include <nlohmann/json.hpp>

#include <cstdio>
#include <filesystem>
#include <string>
#include <unistd.h>

#include "fuzz_util.h"
#include "io/weights.h"
#include "models/unet/unet_config.h"

namespace {

const std::string& index_path() {
    static const std::string dir = [] {
        std::string d = (std::filesystem::temp_directory_path() / ("nuance-fuzz-" + std::to_string(getpid()))).string();
        std::filesystem::create_directories(d);
        return d;
    }();
    static const std::string p = dir + "/model.safetensors.index.json";
    return p;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    using namespace nuance;
    nlohmann::json j;
    try {
        j = nlohmann::json::parse(data, data + size);  // as the loader's read_json: a parse error becomes an Error
    } catch (const nlohmann::json::exception&) {  // parse_error, out_of_range (number overflow)
        return 0;
    }
    fuzz::expect_ok_or_error([&] {
        UNetConfig c;  // SD1.5's levels
        c.block_out_channels = {320, 640, 1280, 1280};
        c.heads = {8, 8, 8, 8};
        c.apply_json(j);
    });

    FILE* f = std::fopen(index_path().c_str(), "wb");
    if (!f) __builtin_trap();
    if (size) std::fwrite(data, 1, size, f);
    std::fclose(f);
    fuzz::expect_ok_or_error([&] { (void)load_weights(index_path()); });
    return 0;
}
