// `nuance generate` / `train` / every subcommand against hostile flags and files (issue 12): NaN/Inf weights,
// unbounded thread counts, out-of-range and non-finite numbers, bad prompts, output files (format, folder, full
// disk), decompression bombs and truncated init images, progress in logs, one error prefix.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>

#include "../test_util.h"
#include "io/image.h"
#include "io/safetensors.h"
#include "tiny_model_suite.h"

using namespace nuance;
namespace fs = std::filesystem;
using ::testing::HasSubstr;
using ::testing::Not;
using nuance::test::CliRun;
using nuance::test::run_cli;

namespace {

class CliHardening : public nuance::test::TinyModelSuite<CliHardening> {
protected:
    static std::string gen() { return " generate -q --steps 2 -W 64 -H 64 -m " + model() + " "; }
    // A copy of the tiny model with every tensor whose name starts with `prefix` set to `value`.
    static std::string poisoned(const std::string& prefix, float value, const std::string& name) {
        WeightFile wf = load_safetensors(model());
        std::vector<std::pair<std::string, Tensor>> t;
        int hit = 0;
        for (const auto& [k, v] : wf.tensors) {
            if (k.rfind(prefix, 0) == 0) {
                std::vector<float> vals((size_t)v.numel(), value);
                t.emplace_back(k, Tensor::from_vector(vals, v.shape()).to(v.dtype()));
                ++hit;
            } else {
                t.emplace_back(k, v);
            }
        }
        EXPECT_GT(hit, 0) << prefix;
        save_safetensors(path(name), t);
        return path(name);
    }
    static std::string read_all(const std::string& p) {
        std::ifstream f(p, std::ios::binary);
        return std::string((std::istreambuf_iterator<char>(f)), {});
    }
};

}  // namespace

// ---- 1. NaN/Inf weights fail naming the stage, never a black PNG with exit 0 ----
TEST_F(CliHardening, NanUnetWeightsFailAtTheFirstStep) {
    const std::string m = poisoned("model.diffusion_model.out.2.bias", NAN, "nan_unet.safetensors");
    const CliRun r = run_cli(" generate -q --steps 2 -W 64 -H 64 -p apple -m " + m + " -o " + path("nan.png"));
    EXPECT_EQ(r.code, 1) << r.out;
    EXPECT_THAT(r.out, HasSubstr("nuance: error: the UNet output at step 1 of 2 (sigma "));
    EXPECT_THAT(r.out, HasSubstr(") is NaN"));
    EXPECT_THAT(r.out, HasSubstr("the model weights contain NaN/Inf?"));
    EXPECT_FALSE(fs::exists(path("nan.png")));
}

TEST_F(CliHardening, InfVaeDecoderWeightsFailAfterDecode) {
    const std::string m = poisoned("first_stage_model.decoder.conv_out.bias", INFINITY, "inf_vae.safetensors");
    const CliRun r = run_cli(" generate -q --steps 2 -W 64 -H 64 -p apple -s 5 -m " + m + " -o " + path("inf.png"));
    EXPECT_EQ(r.code, 1) << r.out;
    EXPECT_THAT(r.out, HasSubstr("the VAE decoder output of image 1 (seed 5) is +Inf"));
    EXPECT_THAT(r.out, HasSubstr("the VAE weights contain NaN/Inf?"));
    EXPECT_FALSE(fs::exists(path("inf.png")));
}

TEST_F(CliHardening, NanTextEncoderWeightsFailBeforeSampling) {
    const std::string m =
        poisoned("cond_stage_model.transformer.text_model.final_layer_norm.bias", NAN, "nan_te.safetensors");
    const CliRun r = run_cli(" generate -q --steps 2 -W 64 -H 64 -p apple -m " + m + " -o " + path("te.png"));
    EXPECT_EQ(r.code, 1) << r.out;
    EXPECT_THAT(r.out, HasSubstr("the text encoder output for the prompt is NaN"));
    EXPECT_FALSE(fs::exists(path("te.png")));
}

