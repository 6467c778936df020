// LoRA training under `mpirun -np 2 --oversubscribe` (train/lora_train.h reuses train/data_parallel.h): two ranks with
// global batch 4 end with the adapters one process with batch 4 gets, within fp32 rounding of the gradient sums.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <utility>
#include <vector>

#include "../test_util.h"
#include "../train/data_test_util.h"
#include "../train/emoji_test_data.h"
#include "dist/comm.h"
#include "mpi_test_util.h"
#include "io/safetensors.h"
#include "models/default_model.h"

namespace nuance {
namespace {

using ::testing::HasSubstr;
namespace fs = std::filesystem;

// A LoRA with Tucker cores on its 3x3 convolutions and kohya's three dropouts (drawn per global sample), a LoHa with Min-SNR weights, a noise offset (drawn
// for the global batch, sliced per rank) and LyCORIS' rank dropout, and a LoKr with DoRA magnitudes: every run's
// adapters match one process's.
TEST(LoraDataParallel, TwoRanksMatchOneProcessWithTheSameGlobalBatch) {
    REQUIRE_MPI(launcher);
    const std::string mpirun = launcher + "-np 2 ";
    test::TempDir data("lora_dp_data"), out("lora_dp_out");
    test::write_synthetic_emoji(data, 4);
    const std::string model = (fs::path(NUANCE_TEST_DATA) / ".." / ".." / "models" / kDefaultModelName).string();
    for (const auto& [name, extra] : std::vector<std::pair<std::string, std::string>>{
             {"lora", " --targets attn+conv --tucker --network-dropout 0.1 --rank-dropout 0.25 --module-dropout 0.2"},
             {"loha", " --targets attn --network loha --min-snr-gamma 5 --noise-offset 0.1 --rank-dropout 0.3"},
             {"lokr", " --network lokr --dora --targets attn+conv"}}) {
        SCOPED_TRACE(name);
        auto args = [&](const std::string& run) {
            return std::string(NUANCE_CLI_PATH) + " train -q --model lora --base " + model + " --data " +
                   data.path().string() + " -o " + out / (name + run) +
                   " --batch 4 --steps 3 --lr 1e-3 --warmup 0 --rank 2 --alpha 2 --seed 5" + extra;
        };
        const Shell one = run_shell(args("one"));
        ASSERT_EQ(one.code, 0) << one.out;
        const Shell two = run_shell(mpirun + args("two"));
        ASSERT_EQ(two.code, 0) << two.out;
        EXPECT_THAT(two.out, HasSubstr("2 ranks, global batch 4"));
        const WeightFile a = load_safetensors(out / (name + "one/" + name + "one.safetensors"));
        const WeightFile b = load_safetensors(out / (name + "two/" + name + "two.safetensors"));
        ASSERT_EQ(a.tensors.size(), b.tensors.size());
        double worst = 0;
        for (const auto& [k, t] : a.tensors) {
            const Tensor x = t.f32().contiguous(), y = b.tensors.at(k).f32().contiguous();
            ASSERT_EQ(x.shape(), y.shape()) << k;
            for (int64_t i = 0; i < x.numel(); ++i)
                worst = std::max(worst, (double)std::fabs(x.data<float>()[i] - y.data<float>()[i]));
        }
        EXPECT_LT(worst, 2e-5);  // 3 AdamW steps at lr 1e-3: the sums round differently on 2 ranks
    }
}

}  // namespace
}  // namespace nuance
