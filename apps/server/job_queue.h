// The server's work: a bounded FIFO of generation jobs and one worker thread per loaded model.
//
// submit() appends a job (QueueFull when `max_queued` jobs already wait). A worker owns one loaded model and takes
// the oldest job for it. A job for a model that is not loaded gets a new worker when fewer than `max_models` are
// loaded, else the oldest job wins: an idle worker whose model nobody waits for first, then any idle worker
// retires so the older job's model can load. Model load failures fail the jobs waiting for that model; the server
// stays up. Progress, previews and results are kept per job; finished jobs are forgotten after `history` newer ones.
#pragma once
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "core/logger.h"
#include "defaults.h"
#include "model_store.h"
#include "models/model_family.h"
#include "pipelines/generate.h"

namespace nuance::server {

enum class JobState { Queued, Running, Done, Failed, Cancelled };
const char* job_state_name(JobState s);
inline bool job_finished(JobState s) { return s == JobState::Done || s == JobState::Failed || s == JobState::Cancelled; }

struct JobImage {
    std::string png;  // encoded, with the A1111 "parameters" chunk
    int64_t seed = 0;
    std::string infotext;
    int width = 0, height = 0;
    std::string saved_as;  // file name in the output folder; "" when not saved
};

struct JobRequest {
    ModelEntry model;
    GenerateParams params;  // seed already resolved (>= 0); callbacks are the queue's
    std::string kind;       // "txt2img", "img2img", "openai", "job": for logs and listings
};

// A copy of a job's state at one moment.
struct JobStatus {
    std::string id, model, kind;
    JobState state = JobState::Queued;
    int queue_position = -1;  // jobs ahead of it while queued (0 = next), else -1
    int step = 0, total = 0;  // sampler steps of the current image
    int image = 0, images = 1;
    double created = 0;       // unix time, seconds
    double elapsed_s = 0;     // since it started running
    double progress = 0;      // 0..1 over all its images
    double eta_s = -1;        // < 0: unknown
    uint64_t version = 0;     // grows on every change
    uint64_t preview_step = 0;  // total steps done when the preview was made
    std::shared_ptr<const std::string> preview_png;
    std::vector<std::shared_ptr<const JobImage>> results;
    int64_t seed = 0;
    int error_status = 0;  // HTTP status for failed jobs
    std::string error_message;
    JobRequest request;  // filled by wait_finished() only (the init image is dropped once the job ends)
};

// HTTP status for a failed job's error code (design.md §3: 4xx user errors, 503 OOM/cancel, 500 internal).
int http_status_for(ErrorCode c);

class QueueFull : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

struct QueueOptions {
    size_t max_queued = 16;     // waiting jobs (running ones not counted)
    size_t max_models = 1;      // models loaded at once, each with its worker thread
    size_t history = 64;        // finished jobs kept for GET /api/v1/jobs/{id}
    size_t history_bytes = 512u << 20;  // and at most this many bytes of their PNGs (the newest job is always kept)
    int preview_interval = 1;   // steps between previews; 0 = none
    int preview_side = 256;
    // `nuance serve --taesd`: previews decoded by this tiny autoencoder for models of its latent channels (others keep
    // the latent colour projection, with a warning in the log).
    std::shared_ptr<const TinyAutoencoder> taesd;
    int threads = 0;            // CPU threads per worker; 0 = the default (all cores)
    ModelLoadOptions load;      // applied to every model load
    DefaultsCache* defaults = nullptr;  // told each loaded model's defaults (exact), when set
    OutputDir* outputs = nullptr;       // every finished image is saved there, when set and enabled
    LoraStore* loras = nullptr;         // <lora:name:w> in prompts: merged for the job, restored after it
    std::shared_ptr<const EmbeddingLibrary> embeddings;  // textual inversions named in prompts (none when null)
    // Limits for sizes and steps that come from the model's defaults (requests are checked when parsed); 0 = none.
    int max_side = 0;
    int64_t max_pixels = 0;
    int max_steps = 0;
    const Logger* logger = nullptr;
};

class JobQueue {
public:
    JobQueue(ModelStore& store, QueueOptions o);
    ~JobQueue();
    JobQueue(const JobQueue&) = delete;
    JobQueue& operator=(const JobQueue&) = delete;

    // Throws QueueFull, or Error when the queue is stopping.
    std::string submit(JobRequest r);

    std::optional<JobStatus> status(const std::string& id) const;
    // Waits until the job's version passes `seen` (or it is finished), at most `timeout`. nullopt: unknown id.
    std::optional<JobStatus> wait_change(const std::string& id, uint64_t seen, std::chrono::milliseconds timeout) const;
    // Waits until the job is finished (or the queue stops). nullopt: unknown id.
    std::optional<JobStatus> wait_finished(const std::string& id) const;

    enum class CancelResult { NotFound, Cancelled, AlreadyFinished };
    CancelResult cancel(const std::string& id);
    int interrupt_running();           // cancels every running job (A1111 /interrupt); returns how many
    std::optional<JobStatus> current() const;  // the most recently started running job
    void forget(const std::string& id);        // drops a finished job now (synchronous routes)
    std::vector<JobStatus> list() const;       // without results or previews

    struct Stats {
        size_t queued = 0, running = 0, jobs = 0;
        uint64_t done = 0, failed = 0, cancelled = 0;
        std::vector<std::string> loaded;  // model names with a worker
    };
    Stats stats() const;

    void stop();  // cancels everything, joins the workers; later submits throw
    bool stopping() const { return stopping_.load(); }

private:
    struct Job;
    struct Slot;
    void worker(Slot* slot);
    void run_job(Slot& slot, DiffusionModel& m, const std::shared_ptr<Job>& job);
    void ensure_slots_locked();
    void finish_locked(Job& j, JobState s);
    void prune_locked();
    void reap_retired();
    JobStatus snapshot_locked(const Job& j, bool heavy) const;
    void log_info(const std::string& msg) const;

    ModelStore& store_;
    QueueOptions opt_;
    mutable std::mutex mu_;
    mutable std::condition_variable changed_;  // any job changed, or a slot's work arrived
    std::deque<std::shared_ptr<Job>> pending_;
    std::map<std::string, std::shared_ptr<Job>> jobs_;
    std::deque<std::string> finished_order_;
    std::vector<std::unique_ptr<Slot>> slots_;    // live workers
    std::vector<std::unique_ptr<Slot>> retired_;  // exited or exiting workers, joined later
    std::atomic<bool> stopping_{false};
    uint64_t started_counter_ = 0;
    size_t finished_bytes_ = 0;  // PNG bytes held by the jobs in finished_order_
    Stats counters_;
};

}  // namespace nuance::server
