// LPIPS (eval/lpips.h): the golden case (alex and vgg against the lpips package), loading from the files users have
// (torchvision features.* + the package's lin file), and hostile inputs.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <unistd.h>

#include "eval/golden/lpips_golden.h"
#include "eval/lpips.h"
#include "io/safetensors.h"
#include "ops/ops.h"

#include "../test_util.h"

using namespace nuance;
using ::testing::HasSubstr;
using nuance::test::error_of;
namespace fs = std::filesystem;

namespace {
const std::string kDir = std::string(NUANCE_TEST_DATA) + "/golden/lpips";

std::string tmp(const std::string& name) {
    return (fs::path(NUANCE_SCRATCH_DIR) / ("nuance_lpips_" + std::to_string(::getpid()) + "_" + name)).string();
}
}  // namespace

TEST(LpipsGolden, AlexAndVggMatchTheLpipsPackage) {
    const auto lines = check_golden_lpips(kDir);
    EXPECT_GE(lines.size(), 40u);
    for (const auto& l : lines)
        EXPECT_TRUE(l.pass && !l.skip) << l.name << " max_abs " << l.max_abs << " atol " << l.atol << " " << l.reason;
}

TEST(Lpips, IdenticalImagesAreAtDistanceZero) {
    Lpips m(LpipsNet::Alex);
    load_lpips_tensors(m, load_safetensors(kDir + "/lpips_alex.safetensors").tensors, "alex");
    const Tensor x = load_safetensors(kDir + "/io.safetensors").tensors.at("p64.in0");
    const LpipsResult r = m.forward(x, x);
    EXPECT_EQ(r.dist.shape(), (Shape{3, 1, 1, 1}));
    EXPECT_EQ(max_abs(r.dist), 0.0f);
}

TEST(Lpips, LoadsTorchvisionTrunkPlusLinFile) {
    // Split the golden state dict the way users have it: torchvision's features.{i}.* (+ a classifier head that is
    // ignored) and the lpips package's lin{k}.model.1.weight file; a full state dict with lins.{k} aliases too.
    const auto all = load_safetensors(kDir + "/lpips_vgg.safetensors").tensors;
    std::vector<std::pair<std::string, Tensor>> trunk, lin, full;
    for (const auto& [k, t] : all) {
        if (k.rfind("net.slice", 0) == 0) {
            const std::string rest = k.substr(k.find('.', 4) + 1);  // "<i>.weight"
            trunk.emplace_back("features." + rest, t);
        } else if (k.rfind("lin", 0) == 0) {
            lin.emplace_back(k, t);
            full.emplace_back("lins." + k.substr(3), t);
        }
        full.emplace_back(k, t);
    }
    trunk.emplace_back("classifier.0.weight", Tensor::zeros({4, 4}));
    save_safetensors(tmp("vgg16.safetensors"), trunk);
    save_safetensors(tmp("vgg_lin.safetensors"), lin);
    save_safetensors(tmp("vgg_full.safetensors"), full);
    const Tensor x = load_safetensors(kDir + "/io.safetensors").tensors.at("p48x80.in0");
    const Tensor y = load_safetensors(kDir + "/io.safetensors").tensors.at("p48x80.in1");
    const Tensor ref = load_safetensors(kDir + "/io.safetensors").tensors.at("vgg.p48x80.dist");
    const Lpips a = load_lpips(LpipsNet::Vgg, {tmp("vgg16.safetensors"), tmp("vgg_lin.safetensors")});
    EXPECT_LE(max_abs_diff(a.forward(x, y).dist, ref), 1e-6f);
    const Lpips b = load_lpips(LpipsNet::Vgg, {tmp("vgg_full.safetensors")});
    EXPECT_LE(max_abs_diff(b.forward(x, y).dist, ref), 1e-6f);
    // The trunk alone is not enough: the first missing lin layer is named.
    EXPECT_THAT(error_of([&] { load_lpips(LpipsNet::Vgg, {tmp("vgg16.safetensors")}); }),
                HasSubstr("is missing tensor 'lin0.model.1.weight' (expected shape [1, 64, 1, 1])"));
    // An alex lin file does not fit the vgg trunk.
    EXPECT_THAT(error_of([&] { load_lpips(LpipsNet::Alex, {tmp("vgg16.safetensors"), tmp("vgg_lin.safetensors")}); }),
                HasSubstr("tensor 'net.slice1.0.weight': expected [64, 3, 11, 11], got [64, 3, 3, 3]"));
    for (const char* f : {"vgg16.safetensors", "vgg_lin.safetensors", "vgg_full.safetensors"}) fs::remove(tmp(f));
}

TEST(Lpips, HostileInputs) {
    EXPECT_THAT(error_of([] { parse_lpips_net("squeeze"); }),
                HasSubstr("LPIPS net 'squeeze' is not supported (alex | vgg)"));
    Lpips m(LpipsNet::Alex);
    load_lpips_tensors(m, load_safetensors(kDir + "/lpips_alex.safetensors").tensors, "alex");
    EXPECT_THAT(error_of([&] { m.forward(Tensor::zeros({1, 3, 30, 64}), Tensor::zeros({1, 3, 30, 64})); }),
                HasSubstr("LPIPS (alex): images of 30x64 are too small (at least 31x31)"));
    EXPECT_THAT(error_of([&] { m.forward(Tensor::zeros({1, 3, 32, 32}), Tensor::zeros({1, 3, 32, 40})); }),
                HasSubstr("LPIPS: the two image batches differ: F32[1, 3, 32, 32] vs F32[1, 3, 32, 40]"));
    EXPECT_THAT(error_of([&] { m.forward(Tensor::zeros({1, 4, 32, 32}), Tensor::zeros({1, 4, 32, 32})); }),
                HasSubstr("LPIPS: images must be [N, 3, H, W], got F32[2, 4, 32, 32]"));
    // The same key twice with different values in two files.
    const std::string a = tmp("a.safetensors"), b = tmp("b.safetensors");
    save_safetensors(a, {{"lin0.model.1.weight", Tensor::zeros({1, 64, 1, 1})}});
    save_safetensors(b, {{"lins.0.model.1.weight", Tensor::full({1, 64, 1, 1}, 1.0f)}});
    EXPECT_THAT(error_of([&] { lpips_tensors(LpipsNet::Alex, {a, b}); }),
                HasSubstr("tensor 'lin0.model.1.weight' is given twice with different values (in '" + a + "' and '" +
                          b + "')"));
    // A scaling layer with a zero scale would divide by zero.
    auto t = load_safetensors(kDir + "/lpips_alex.safetensors").tensors;
    t["scaling_layer.scale"] = Tensor::from_vector({0.5f, 0.0f, 0.5f}, {1, 3, 1, 1});
    EXPECT_THAT(error_of([&] { load_lpips_tensors(m, t, "x.safetensors"); }),
                HasSubstr("'x.safetensors': tensor 'scaling_layer.scale' has a bad value 0"));
    fs::remove(a);
    fs::remove(b);
}
