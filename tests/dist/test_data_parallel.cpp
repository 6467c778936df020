// Data-parallel training and sharded generation (issue 17): the shard arithmetic by hand, the single-process
// collectives as no-ops, and real `mpirun -np 2 --oversubscribe` runs on loopback: two ranks with global batch B end
// with the weights one process with batch B gets (within the stated fp32 tolerance), resume bit-exactly, stop
// cleanly when a rank is killed, and write the same images as one process.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>

#include "../test_util.h"
#include "mpi_test_util.h"
#include "../train/data_test_util.h"
#include "dist/comm.h"
#include "io/safetensors.h"
#include "train/data_parallel.h"

namespace nuance {
namespace {

using ::testing::HasSubstr;
namespace fs = std::filesystem;

TEST(DistShard, SplitsContiguouslyWithSizesDifferingByOne) {
    auto r = dist::shard(5, 2, 0);
    EXPECT_EQ(r.begin, 0);
    EXPECT_EQ(r.end, 3);
    r = dist::shard(5, 2, 1);
    EXPECT_EQ(r.begin, 3);
    EXPECT_EQ(r.end, 5);
    r = dist::shard(4, 4, 3);
    EXPECT_EQ(r.begin, 3);
    EXPECT_EQ(r.end, 4);
    r = dist::shard(1, 3, 2);  // more parts than items: empty shards at the end
    EXPECT_EQ(r.begin, 1);
    EXPECT_EQ(r.end, 1);
    int64_t covered = 0;
    for (int i = 0; i < 7; ++i) {
        const auto s = dist::shard(100, 7, i);
        EXPECT_EQ(s.begin, covered);
        EXPECT_TRUE(s.end - s.begin == 14 || s.end - s.begin == 15);
        covered = s.end;
    }
    EXPECT_EQ(covered, 100);
    EXPECT_THAT(test::error_of([] { dist::shard(4, 2, 2); }), HasSubstr("shard: index 2 of 2 parts of 4"));
    EXPECT_THAT(test::error_of([] { dist::shard(4, 0, 0); }), HasSubstr("shard: index 0 of 0 parts"));
}

TEST(DistWorld, OneProcessIsAWorldOfOneAndCollectivesAreNoOps) {
    if (dist::launched_by_mpi_launcher()) GTEST_SKIP() << "the test binary itself runs under an MPI launcher";
    EXPECT_EQ(dist::size(), 1);
    EXPECT_EQ(dist::rank(), 0);
    EXPECT_TRUE(dist::is_root());
    EXPECT_EQ(dist::world().description, "single process");
    float v[3] = {1.5f, -2.0f, 3.25f};
    dist::allreduce_sum(v, 3);
    EXPECT_EQ(v[0], 1.5f);
    EXPECT_EQ(v[2], 3.25f);
    EXPECT_EQ(dist::allgather(42u), std::vector<uint64_t>{42u});
    const dist::Range r = local_rows(4);
    EXPECT_EQ(r.begin, 0);
    EXPECT_EQ(r.end, 4);
    EXPECT_EQ(dist::comm_stats().calls, 0u);
}

TEST(DistBatchRows, SlicesImagesCaptionsAndIndices) {
    Batch b;
    b.images = Tensor::from_vector({0, 1, 2, 3, 4, 5}, {3, 1, 1, 2});
    b.captions = {"a", "b", "c"};
    b.indices = {7, 8, 9};
    const Batch s = batch_rows(b, {1, 3});
    EXPECT_EQ(s.images.shape(), (Shape{2, 1, 1, 2}));
    EXPECT_EQ(s.images.to_vector(), (std::vector<float>{2, 3, 4, 5}));
    EXPECT_EQ(s.captions, (std::vector<std::string>{"b", "c"}));
    EXPECT_EQ(s.indices, (std::vector<int64_t>{8, 9}));
    EXPECT_THAT(test::error_of([&] { batch_rows(b, {2, 4}); }), HasSubstr("batch_rows: rows 2..4 of a batch of 3"));
}

// ---- real MPI runs ----

// Written next to the data folder as <data>_arch.json (a file: no shell quoting inside `sh -c '...'`).
const char* kTinyVaeArch = R"({"vae":{"block_out_channels":[8,16],"norm_num_groups":4}})";

void write_color_folder(const std::string& dir) {
    fs::create_directories(dir);
    test::write_text(dir + "_arch.json", kTinyVaeArch);
    const char* names[] = {"red", "green", "blue", "yellow"};
    const uint8_t rgb[4][3] = {{220, 30, 30}, {30, 200, 40}, {40, 50, 220}, {230, 220, 30}};
    for (int i = 0; i < 8; ++i) {
        Image img = test::gradient_image(8, 8, i * 20, 255 - i * 30, 90);
        for (size_t p = 0; p < img.pixels.size(); p += 3)
            for (int c = 0; c < 3; ++c) img.pixels[p + c] = (uint8_t)((img.pixels[p + c] + rgb[i % 4][c]) / 2);
        const std::string stem = dir + "/img" + std::to_string(i);
        test::write_image(stem + ".png", img);
        test::write_text(stem + ".txt", std::string(names[i % 4]) + " square");
    }
}

std::string train_args(const std::string& data, const std::string& out, int steps, int batch = 4) {
    return std::string(NUANCE_CLI_PATH) + " train --model vae --data " + data + " --arch " + data + "_arch.json" +
           " --resolution 8 --batch " + std::to_string(batch) + " --steps " + std::to_string(steps) +
           " --lr 1e-3 --warmup 0 --seed 7 --checkpoint-every 2 --keep-checkpoints 100 -q -o " + out;
}

std::map<std::string, Tensor> model_tensors(const std::string& ckpt) {
    std::map<std::string, Tensor> out;
    WeightFile f = load_safetensors(ckpt);
    for (auto& [name, t] : f.tensors)
        if (name.rfind("model.", 0) == 0) out[name] = t.f32().contiguous();
    return out;
}

struct Diff {
    double max_abs = 0;
    std::string where;
    bool identical = true;
};

// Largest |a - b| over the model tensors, skipping names that contain `skip` (when not empty).
Diff compare(const std::string& a, const std::string& b, const std::string& skip = "") {
    const auto ta = model_tensors(a), tb = model_tensors(b);
    Diff d;
    EXPECT_EQ(ta.size(), tb.size());
    for (const auto& [name, x] : ta) {
        auto it = tb.find(name);
        if (it == tb.end()) {
            ADD_FAILURE() << name << " missing in " << b;
            continue;
        }
        const float *p = x.data<float>(), *q = it->second.data<float>();
        for (int64_t i = 0; i < x.numel(); ++i) {
            if (p[i] != q[i]) d.identical = false;
            if (!skip.empty() && name.find(skip) != std::string::npos) continue;
            const double e = std::fabs((double)p[i] - (double)q[i]);
            if (e > d.max_abs) d.max_abs = e, d.where = name;
        }
    }
    return d;
}

std::string read_file(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
}

std::string tmp_dir(const std::string& name) {
    const std::string d = std::string(NUANCE_SCRATCH_DIR) + "/nuance_dist_" + name + "_" + std::to_string(getpid());
    fs::remove_all(d);
    fs::create_directories(d);
    return d;
}

TEST(DataParallelTrain, TwoRanksMatchOneProcessWithTheSameGlobalBatch) {
    REQUIRE_MPI(mpirun);
    const std::string d = tmp_dir("match"), data = d + "/data";
    write_color_folder(data);
    const Shell one = run_shell(train_args(data, d + "/one", 6));
    ASSERT_EQ(one.code, 0) << one.out;
    const Shell two = run_shell(mpirun + "-np 2 " + train_args(data, d + "/two", 6));
    ASSERT_EQ(two.code, 0) << two.out;
    EXPECT_THAT(two.out, HasSubstr("data parallel: Open MPI"));
    EXPECT_THAT(two.out, HasSubstr("2 ranks, global batch 4"));
    // Only rank 0 reports, writes checkpoints and exports.
    EXPECT_EQ(two.out.find("exported: \n"), std::string::npos) << two.out;
    ASSERT_TRUE(fs::exists(d + "/two/vae/diffusion_pytorch_model.safetensors"));
    // Tolerance: the gradient sums round differently (each rank's mean times 1/2, then summed): after 6 AdamW steps
    // at lr 1e-3 every weight is within 2e-6 of the single-process one. The attention key biases are left out: the
    // softmax ignores them, their exact gradient is 0, and AdamW turns the rounding noise of a zero gradient into
    // steps of up to lr (1e-3) in either run.
    const Diff diff = compare(d + "/one/checkpoints/step-0000006.safetensors",
                              d + "/two/checkpoints/step-0000006.safetensors", "to_k.bias");
    EXPECT_LT(diff.max_abs, 2e-6) << diff.where;
    // The loss curves agree to float rounding.
    auto losses = [](const std::string& log) {
        std::vector<double> out;
        std::ifstream f(log);
        std::string line;
        while (std::getline(f, line)) out.push_back(nlohmann::json::parse(line)["loss"].get<double>());
        return out;
    };
    const auto l1 = losses(d + "/one/train_log.jsonl"), l2 = losses(d + "/two/train_log.jsonl");
    ASSERT_EQ(l1.size(), l2.size());
    for (size_t i = 0; i < l1.size(); ++i) EXPECT_NEAR(l1[i], l2[i], 1e-5 * std::fabs(l1[i]));
    fs::remove_all(d);
}

TEST(DataParallelTrain, ResumesBitExactlyWithTheSameRanksAndContinuesWithOthers) {
    REQUIRE_MPI(mpirun);
    const std::string d = tmp_dir("resume"), data = d + "/data";
    write_color_folder(data);
    const Shell straight =
        run_shell(mpirun + "-np 2 " + train_args(data, d + "/a", 6) + " --replica-check-every 1");
    ASSERT_EQ(straight.code, 0) << straight.out;
    // The same 6-step run (the cosine schedule depends on --steps), continued from its step 4 in another folder.
    const Shell resumed = run_shell(mpirun + "-np 2 " + train_args(data, d + "/c", 6) + " --resume-from " + d +
                                    "/a/checkpoints/step-0000004.safetensors");
    ASSERT_EQ(resumed.code, 0) << resumed.out;
    EXPECT_THAT(resumed.out, HasSubstr("trained 2 steps"));
    EXPECT_TRUE(compare(d + "/a/checkpoints/step-0000006.safetensors", d + "/c/checkpoints/step-0000006.safetensors")
                    .identical);
    // Another number of ranks: a note, the same data order, the same result within the tolerance above.
    const Shell single = run_shell(train_args(data, d + "/e", 6) + " --resume-from " + d +
                                   "/a/checkpoints/step-0000004.safetensors");
    ASSERT_EQ(single.code, 0) << single.out;
    EXPECT_THAT(single.out, HasSubstr("was written by a run of 2 rank(s), this one has 1"));
    EXPECT_LT(compare(d + "/a/checkpoints/step-0000006.safetensors", d + "/e/checkpoints/step-0000006.safetensors",
                      "to_k.bias")
                  .max_abs,
              2e-6);
    fs::remove_all(d);
}

TEST(DataParallelTrain, AKilledRankEndsTheJobWithAMessageAndResumeContinues) {
    REQUIRE_MPI(mpirun);
    const std::string d = tmp_dir("kill"), data = d + "/data";
    write_color_folder(data);
    // Rank 1 is killed (SIGKILL) 4 s into a long run; exec keeps the shell's pid for nuance.
    const std::string wrapped = "sh -c 'if [ \"$OMPI_COMM_WORLD_RANK\" = 1 ]; then (sleep 4; kill -9 $$) & fi; exec " +
                                train_args(data, d + "/k", 100000) + "'";
    const Shell killed = run_shell("timeout 120 " + mpirun + "-np 2 " + wrapped);
    EXPECT_NE(killed.code, 0) << killed.out;
    EXPECT_NE(killed.code, 124) << "mpirun hung after a rank died:\n" << killed.out;
    EXPECT_LT(killed.seconds, 90);
    EXPECT_THAT(killed.out, HasSubstr("signal 9")) << killed.out;
    // The last checkpoint written before the kill continues the run.
    std::string newest;
    for (const auto& e : fs::directory_iterator(d + "/k/checkpoints"))
        if (e.path().extension() == ".safetensors" && e.path().string() > newest) newest = e.path().string();
    ASSERT_FALSE(newest.empty()) << killed.out;
    const int64_t at = std::stoll(fs::path(newest).stem().string().substr(5));
    const Shell cont = run_shell(mpirun + "-np 2 " + train_args(data, d + "/k", (int)at + 2) + " --resume");
    ASSERT_EQ(cont.code, 0) << cont.out;
    EXPECT_THAT(cont.out, HasSubstr("trained 2 steps"));
    fs::remove_all(d);
}

TEST(DataParallelTrain, MoreRanksThanTheBatchIsAClearError) {
    REQUIRE_MPI(mpirun);
    const std::string d = tmp_dir("small"), data = d + "/data";
    write_color_folder(data);
    const Shell r = run_shell(mpirun + "-np 2 " + train_args(data, d + "/s", 2, 1));
    EXPECT_NE(r.code, 0);
    EXPECT_THAT(r.out, HasSubstr("--batch 1 is smaller than the 2 ranks of this run"));
    fs::remove_all(d);
}

TEST(DataParallelGenerate, TwoRanksWriteTheFilesOneProcessWrites) {
    REQUIRE_MPI(mpirun);
    const std::string d = tmp_dir("gen");
    const std::string args = " generate -p 'red apple' -b 3 -s 11 --steps 4 -q -o ";
    const Shell one = run_shell(std::string(NUANCE_CLI_PATH) + args + d + "/one.png");
    ASSERT_EQ(one.code, 0) << one.out;
    const Shell two = run_shell(mpirun + "-np 2 " + NUANCE_CLI_PATH + args + d + "/two.png");
    ASSERT_EQ(two.code, 0) << two.out;
    EXPECT_THAT(two.out, HasSubstr("2 rank(s) (Open MPI"));
    EXPECT_THAT(two.out, HasSubstr("wrote 3 of 3 image(s)"));
    for (const char* suffix : {"", "_2", "_3"}) {
        const std::string a = read_file(d + "/one" + suffix + ".png"),
                          b = read_file(d + "/two" + suffix + ".png");
        ASSERT_FALSE(a.empty()) << suffix;
        // The PNGs carry the same parameters (seed included) and the same pixels.
        EXPECT_EQ(a, b) << suffix;
    }
    // More ranks than images: the extra rank writes nothing and the job still succeeds.
    const Shell few = run_shell(mpirun + "-np 2 " + NUANCE_CLI_PATH +
                                " generate -p 'red apple' -b 1 -s 11 --steps 2 -q -o " + d + "/few.png");
    ASSERT_EQ(few.code, 0) << few.out;
    EXPECT_TRUE(fs::exists(d + "/few.png"));
    EXPECT_FALSE(fs::exists(d + "/few_2.png"));
    fs::remove_all(d);
}

}  // namespace
}  // namespace nuance