// ---- 2. thread counts are bounded in every subcommand ----
TEST_F(CliHardening, ThreadCountsAreBoundedInEverySubcommand) {
    for (const std::string& cmd : std::vector<std::string>{gen() + "-p x -t 100000", gen() + "-p x -t 5000", gen() + "-p x -t -2",
                                  " bench -m " + model() + " -t 100000", " check-golden /nonexistent -t 99999"}) {
        const CliRun r = run_cli(cmd);
        EXPECT_EQ(r.code, 2) << cmd << "\n" << r.out;
        EXPECT_THAT(r.out, HasSubstr("the thread count must be in 1..")) << cmd;
        EXPECT_THAT(r.out, HasSubstr("(0: all cores), got ")) << cmd;
    }
    const CliRun ok = run_cli(gen() + "-p x -t 1 -o " + path("t1.png"));
    EXPECT_EQ(ok.code, 0) << ok.out;
}

// ---- 4. numbers: no clamping, no nan/inf, seeds ----
TEST_F(CliHardening, SeedAboveInt64IsRefusedNotClamped) {
    CliRun r = run_cli(gen() + "-p x --seed 99999999999999999999");
    EXPECT_EQ(r.code, 2) << r.out;
    EXPECT_THAT(r.out, HasSubstr("'99999999999999999999' is outside -9223372036854775808..9223372036854775807"));
    r = run_cli(gen() + "-p x --seed -5");
    EXPECT_EQ(r.code, 2) << r.out;
    EXPECT_THAT(r.out, HasSubstr("--seed must be -1 (random) or in 0..9223372036854775807, got -5"));
    r = run_cli(gen() + "-p x --seed 9223372036854775807 -b 2");
    EXPECT_EQ(r.code, 2) << r.out;
    EXPECT_THAT(r.out, HasSubstr("does not fit in 64 bits"));
    r = run_cli(" train --model vae -o " + path("run") + " --seed -1");  // train's seed is unsigned
    EXPECT_EQ(r.code, 2) << r.out;
    EXPECT_THAT(r.out, HasSubstr("'-1' is negative"));
    r = run_cli(" train --model vae -o " + path("run") + " --seed 18446744073709551616");
    EXPECT_EQ(r.code, 2) << r.out;
    EXPECT_THAT(r.out, HasSubstr("is larger than 18446744073709551615"));
    // -1 is random; the seed used is written down.
    r = run_cli(" generate --steps 1 -W 64 -H 64 -m " + model() + " -p x --seed -1 -o " + path("rand.png"));
    EXPECT_EQ(r.code, 0) << r.out;
    EXPECT_THAT(r.out, HasSubstr("(seed "));
}

TEST_F(CliHardening, FloatOptionsRefuseNanAndInf) {
    for (const std::string flag : std::vector<std::string>{"--eta nan", "--eta inf", "--cfg-scale nan", "--cfg-scale -inf", "--strength nan",
                                   "--guidance-rescale nan", "--eta 1e999"}) {
        const CliRun r = run_cli(gen() + "-p x " + flag);
        EXPECT_EQ(r.code, 2) << flag << "\n" << r.out;
        EXPECT_THAT(r.out, HasSubstr(flag.substr(0, flag.find(' ')))) << flag;
        EXPECT_THAT(r.out, HasSubstr("is not a finite number")) << flag;
    }
    for (const std::string flag : std::vector<std::string>{"--lr nan", "--ema inf", "--kl-weight nan", "--caption-dropout nan"}) {
        const CliRun r = run_cli(" train --model vae -o " + path("run") + " " + flag);
        EXPECT_EQ(r.code, 2) << flag << "\n" << r.out;
        EXPECT_THAT(r.out, HasSubstr("is not a finite number")) << flag;
    }
    const CliRun big = run_cli(gen() + "-p x --eta 1000");
    EXPECT_EQ(big.code, 2) << big.out;
    EXPECT_THAT(big.out, HasSubstr("eta must be a finite number <= 100"));
}

TEST_F(CliHardening, IntegersAreDecimalAndInRange) {
    CliRun r = run_cli(gen() + "-p x --steps 0x10");
    EXPECT_EQ(r.code, 2) << r.out;
    EXPECT_THAT(r.out, HasSubstr("'0x10' is not a decimal integer"));
    r = run_cli(gen() + "-p x -W 99999999999");  // int option: CLI11 refuses what an int cannot hold
    EXPECT_EQ(r.code, 2) << r.out;
    r = run_cli(" generate -q --steps 010 -W 64 -H 64 -m " + model() + " -p x -o " + path("dec.png"));  // decimal
    EXPECT_EQ(r.code, 0) << r.out;
    EXPECT_THAT(read_png_text(path("dec.png"))[0].second, HasSubstr("Steps: 10,"));  // not octal 8
}

