#include "train/train_loop.h"

#include "core/quantized_weight.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <deque>
#include <filesystem>
#include <fstream>
#include <optional>

#include "autograd/functions.h"
#include "core/error.h"
#include "core/op_stats.h"
#include "io/atomic_file.h"
#include "train/checkpoint.h"
#include "train/data_parallel.h"

namespace fs = std::filesystem;

namespace nuance {

namespace {

std::string step_file(const std::string& dir, int64_t step) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "step-%07lld.safetensors", (long long)step);
    return dir + "/" + buf;
}

}  // namespace

TrainReport run_train_loop(const TrainOptions& o, TrainTask& task, const TrainLoopOptions& lo,
                           const TrainCallback& on_step) {
    const bool root = dist::is_root();
    const dist::Range rows = lo.rows.end > lo.rows.begin ? lo.rows : dist::Range{0, o.batch};
    const std::string ckdir = o.output + "/checkpoints";
    if (root) {
        std::error_code ec;
        fs::create_directories(ckdir, ec);
        NUANCE_CHECK_CODE(!ec, Io, "train: cannot create '", ckdir, "': ", ec.message());
        // a run killed while writing a checkpoint left `step-N.safetensors.tmp.<pid>`
        remove_stale_temp_files(ckdir);
    }
    dist::barrier();  // the folder exists (on a shared file system) before any rank looks for checkpoints
    std::string resume = o.resume_from;
    if (resume.empty() && o.resume) {
        resume = newest_checkpoint(ckdir);
        NUANCE_CHECK_CODE(!resume.empty(), NotFound, "train: --resume but '", ckdir, "' holds no checkpoint");
    }
    if (!resume.empty()) task.load(resume);
    check_replicas(task.replica_set(), task.step_counter());  // same init (same seed) or the same checkpoint on every rank
    const double local_weight = (double)(rows.end - rows.begin) / (double)o.batch;

    const ComputePrecisionGuard precision(o.precision);
    TrainReport rep;
    std::deque<double> window;
    std::vector<double> losses, step_times;
    const auto t0 = std::chrono::steady_clock::now();
    int64_t& step = task.step_counter();
    const int64_t start_step = step;
    std::ofstream log;
    if (root) log.open(o.output + "/train_log.jsonl", std::ios::app);
    OpProfile profile;
    double profile_s = 0;
    int64_t profile_steps = 0;
    while (step < o.steps) {
        Mt19937 rng(mix_seed(o.seed, (uint64_t)step, lo.rng_salt));
        const float lr = lr_warmup_cosine(step, o.warmup, o.steps, o.lr, o.min_lr);
        task.optimizer().set_lr(lr);
        const Batch b = batch_rows(task.data_loader().next(), rows);
        const auto ts = std::chrono::steady_clock::now();
        std::optional<OpProfileScope> profiling;
        // the first 3 steps create primitives and touch memory first
        if (o.profile && step - start_step >= 3) profiling.emplace(profile);
        ParamGrads& params = task.param_set();
        params.zero_grad();
        double loss_v;
        {
            ParamGrads::Bind bind(params);
            const Var loss = task.loss(b, rng);
            loss_v = loss.item();
            NUANCE_CHECK(std::isfinite(loss_v), "train: the loss is ", loss_v, " at step ", step,
                         " (lower --lr or check the data)");
            backward(loss);
        }
        task.after_backward();
        if (dist::size() > 1) {
            reduce_gradients(params, local_weight);
            double l = loss_v * local_weight;
            dist::allreduce_sum(&l, 1);
            loss_v = l;  // the global batch's mean loss
        }
        clip_grad_norm(params, o.max_grad_norm);
        task.optimizer().step();
        task.after_step();
        ++step;
        if (o.replica_check_every > 0 && step % o.replica_check_every == 0) check_replicas(task.replica_set(), step);
        step_times.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - ts).count());
        if (profiling) {
            profiling.reset();
            profile_s += step_times.back();
            ++profile_steps;
        }

        window.push_back(loss_v);
        if (window.size() > 50) window.pop_front();
        losses.push_back(loss_v);
        double avg = 0;
        for (double v : window) avg += v;
        avg /= (double)window.size();
        const double el = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        TrainProgress p{step, o.steps, loss_v, avg, lr, (double)(step - start_step) * o.batch / el, el, {}};
        if (on_step && root) on_step(p);
        if (root && (step % 10 == 0 || step == o.steps))
            log << nlohmann::json{{"step", step}, {"loss", loss_v}, {"loss_avg", avg}, {"lr", lr},
                                  {"images_per_s", p.images_per_s}, {"elapsed_s", el},
                                  {"ranks", dist::size()}, {"comm_s", dist::comm_stats().seconds}}.dump()
                << "\n" << std::flush;
        if (step % o.checkpoint_every == 0 || step == o.steps) {
            check_replicas(task.replica_set(), step);  // what rank 0 saves is every rank's state
            const std::string f = step_file(ckdir, step);
            if (root) {
                task.save(f);
                prune_checkpoints(ckdir, o.keep_checkpoints);
            }
            rep.checkpoint = f;
        }
    }
    rep.steps = step - start_step;
    rep.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    rep.images_per_s = rep.seconds > 0 ? (double)rep.steps * o.batch / rep.seconds : 0;
    // Mean of the first and of the last quarter (at most 50 steps each) of this run's losses.
    const size_t k = std::max<size_t>(1, std::min<size_t>(50, losses.size() / 4));
    if (!losses.empty()) {
        double a = 0, z = 0;
        for (size_t i = 0; i < k; ++i) a += losses[i], z += losses[losses.size() - 1 - i];
        rep.first_loss = a / (double)k;
        rep.last_loss = z / (double)k;
    }
    if (!step_times.empty()) {
        // Skip the first 3 steps (primitive creation, first-touch allocations) when there are more.
        std::vector<double> t(step_times.begin() + (step_times.size() > 6 ? 3 : 0), step_times.end());
        std::nth_element(t.begin(), t.begin() + t.size() / 2, t.end());
        rep.median_step_s = t[t.size() / 2];
    }
    if (profile_steps > 0) rep.profile = format_op_profile(profile, profile_s, "train_step", profile_steps);
    const dist::CommStats cs = dist::comm_stats();
    rep.ranks = dist::size();
    rep.comm_seconds = cs.seconds;
    rep.comm_bytes_per_step = rep.steps > 0 ? (double)cs.bytes / (double)rep.steps : 0;
    if (rep.checkpoint.empty() && root) rep.checkpoint = newest_checkpoint(ckdir);
    return rep;
}

