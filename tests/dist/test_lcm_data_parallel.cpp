// Latent consistency distillation under `mpirun -np 2 --oversubscribe` (train/lcm_distill.h on
// train/data_parallel.h): every random number of a step is drawn for the global batch and sliced, so two ranks with
// global batch 4 end with the student (and the LCM-LoRA) one process with batch 4 gets, within fp32 rounding of the
// gradient sums.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>

#include "../test_util.h"
#include "../train/lcm_test_util.h"
#include "dist/comm.h"
#include "mpi_test_util.h"
#include "io/safetensors.h"

namespace nuance {
namespace {

using ::testing::HasSubstr;
namespace fs = std::filesystem;

TEST(LcmDataParallel, TwoRanksMatchOneProcessWithTheSameGlobalBatch) {
    REQUIRE_MPI(launcher);
    const std::string mpirun = launcher + "-np 2 ";
    test::TempDir tmp("lcm_dp");
    write_tiny_teacher(tmp / "teacher");
    write_color_folder(tmp / "data");
    for (const std::string extra : {"", " --lora-rank 2"}) {
        SCOPED_TRACE(extra.empty() ? "student" : "LCM-LoRA");
        const std::string tag = extra.empty() ? "s" : "l";
        auto args = [&](const std::string& run) {
            return std::string(NUANCE_CLI_PATH) + " train -q --model lcm --teacher " + tmp / "teacher" + " --data " +
                   tmp / "data" + " -o " + tmp / (tag + run) +
                   " --resolution 8 --batch 4 --steps 3 --lr 1e-3 --warmup 0 --seed 5 --num-ddim-steps 10 --checkpoint-every 1" +
                   extra;
        };
        const Shell one = run_shell(args("one"));
        ASSERT_EQ(one.code, 0) << one.out;
        const Shell two = run_shell(mpirun + args("two"));
        ASSERT_EQ(two.code, 0) << two.out;
        EXPECT_THAT(two.out, HasSubstr("2 ranks, global batch 4"));
        const std::string ck = "/checkpoints/step-0000003.safetensors";
        const WeightFile a = load_safetensors(tmp / (tag + "one") + ck), b = load_safetensors(tmp / (tag + "two") + ck);
        ASSERT_EQ(a.tensors.size(), b.tensors.size());
        double worst = 0;
        int64_t compared = 0;
        for (const auto& [k, t] : a.tensors) {
            if (k.rfind("model.", 0) != 0 && k.rfind("target.", 0) != 0) continue;
            const Tensor x = t.f32().contiguous(), y = b.tensors.at(k).f32().contiguous();
            ASSERT_EQ(x.shape(), y.shape()) << k;
            for (int64_t i = 0; i < x.numel(); ++i)
                worst = std::max(worst, (double)std::fabs(x.data<float>()[i] - y.data<float>()[i]));
            ++compared;
        }
        EXPECT_GT(compared, 4);
        EXPECT_LT(worst, 2e-5);  // 3 AdamW steps at lr 1e-3: the sums round differently on 2 ranks
        // And the run really moved the weights (a data-parallel bug that froze them would pass the comparison).
        const WeightFile first = load_safetensors(tmp / (tag + "two") + "/checkpoints/step-0000001.safetensors");
        double moved = 0;
        for (const auto& [k, t] : b.tensors) {
            if (k.rfind("model.", 0) != 0) continue;
            const Tensor x = t.f32().contiguous(), y = first.tensors.at(k).f32().contiguous();
            for (int64_t i = 0; i < x.numel(); ++i)
                moved = std::max(moved, (double)std::fabs(x.data<float>()[i] - y.data<float>()[i]));
        }
        EXPECT_GT(moved, 1e-4);
    }
}

}  // namespace
}  // namespace nuance