// ---- 4. prompts ----
TEST_F(CliHardening, PromptFileMustBeAFile) {
    CliRun r = run_cli(gen() + "--prompt-file " + path(""));
    EXPECT_EQ(r.code, 2) << r.out;
    EXPECT_THAT(r.out, HasSubstr("--prompt-file '" + path("") + "' is a folder, not a text file"));
    r = run_cli(gen() + "--prompt-file " + path("no_such_prompt.txt"));
    EXPECT_EQ(r.code, 1) << r.out;
    EXPECT_THAT(r.out, HasSubstr("no_such_prompt.txt': No such file or directory"));
}

TEST_F(CliHardening, InvalidUtf8OrNulInAPromptIsRefusedBeforeLoading) {
    std::ofstream(path("bad_utf8.txt"), std::ios::binary) << "red\xff apple";
    CliRun r = run_cli(" generate -m " + model() + " --prompt-file " + path("bad_utf8.txt") + " -o " + path("u.png"));
    EXPECT_EQ(r.code, 2) << r.out;
    EXPECT_THAT(r.out, HasSubstr("--prompt-file '" + path("bad_utf8.txt") + "' is not valid UTF-8: byte 0xff at offset 3"));
    EXPECT_THAT(r.out, Not(HasSubstr("loaded")));  // refused before the model was loaded
    {
        std::ofstream f(path("nul.txt"), std::ios::binary);
        f.write("ab\0cd", 5);
    }
    r = run_cli(gen() + "-p x --negative-prompt-file " + path("nul.txt"));
    EXPECT_EQ(r.code, 2) << r.out;
    EXPECT_THAT(r.out, HasSubstr("contains a NUL byte at offset 2"));
    r = run_cli(gen() + "-p \"$(printf '\\303\\050')\"");  // a broken 2-byte sequence on the command line
    EXPECT_EQ(r.code, 2) << r.out;
    EXPECT_THAT(r.out, HasSubstr("-p/--prompt is not valid UTF-8: byte 0xc3 at offset 0"));
    EXPECT_FALSE(fs::exists(path("u.png")));
}

TEST_F(CliHardening, GenerateWithoutAPromptIsAUsageError) {
    const CliRun r = run_cli(" generate -q -m " + model() + " -o " + path("nop.png"));
    EXPECT_EQ(r.code, 2) << r.out;
    EXPECT_THAT(r.out, HasSubstr("nuance: error: usage: generate needs a prompt: -p/--prompt TEXT or --prompt-file FILE"));
    EXPECT_THAT(r.out, HasSubstr("(a usage error: run 'nuance generate --help' for its options)"));
    EXPECT_FALSE(fs::exists(path("nop.png")));
    EXPECT_EQ(run_cli(gen() + "-p \"\" -o " + path("uncond.png")).code, 0);  // an explicit empty prompt is fine
}

// ---- 4/5. outputs ----
TEST_F(CliHardening, JpegExtensionWritesJpegAndUnknownExtensionsAreRefused) {
    CliRun r = run_cli(gen() + "-p apple -o " + path("x.jpg"));
    ASSERT_EQ(r.code, 0) << r.out;
    const std::string bytes = read_all(path("x.jpg"));
    ASSERT_GE(bytes.size(), 3u);
    EXPECT_EQ((unsigned char)bytes[0], 0xFF);
    EXPECT_EQ((unsigned char)bytes[1], 0xD8);
    EXPECT_THAT(bytes, HasSubstr("Steps: 2, Sampler: Euler a"));  // the parameters as a JPEG comment
    const Image img = read_image(path("x.jpg"));
    EXPECT_EQ(img.width, 64);
    r = run_cli(gen() + "-p apple -o " + path("x.JPEG"));
    EXPECT_EQ(r.code, 0) << r.out;
    for (const std::string bad : std::vector<std::string>{"x.bmp", "x.png.txt", "noext"}) {
        r = run_cli(gen() + "-p apple -o " + path(bad));
        EXPECT_EQ(r.code, 2) << bad << "\n" << r.out;
        EXPECT_THAT(r.out, HasSubstr("-o/--output: output '" + path(bad) + "'")) << r.out;
        EXPECT_THAT(r.out, HasSubstr("(use .png, .jpg or .jpeg)")) << r.out;
        EXPECT_FALSE(fs::exists(path(bad)));
    }
}