std::unique_ptr<ImageCaptionDataset> make_image_dataset(const TrainOptions& o, float caption_dropout,
                                                        const std::string& default_caption, int64_t min_rows) {
    DatasetOptions d;
    d.default_caption = default_caption;
    d.resolution = o.resolution;
    d.random_flip = o.random_flip;
    d.caption_dropout = caption_dropout;
    d.style_dropout = o.style_dropout;
    d.keyword_prob = o.keyword_prob;
    d.cache_images = true;  // decode once; every image error surfaces before the first step
    if (!o.exclude_concepts.empty()) d.exclude_concepts = read_concept_list(o.exclude_concepts);
    d.limit = o.limit;
    auto data = std::make_unique<ImageCaptionDataset>(o.data, d);
    if (min_rows < 0) min_rows = o.batch;
    NUANCE_CHECK(data->size() >= min_rows, "train: the data set '", o.data, "' has ", data->size(),
                 " images, fewer than the batch size ", o.batch);
    return data;
}

LoaderOptions train_loader_options(const TrainOptions& o, const ImageCaptionDataset* data) {
    LoaderOptions lo;
    lo.batch_size = o.batch;
    if (o.balance_concepts) {
        NUANCE_CHECK(data != nullptr, "train: --balance-concepts needs an image folder with labels or captions");
        lo.weights = concept_balance_weights(*data);
    }
    return lo;
}

Tensor kaiming_uniform(const Shape& shape, int64_t fan_in, Mt19937& rng) {
    Tensor t = Tensor::empty(shape, DType::F32);
    const float bound = 1.0f / std::sqrt((float)std::max<int64_t>(1, fan_in));
    float* d = t.data<float>();
    for (int64_t i = 0; i < t.numel(); ++i) d[i] = (2.0f * uniform01(rng) - 1.0f) * bound;
    return t;
}

void widen_params_to_f32(Module& m) {
    for_each_param(m, [](const std::string&, Param& p) {
        // Quantized weights (a GGUF base) stay blocks: they are frozen, and the products read them as they are.
        if (p.value.defined() && p.value.dtype() != DType::F32 && !is_quantized_storage(p.value))
            p.value = p.value.f32().contiguous();
    });
}

}  // namespace nuance
