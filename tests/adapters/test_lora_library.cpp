// A1111 prompt tags, --lora FILE:weight, the --lora-dir library and A1111's LoRA short hash (adapters/lora_library.h).
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <unistd.h>

#include "adapters/lora_library.h"
#include "io/safetensors.h"
#include "../test_util.h"

namespace nuance {
namespace {

namespace fs = std::filesystem;
using test::error_of;

TEST(LoraTags, A1111Forms) {
    const auto t = parse_lora_tags("a <lora:one> b <lora:two:0.8>, <lyco:three:0.5:0.25> <lora:four:te=0.3:unet=2:dyn=4>");
    ASSERT_EQ(t.size(), 4u);
    EXPECT_EQ(t[0].name, "one");
    EXPECT_FLOAT_EQ(t[0].te, 1.0f);
    EXPECT_FLOAT_EQ(t[0].unet, 1.0f);
    EXPECT_FLOAT_EQ(t[1].te, 0.8f);
    EXPECT_FLOAT_EQ(t[1].unet, 0.8f);
    EXPECT_EQ(t[2].name, "three");
    EXPECT_FLOAT_EQ(t[2].te, 0.5f);
    EXPECT_FLOAT_EQ(t[2].unet, 0.25f);
    EXPECT_FLOAT_EQ(t[3].te, 0.3f);
    EXPECT_FLOAT_EQ(t[3].unet, 2.0f);
    EXPECT_EQ(t[1].text, "<lora:two:0.8>");
    EXPECT_EQ(strip_lora_tags("a <lora:one> b <lora:two:0.8>, (x:1.2) <other:tag>"), "a  b , (x:1.2) <other:tag>");
    EXPECT_EQ(strip_lora_tags("no tags <lora:unclosed"), "no tags <lora:unclosed");
}

TEST(LoraTags, Errors) {
    EXPECT_EQ(error_of([] { parse_lora_tags("<lora::1>"); }), "prompt: <lora::1> names no LoRA (expected <lora:name:weight>)");
    EXPECT_EQ(error_of([] { parse_lora_tags("<lora:a:nan>"); }), "prompt: <lora:a:nan>: weight 'nan' is not a number");
    EXPECT_EQ(error_of([] { parse_lora_tags("<lora:a:1:2:3>"); }), "prompt: <lora:a:1:2:3>: at most two weights (text encoder, UNet)");
    EXPECT_EQ(error_of([] { parse_lora_tags("<lora:a:500>"); }), "prompt: <lora:a:500>: weight 500 is outside [-100, 100]");
    EXPECT_EQ(error_of([] { parse_lora_tags("<lora:a:foo=1>"); }),
              "prompt: <lora:a:foo=1>: unknown argument 'foo' (expected te=, unet= or dyn=)");
    std::string many;
    for (int i = 0; i < 65; ++i) many += "<lora:x>";
    EXPECT_EQ(error_of([&] { parse_lora_tags(many); }), "prompt: more than 64 <lora:...> tags");
}

TEST(LoraTags, Flag) {
    auto t = parse_lora_flag("/a:b/c.safetensors:0.6");
    EXPECT_EQ(t.name, "/a:b/c.safetensors");
    EXPECT_FLOAT_EQ(t.unet, 0.6f);
    t = parse_lora_flag("/a:b/c.safetensors");
    EXPECT_EQ(t.name, "/a:b/c.safetensors");
    EXPECT_FLOAT_EQ(t.te, 1.0f);
    EXPECT_EQ(error_of([] { parse_lora_flag(":0.5"); }), "--lora ':0.5' names no file (expected FILE or FILE:weight)");
}

TEST(LoraLibrary, ScanFindAndHash) {
    const fs::path d = fs::path(NUANCE_SCRATCH_DIR) / ("nuance_loralib_" + std::to_string(::getpid()));
    fs::create_directories(d / "sub");
    const std::vector<std::pair<std::string, Tensor>> t = {{"m.lora_down.weight", Tensor::from_vector({1, 2}, {1, 2})},
                                                           {"m.lora_up.weight", Tensor::from_vector({3}, {1, 1})}};
    save_safetensors((d / "sub" / "Detail.safetensors").string(), t, {{"ss_output_name", "detail"}});
    save_safetensors((d / "zz.safetensors").string(), t, {{"sshs_model_hash", "abcdef0123456789"}});
    std::ofstream((d / "notes.txt").string()) << "x";
    const LoraLibrary lib = LoraLibrary::scan(d.string());
    ASSERT_EQ(lib.entries().size(), 2u);
    EXPECT_EQ(lib.find("Detail").path, (d / "sub" / "Detail.safetensors").string());
    EXPECT_EQ(lib.find("detail").name, "Detail");  // case-insensitive fallback
    EXPECT_EQ(lora_short_hash((d / "zz.safetensors").string()), "abcdef012345");
    EXPECT_EQ(lora_short_hash((d / "sub" / "Detail.safetensors").string()).size(), 12u);
    const std::string e = error_of([&] { lib.find("detial"); });
    EXPECT_EQ(e, "LoRA 'detial' is not in --lora-dir '" + d.string() + "' (2 LoRAs; close names: Detail)");
    EXPECT_EQ(error_of([] { LoraLibrary::scan("/nonexistent/loras"); }), "--lora-dir '/nonexistent/loras' is not a folder");
    EXPECT_EQ(lora_hashes_infotext("a: 0123, b: 4567"), ", Lora hashes: \"a: 0123, b: 4567\"");
    EXPECT_EQ(lora_hashes_infotext(""), "");
    fs::remove_all(d);
}

}  // namespace
}  // namespace nuance