TEST_F(CliHardening, MissingOutputFolderIsRefusedBeforeLoading) {
    CliRun r = run_cli(" generate -m " + model() + " -p x -o " + path("no/such/dir/x.png"));
    EXPECT_EQ(r.code, 1) << r.out;
    EXPECT_THAT(r.out, HasSubstr("the folder '" + path("no/such/dir") + "' does not exist"));
    EXPECT_THAT(r.out, Not(HasSubstr("loaded")));
    fs::create_directories(path("a_dir.png"));
    r = run_cli(gen() + "-p x -o " + path("a_dir.png"));
    EXPECT_NE(r.code, 0) << r.out;
    EXPECT_THAT(r.out, HasSubstr("is a folder, not a file"));
}

TEST_F(CliHardening, FullDiskLeavesTheOldFileIntact) {
    std::ofstream(path("keep.png"), std::ios::binary) << "the old image";
    // Files may not grow past 2 KiB (a 64x64 PNG is larger): writes fail with EFBIG, SIGXFSZ is ignored.
    const CliRun r = run_cli(gen() + "-p apple -o " + path("keep.png"), "trap '' XFSZ; ulimit -f 4; ");
    EXPECT_EQ(r.code, 1) << r.out;
    EXPECT_THAT(r.out, HasSubstr("nuance: error: writing '" + path("keep.png") + "' failed: File too large"));
    EXPECT_EQ(read_all(path("keep.png")), "the old image");
    for (const auto& e : fs::directory_iterator(path("")))
        EXPECT_EQ(e.path().filename().string().find("keep.png.tmp"), std::string::npos) << e.path();
}

// ---- 4. init images: decompression bombs and truncated JPEGs ----
TEST_F(CliHardening, InitImageBombIsRefusedOnItsHeader) {
    Image small;
    small.width = small.height = 16;
    small.pixels.assign(16 * 16 * 3, 128);
    std::vector<uint8_t> jpg = encode_jpeg(small);
    // Patch the SOF0 frame header to claim 20000 x 20000 pixels (decoding would need 1.2 GB).
    bool patched = false;
    for (size_t i = 0; i + 9 < jpg.size(); ++i)
        if (jpg[i] == 0xFF && jpg[i + 1] == 0xC0) {
            jpg[i + 5] = 20000 >> 8, jpg[i + 6] = 20000 & 255, jpg[i + 7] = 20000 >> 8, jpg[i + 8] = 20000 & 255;
            patched = true;
            break;
        }
    ASSERT_TRUE(patched);
    std::ofstream(path("bomb.jpg"), std::ios::binary).write((const char*)jpg.data(), (std::streamsize)jpg.size());
    const CliRun r = run_cli(gen() + "-p x -i " + path("bomb.jpg") + " -o " + path("b.png"));
    EXPECT_EQ(r.code, 1) << r.out;
    EXPECT_THAT(r.out, HasSubstr("image '" + path("bomb.jpg") + "' is 20000x20000 = 400000000 pixels, over the limit "
                                 "of 8388608 pixels for input images"));
}

TEST_F(CliHardening, TruncatedJpegInitImageIsAnError) {
    Image img;
    img.width = img.height = 64;
    img.pixels.resize(64 * 64 * 3);
    for (size_t i = 0; i < img.pixels.size(); ++i) img.pixels[i] = (uint8_t)(i * 7919 % 251);
    std::vector<uint8_t> jpg = encode_jpeg(img);
    jpg.resize(jpg.size() / 2);
    std::ofstream(path("half.jpg"), std::ios::binary).write((const char*)jpg.data(), (std::streamsize)jpg.size());
    const CliRun r = run_cli(gen() + "-p x -i " + path("half.jpg") + " -o " + path("h.png"));
    EXPECT_EQ(r.code, 1) << r.out;
    EXPECT_THAT(r.out, HasSubstr("cannot read JPEG '" + path("half.jpg") + "'"));
    EXPECT_FALSE(fs::exists(path("h.png")));
}

// ---- 6. the CLI as a new user meets it ----
TEST_F(CliHardening, LogsGetProgressLinesAndEachImageIsSavedAtOnce) {
    const CliRun r = run_cli(" generate --steps 3 -W 64 -H 64 -b 2 -p apple -m " + model() + " -o " + path("p.png"));
    ASSERT_EQ(r.code, 0) << r.out;
    EXPECT_EQ(r.out.find('\r'), std::string::npos) << "no carriage-return bars in a log:\n" << r.out;
    EXPECT_THAT(r.out, HasSubstr("image 1/2 step 1/3 elapsed "));
    EXPECT_THAT(r.out, HasSubstr("image 2/2 step 3/3 elapsed "));
    EXPECT_THAT(r.out, HasSubstr(" ETA "));
    // the first image is saved before the second one starts
    const size_t saved1 = r.out.find("saved " + path("p.png"));
    const size_t second = r.out.find("image 2/2 step 1/3");
    ASSERT_NE(saved1, std::string::npos) << r.out;
    ASSERT_NE(second, std::string::npos) << r.out;
    EXPECT_LT(saved1, second) << r.out;
    EXPECT_THAT(r.out, HasSubstr("saved " + path("p_2.png")));
}

TEST_F(CliHardening, EveryErrorHasTheSamePrefix) {
    for (const std::string& cmd : std::vector<std::string>{" generate --no-such-flag", gen() + "-p x --sampler nope",
                                  " info /nonexistent.safetensors", " train --model vae -o /tmp/x --steps 0",
                                  " bench -m " + model() + " --repeat 0", " samplers --bogus"}) {
        const CliRun r = run_cli(cmd);
        EXPECT_NE(r.code, 0) << cmd;
        EXPECT_EQ(r.out.rfind("nuance: error: ", 0), 0u) << cmd << "\n" << r.out;
    }
}

// ---- 3. training options ----
TEST_F(CliHardening, TrainOptionsAreValidated) {
    const std::string base = " train --model vae -o " + path("trun") + " ";
    const std::vector<std::pair<std::string, std::string>> cases = {
        {"--checkpoint-every 0", "train: --checkpoint-every must be in 1..1000000000, got 0"},
        {"--checkpoint-every -3", "train: --checkpoint-every must be in 1..1000000000, got -3"},
        {"--limit -1", "train: --limit must be in 0..9223372036854775807, got -1"},
        {"--steps -5", "train: --steps must be in 1..1000000000, got -5"},
        {"--batch 0", "train: --batch must be in 1..65536, got 0"},
        {"--keep-checkpoints 0", "train: --keep-checkpoints must be in 1..1000000, got 0"},
        {"--warmup -1", "train: --warmup must be in 0..1000000000, got -1"},
        {"--ema 1", "train: --ema must be in [0, 1), got 1"},
        {"--lr 0", "train: --lr must be in (0, 10], got 0"},
        {"--min-lr 1", "train: --min-lr must be in [0, 0.0002], got 1"},
        {"--caption-dropout 1.5", "train: --caption-dropout must be in [0, 1], got 1.5"},
        {"--max-grad-norm 0", "train: --max-grad-norm must be a finite number > 0, got 0"},
        {"--resolution 100000", "train: --resolution must be in 8..4096, got 100000"},
        {"--arch '{\"vae\": {\"layers_per_blok\": 2}}'", "VAE arch: unknown key 'layers_per_blok' (known keys: "},
        {"--arch '{\"vae\": {\"layers_per_block\": 100000}}'",
         "VAE arch: 'layers_per_block' must be an integer in 1..16, got 100000"},
        {"--arch '{\"vae\": {\"block_out_channels\": [64, 1000000]}}'", "has a bad entry 1000000 (integers in 1..4096)"},
        {"--arch '{\"vae\": {\"mid_block_attention\": 3}}'", "VAE arch: 'mid_block_attention' must be true or false"},
        {"--arch " + path(""), "--arch file '" + path("") + "' is a directory, expected a file"},
        {"--arch /nonexistent/arch.json", "--arch: '/nonexistent/arch.json' is neither JSON nor a readable file"},
        {"--arch /dev/zero", "--arch file '/dev/zero' is not a regular file (it is a character device)"},
    };
    for (const auto& [flags, msg] : cases) {
        const CliRun r = run_cli(base + flags);
        EXPECT_NE(r.code, 0) << flags << "\n" << r.out;
        EXPECT_THAT(r.out, HasSubstr(msg)) << flags;
    }
    const CliRun nested = run_cli(" train --model ldm --vae /x -o " + path("trun") +
                                  " --arch '{\"unet\": {\"layers_per_block\": 1000}, \"text_encoder\": {\"hiden\": 8}}'");
    EXPECT_EQ(nested.code, 2) << nested.out;
    EXPECT_THAT(nested.out, HasSubstr("text encoder arch: unknown key 'hiden'"));
    EXPECT_FALSE(fs::exists(path("trun/checkpoints")));  // refused before anything was created
}
