#include "job_queue.h"

#include <algorithm>
#include <random>

#include "backends/backend.h"
#include "backends/cpu/dnnl_context.h"
#include "io/weights.h"
#include "models/taesd/taesd.h"
#include "server/preview.h"
#include "text/embedding_library.h"
#include "request_parse.h"
#include "controlnet_api.h"

namespace nuance::server {

namespace {
// Steps of the hires second pass as generate() runs them (img2img: int(steps * strength)); 0 without hires.
int hires_second_steps(const GenerateParams& p) {
    if (!p.hires.enabled) return 0;
    const int n = p.hires.steps > 0 ? p.hires.steps : p.steps;
    return std::min(n, (int)((double)n * p.hires.strength));
}
}  // namespace

namespace {

using Clock = std::chrono::steady_clock;

double unix_now() {
    return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

std::string new_job_id() {
    static thread_local std::mt19937_64 gen{std::random_device{}() ^ (uint64_t)Clock::now().time_since_epoch().count()};
    static const char* hex = "0123456789abcdef";
    uint64_t a = gen(), b = gen();
    std::string id(20, '0');
    for (int i = 0; i < 16; ++i) id[i] = hex[(a >> (i * 4)) & 15];
    for (int i = 16; i < 20; ++i) id[i] = hex[(b >> ((i - 16) * 4)) & 15];
    return id;
}

std::string to_string(const std::vector<uint8_t>& v) { return std::string(v.begin(), v.end()); }

// What a client learns about a model that failed to load: the kind of failure, never the loader's message (it names
// file system paths and may quote the file's first bytes, e.g. of a symlink's target). The log has the details.
std::string load_failure_for_client(ErrorCode code) {
    switch (code) {
        case ErrorCode::InvalidArgument:
        case ErrorCode::Unsupported: return "the file is not a checkpoint this server can load";
        case ErrorCode::NotFound: return "a file of the model is missing";
        case ErrorCode::OutOfMemory: return "out of memory";
        case ErrorCode::Io: return "the file cannot be read";
        default: return "internal error";
    }
}

void replace_all(std::string& s, const std::string& from, const std::string& to) {
    if (from.empty()) return;
    for (size_t at = s.find(from); at != std::string::npos; at = s.find(from, at + to.size())) s.replace(at, from.size(), to);
}

}  // namespace

int http_status_for(ErrorCode c) {
    switch (c) {
        case ErrorCode::InvalidArgument: return 400;
        case ErrorCode::Unsupported: return 400;
        case ErrorCode::NotFound: return 404;
        case ErrorCode::OutOfMemory: return 503;
        case ErrorCode::Cancelled: return 503;
        case ErrorCode::Io: return 500;
        case ErrorCode::Internal: return 500;
    }
    return 500;
}

const char* job_state_name(JobState s) {
    switch (s) {
        case JobState::Queued: return "queued";
        case JobState::Running: return "running";
        case JobState::Done: return "done";
        case JobState::Failed: return "failed";
        case JobState::Cancelled: return "cancelled";
    }
    return "unknown";
}

struct JobQueue::Job {
    std::string id;
    JobRequest req;
    std::atomic<bool> cancel{false};
    // Guarded by JobQueue::mu_.
    JobState state = JobState::Queued;
    int step = 0, total = 0, image = 0, images = 1;
    double created = 0;
    Clock::time_point started{};
    double elapsed_final = -1;
    uint64_t version = 1;
    uint64_t start_order = 0;
    uint64_t preview_step = 0;
    std::shared_ptr<const std::string> preview;
    std::vector<std::shared_ptr<const JobImage>> results;
    int error_status = 0;
    std::string error_message;
    size_t bytes() const {
        size_t n = 0;
        for (const auto& r : results) n += r->png.size();
        return n;
    }
};

struct JobQueue::Slot {
    ModelEntry model;
    std::thread thread;
    // Guarded by JobQueue::mu_.
    bool loading = true, busy = false, stop = false, exited = false;
};

JobQueue::JobQueue(ModelStore& store, QueueOptions o) : store_(store), opt_(std::move(o)) {}

JobQueue::~JobQueue() { stop(); }

void JobQueue::log_info(const std::string& msg) const {
    if (opt_.logger) opt_.logger->info(msg);
}

std::string JobQueue::submit(JobRequest r) {
    reap_retired();
    auto j = std::make_shared<Job>();
    j->req = std::move(r);
    j->created = unix_now();
    j->images = std::max(1, j->req.params.batch_count);
    j->total = j->req.params.steps;
    {
        std::lock_guard<std::mutex> lock(mu_);
        NUANCE_CHECK_CODE(!stopping_, Cancelled, "the server is shutting down");
        if (pending_.size() >= opt_.max_queued)
            throw QueueFull(str("the queue is full (", pending_.size(), " jobs waiting, limit ", opt_.max_queued,
                                "); retry later"));
        do j->id = new_job_id();
        while (jobs_.count(j->id));
        jobs_[j->id] = j;
        pending_.push_back(j);
        ensure_slots_locked();
    }
    changed_.notify_all();
    return j->id;
}

void JobQueue::ensure_slots_locked() {
    if (stopping_) return;
    auto has_slot = [&](const std::string& name) {
        for (const auto& s : slots_)
            if (s->model.name == name) return true;
        return false;
    };
    auto has_pending = [&](const std::string& name) {
        for (const auto& p : pending_)
            if (p->req.model.name == name) return true;
        return false;
    };
    for (const auto& job : pending_) {
        const ModelEntry& m = job->req.model;
        if (has_slot(m.name)) continue;
        if (slots_.size() >= opt_.max_models) {
            // Evict an idle worker nobody waits for; else this job waits for a worker to finish (and retire).
            auto it = std::find_if(slots_.begin(), slots_.end(), [&](const std::unique_ptr<Slot>& s) {
                return !s->busy && !s->loading && !has_pending(s->model.name);
            });
            if (it == slots_.end()) break;
            (*it)->stop = true;
            log_info(str("unloading model '", (*it)->model.name, "'"));
            retired_.push_back(std::move(*it));
            slots_.erase(it);
        }
        auto s = std::make_unique<Slot>();
        s->model = m;
        Slot* raw = s.get();
        slots_.push_back(std::move(s));
        raw->thread = std::thread(&JobQueue::worker, this, raw);
    }
    changed_.notify_all();
}

void JobQueue::worker(Slot* s) {
    std::shared_ptr<DiffusionModel> model;
    std::string load_error, client_error;
    log_info(str("loading model '", s->model.name, "'"));
    try {
        const auto t0 = Clock::now();
        if (opt_.threads > 0) cpu::set_num_threads(opt_.threads);
        model = std::shared_ptr<DiffusionModel>(load_model(s->model.path, opt_.load));
        try {
            if (!s->model.folder && !store_.hash(s->model.name)) store_.set_hash(s->model.name, file_sha256(s->model.path));
        } catch (const std::exception&) {  // the hash is informational
        }
        log_info(str("loaded ", model->family_name(), " model '", s->model.name, "' in ",
                     std::chrono::duration<double>(Clock::now() - t0).count(), " s"));
    } catch (const Error& e) {
        load_error = e.what();
        client_error = load_failure_for_client(e.code());
    } catch (const std::bad_alloc&) {
        load_error = client_error = "out of memory";
    } catch (const std::exception& e) {
        load_error = e.what();
        client_error = "internal error";
    }
    std::unique_lock<std::mutex> lock(mu_);
    s->loading = false;
    if (!model) {
        if (opt_.logger) opt_.logger->warn("cannot load model '", s->model.name, "' (", s->model.path, "): ", load_error);
        for (auto it = pending_.begin(); it != pending_.end();) {
            if ((*it)->req.model.name == s->model.name) {
                (*it)->error_status = client_error == "out of memory" ? 503 : 500;
                (*it)->error_message = str("cannot load model '", s->model.name, "': ", client_error,
                                           " (the server log has the details)");
                finish_locked(**it, JobState::Failed);
                it = pending_.erase(it);
            } else {
                ++it;
            }
        }
        s->stop = true;
    }
    for (;;) {
        std::shared_ptr<Job> job;
        changed_.wait(lock, [&] {
            if (s->stop || stopping_ || pending_.empty()) return s->stop || stopping_.load();
            const auto& first = pending_.front();
            if (first->req.model.name != s->model.name) {
                bool first_has_slot = false;
                for (const auto& o : slots_) first_has_slot = first_has_slot || o->model.name == first->req.model.name;
                if (!first_has_slot && slots_.size() >= opt_.max_models) {
                    s->stop = true;  // retire so the older job's model can load
                    return true;
                }
            }
            for (auto it = pending_.begin(); it != pending_.end(); ++it) {
                if ((*it)->req.model.name == s->model.name) {
                    job = *it;
                    pending_.erase(it);
                    return true;
                }
            }
            return false;
        });
        if (!job) break;
        job->state = JobState::Running;
        job->started = Clock::now();
        job->start_order = ++started_counter_;
        ++job->version;
        s->busy = true;
        changed_.notify_all();
        lock.unlock();
        run_job(*s, *model, job);
        lock.lock();
        s->busy = false;
        ensure_slots_locked();
        changed_.notify_all();
    }
    auto it = std::find_if(slots_.begin(), slots_.end(), [&](const std::unique_ptr<Slot>& p) { return p.get() == s; });
    if (it != slots_.end()) {
        retired_.push_back(std::move(*it));
        slots_.erase(it);
    }
    ensure_slots_locked();
    changed_.notify_all();
    lock.unlock();
    model.reset();           // free the weights outside the lock
    prune_packed_weights();  // and their packed copies now, not at the next model's first packing
    lock.lock();
    s->exited = true;
}

void JobQueue::run_job(Slot& slot, DiffusionModel& m, const std::shared_ptr<Job>& jp) {
    Job& j = *jp;
    GenerateParams p = j.req.params;
    const int n = std::max(1, p.batch_count);
    const int64_t seed0 = p.seed;
    // Unset fields (request_parse.h) come from the model: a 32x32 model is not asked for 512x512. Inside the try
    // below, so a model whose defaults are unusable fails the job, not the worker.
    auto resolve_defaults = [&] {
        GenerationDefaults model_defaults;
        try {
            model_defaults = generation_defaults(m);
        } catch (const Error& e) {  // clients see the model's name, not the server's path
            std::string msg = e.what();
            const std::string& path = j.req.model.path;
            for (size_t pos; !path.empty() && (pos = msg.find(path)) != std::string::npos;)
                msg.replace(pos, path.size(), j.req.model.name);
            throw Error(e.code(), msg);
        }
        if (opt_.defaults) opt_.defaults->put(j.req.model.path, model_defaults);
        apply_defaults(p, model_defaults);
        NUANCE_CHECK_CODE(opt_.max_side <= 0 || (p.width <= opt_.max_side && p.height <= opt_.max_side), InvalidArgument,
                          "the model's size ", p.width, "x", p.height, " is over this server's limit of ", opt_.max_side,
                          " pixels per side: send width and height");
        NUANCE_CHECK_CODE(opt_.max_pixels <= 0 || (int64_t)p.width * p.height <= opt_.max_pixels, InvalidArgument,
                          "the model's size ", p.width, "x", p.height, " is over this server's limit of ", opt_.max_pixels,
                          " pixels: send width and height");
        NUANCE_CHECK_CODE(opt_.max_steps <= 0 || p.steps <= opt_.max_steps, InvalidArgument, "the model's ", p.steps,
                          " steps are over this server's limit of ", opt_.max_steps, ": send steps");
        if (p.hires.enabled) {  // the second pass's size, with the model's VAE factor
            const HiresTarget t = hires_target(p.hires, p.width, p.height, m.vae_scale());
            NUANCE_CHECK_CODE((opt_.max_side <= 0 || (t.width <= opt_.max_side && t.height <= opt_.max_side)) &&
                                  (opt_.max_pixels <= 0 || (int64_t)t.width * t.height <= opt_.max_pixels),
                              InvalidArgument, "the hires target ", t.width, "x", t.height, " is over this server's ",
                              "limits (", opt_.max_side, " pixels per side, ", opt_.max_pixels, " pixels)");
        }
        {
            std::lock_guard<std::mutex> lock(mu_);  // what was really used, for infotexts and A1111's "info"
            GenerateParams& r = j.req.params;
            r.width = p.width;
            r.height = p.height;
            r.steps = p.steps;
            r.cfg_scale = p.cfg_scale;
            r.sampler = p.sampler;
            r.scheduler = p.scheduler;
            j.total = p.steps + hires_second_steps(p);
            ++j.version;
        }
    };
    p.batch_count = 1;  // one image per call, so finished images are visible (and kept) before the batch ends
    p.cancelled = [&j] { return j.cancel.load(std::memory_order_relaxed); };
    const LatentFormat latents = m.latent_format();
    const TinyAutoencoder* tae = opt_.taesd.get();
    if (tae && (latents.pixel_space || tae->config().latent_channels != latents.channels)) {
        if (opt_.logger)
            opt_.logger->warn(tae->describe(), " does not fit ", m.family_name(), " model '", j.req.model.name, "' (",
                              latents.channels, "-channel latents): its previews use the latent colour projection");
        tae = nullptr;
    }
    p.on_progress = [&](const GenerateProgress& pr) {
        std::shared_ptr<const std::string> png;
        const int every = opt_.preview_interval;
        if (every > 0 && pr.latents && (pr.step % every == 0 || pr.step == pr.total)) {
            try {
                const Image im = progress_preview(*pr.latents, pr.sigma, progress_denoised(pr), latents, opt_.preview_side,
                                                  tae);
                if (im.width > 0) png = std::make_shared<const std::string>(to_string(encode_png(im)));
            } catch (const std::exception&) {  // a preview is optional
            }
        }
        {
            std::lock_guard<std::mutex> lock(mu_);
            // Hires fix: both passes count as one run of first + second steps, so progress never goes back.
            const int first = pr.pass == 1 ? j.req.params.steps : 0;
            j.step = first + pr.step;
            j.total = pr.passes > 1 ? j.req.params.steps + hires_second_steps(j.req.params) : pr.total;
            if (png) {
                j.preview = std::move(png);
                j.preview_step = (uint64_t)j.image * (uint64_t)std::max(j.total, 1) + (uint64_t)j.step;
            }
            ++j.version;
        }
        changed_.notify_all();
    };
    JobState end = JobState::Done;
    int status = 0;
    std::string message;
    try {
        resolve_defaults();
        // The request's <lora:name:w> tags: merged into this worker's model for the job, and restored (the very
        // tensors the model had) when the job ends, however it ends.
        LoraMerge lora_merge;
        struct RestoreLoras {
            LoraMerge& m;
            ~RestoreLoras() { m.restore(); }
        } restore_loras{lora_merge};
        if (const auto tags = parse_lora_tags(p.prompt); !tags.empty()) {
            const auto lib = opt_.loras ? opt_.loras->library() : nullptr;
            NUANCE_CHECK(lib, "prompt: ", tags.front().text, " names a LoRA but this server has no LoRA folder (--lora-dir)");
            std::vector<std::string> warnings;
            const std::string hashes = apply_loras(m, resolve_lora_tags(tags, lib.get()), lora_merge, &warnings);
            for (const auto& w : warnings) log_info(str("job ", j.id, ": ", w));
            p.extra_infotext = lora_hashes_infotext(hashes);
        }
        p.embeddings = opt_.embeddings;
        load_request_controlnets(p.control, m);  // A1111 ControlNet units: loaded for this model (controlnet_api.h)
        for (int b = 0; b < n; ++b) {
            NUANCE_CHECK_CODE(!j.cancel.load(), Cancelled, "job cancelled");
            p.seed = seed0 + b;
            {
                std::lock_guard<std::mutex> lock(mu_);
                j.image = b;
                j.step = 0;
                ++j.version;
            }
            std::vector<GeneratedImage> out = generate(m, p);
            for (auto& g : out) {
                auto ji = std::make_shared<JobImage>();
                ji->png = to_string(encode_png(g.image, {{"parameters", g.infotext}}));
                ji->seed = g.seed;
                ji->infotext = std::move(g.infotext);
                ji->width = g.image.width;
                ji->height = g.image.height;
                if (opt_.outputs && opt_.outputs->enabled()) {
                    try {
                        ji->saved_as = opt_.outputs->save(ji->png, ji->seed);
                    } catch (const std::exception& e) {  // the image is still returned to the client
                        if (opt_.logger) opt_.logger->warn("cannot save output: ", e.what());
                    }
                }
                std::lock_guard<std::mutex> lock(mu_);
                j.results.push_back(std::move(ji));
                ++j.version;
            }
            changed_.notify_all();
        }
    } catch (const Error& e) {
        if (e.code() == ErrorCode::Cancelled || j.cancel.load()) {
            end = JobState::Cancelled;
            message = "cancelled";
        } else {
            end = JobState::Failed;
            status = http_status_for(e.code());
            message = e.what();
            // Client-visible: the model by its name, never its file system path.
            replace_all(message, slot.model.path, slot.model.name);
            if (opt_.loras && opt_.loras->enabled()) {  // nor the LoRA folder's
                replace_all(message, " in --lora-dir '" + opt_.loras->dir() + "'", " in the server's LoRA folder");
                replace_all(message, opt_.loras->dir() + "/", "");
            }
            if (opt_.embeddings) replace_all(message, opt_.embeddings->dir() + "/", "");  // nor the embeddings
            if (status >= 500) {
                if (opt_.logger) opt_.logger->warn("job ", j.id, " failed: ", message);
                message = str(e.code() == ErrorCode::Io ? "I/O error" : "internal error",
                              " while generating (the server log has the details)");
            }
        }
    } catch (const std::bad_alloc&) {
        end = JobState::Failed;
        status = 503;
        message = "out of memory";
    } catch (const std::exception& e) {
        end = JobState::Failed;
        status = 500;
        if (opt_.logger) opt_.logger->warn("job ", j.id, " failed: ", e.what());
        message = "internal error while generating (the server log has the details)";
    }
    if (end == JobState::Failed) log_info(str("job ", j.id, " failed: ", message));
    std::lock_guard<std::mutex> lock(mu_);
    j.error_status = status;
    j.error_message = message;
    finish_locked(j, end);
}

void JobQueue::finish_locked(Job& j, JobState s) {
    j.state = s;
    j.req.params.init_image.reset();  // kept finished jobs should not hold input images
    j.req.params.mask.reset();
    if (j.started != Clock::time_point{}) j.elapsed_final = std::chrono::duration<double>(Clock::now() - j.started).count();
    ++j.version;
    if (s == JobState::Done) ++counters_.done;
    if (s == JobState::Failed) ++counters_.failed;
    if (s == JobState::Cancelled) ++counters_.cancelled;
    finished_order_.push_back(j.id);
    finished_bytes_ += j.bytes();
    prune_locked();
    changed_.notify_all();
}

void JobQueue::prune_locked() {
    while (!finished_order_.empty() &&
           (finished_order_.size() > opt_.history ||
            (finished_bytes_ > opt_.history_bytes && finished_order_.size() > 1))) {
        auto it = jobs_.find(finished_order_.front());
        if (it != jobs_.end()) {
            finished_bytes_ -= std::min(finished_bytes_, it->second->bytes());
            jobs_.erase(it);
        }
        finished_order_.pop_front();
    }
}

void JobQueue::reap_retired() {
    std::vector<std::unique_ptr<Slot>> done;
    {
        std::lock_guard<std::mutex> lock(mu_);
        for (auto it = retired_.begin(); it != retired_.end();) {
            if ((*it)->exited) {
                done.push_back(std::move(*it));
                it = retired_.erase(it);
            } else {
                ++it;
            }
        }
    }
    for (auto& s : done)
        if (s->thread.joinable()) s->thread.join();
}

JobStatus JobQueue::snapshot_locked(const Job& j, bool heavy) const {
    JobStatus st;
    st.id = j.id;
    st.model = j.req.model.name;
    st.kind = j.req.kind;
    st.state = j.state;
    st.step = j.step;
    st.total = j.total;
    st.image = j.image;
    st.images = j.images;
    st.created = j.created;
    st.version = j.version;
    st.seed = j.req.params.seed;
    st.error_status = j.error_status;
    st.error_message = j.error_message;
    if (j.state == JobState::Queued) {
        int pos = 0;
        for (const auto& p : pending_) {
            if (p.get() == &j) break;
            ++pos;
        }
        st.queue_position = pos;
    }
    if (j.state == JobState::Running)
        st.elapsed_s = std::chrono::duration<double>(Clock::now() - j.started).count();
    else if (j.elapsed_final >= 0)
        st.elapsed_s = j.elapsed_final;
    const double per_image = j.total > 0 ? (double)j.step / j.total : 0.0;
    st.progress = j.state == JobState::Done ? 1.0 : std::clamp((j.image + per_image) / std::max(j.images, 1), 0.0, 1.0);
    if (j.state == JobState::Running && st.progress > 0.0) st.eta_s = st.elapsed_s / st.progress - st.elapsed_s;
    if (j.state == JobState::Done) st.eta_s = 0;
    st.preview_png = j.preview;
    st.preview_step = j.preview_step;
    st.results = j.results;
    if (heavy) st.request = j.req;
    return st;
}

std::optional<JobStatus> JobQueue::status(const std::string& id) const {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = jobs_.find(id);
    if (it == jobs_.end()) return std::nullopt;
    return snapshot_locked(*it->second, false);
}

std::optional<JobStatus> JobQueue::wait_change(const std::string& id, uint64_t seen, std::chrono::milliseconds timeout) const {
    std::unique_lock<std::mutex> lock(mu_);
    auto it = jobs_.find(id);
    if (it == jobs_.end()) return std::nullopt;
    std::shared_ptr<Job> j = it->second;
    changed_.wait_for(lock, timeout, [&] { return j->version > seen || job_finished(j->state) || stopping_.load(); });
    return snapshot_locked(*j, false);
}

std::optional<JobStatus> JobQueue::wait_finished(const std::string& id) const {
    std::unique_lock<std::mutex> lock(mu_);
    auto it = jobs_.find(id);
    if (it == jobs_.end()) return std::nullopt;
    std::shared_ptr<Job> j = it->second;
    // Workers notify on every state change; stop() finishes every job, so this ends.
    changed_.wait(lock, [&] { return job_finished(j->state); });
    return snapshot_locked(*j, true);
}

JobQueue::CancelResult JobQueue::cancel(const std::string& id) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = jobs_.find(id);
    if (it == jobs_.end()) return CancelResult::NotFound;
    Job& j = *it->second;
    if (job_finished(j.state)) return CancelResult::AlreadyFinished;
    j.cancel = true;
    if (j.state == JobState::Queued) {
        pending_.erase(std::remove_if(pending_.begin(), pending_.end(),
                                      [&](const std::shared_ptr<Job>& p) { return p.get() == &j; }),
                       pending_.end());
        j.error_message = "cancelled";
        finish_locked(j, JobState::Cancelled);
        ensure_slots_locked();
    }
    changed_.notify_all();
    return CancelResult::Cancelled;
}

int JobQueue::interrupt_running() {
    std::lock_guard<std::mutex> lock(mu_);
    int n = 0;
    for (auto& [id, j] : jobs_)
        if (j->state == JobState::Running && !j->cancel.exchange(true)) ++n;
    return n;
}

std::optional<JobStatus> JobQueue::current() const {
    std::lock_guard<std::mutex> lock(mu_);
    const Job* best = nullptr;
    for (const auto& [id, j] : jobs_)
        if (j->state == JobState::Running && (!best || j->start_order > best->start_order)) best = j.get();
    if (!best) return std::nullopt;
    return snapshot_locked(*best, false);
}

void JobQueue::forget(const std::string& id) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = jobs_.find(id);
    if (it == jobs_.end() || !job_finished(it->second->state)) return;
    finished_bytes_ -= std::min(finished_bytes_, it->second->bytes());
    jobs_.erase(it);
    finished_order_.erase(std::remove(finished_order_.begin(), finished_order_.end(), id), finished_order_.end());
}

std::vector<JobStatus> JobQueue::list() const {
    std::lock_guard<std::mutex> lock(mu_);
    std::vector<JobStatus> out;
    for (const auto& [id, j] : jobs_) out.push_back(snapshot_locked(*j, false));
    std::sort(out.begin(), out.end(), [](const JobStatus& a, const JobStatus& b) { return a.created < b.created; });
    return out;
}

JobQueue::Stats JobQueue::stats() const {
    std::lock_guard<std::mutex> lock(mu_);
    Stats s = counters_;
    s.queued = pending_.size();
    s.jobs = jobs_.size();
    for (const auto& [id, j] : jobs_) s.running += j->state == JobState::Running;
    for (const auto& sl : slots_) s.loaded.push_back(sl->model.name);
    return s;
}

void JobQueue::stop() {
    std::vector<std::unique_ptr<Slot>> all;
    {
        std::lock_guard<std::mutex> lock(mu_);
        stopping_ = true;
        for (auto& j : pending_) {
            j->cancel = true;
            j->error_message = "the server is shutting down";
            finish_locked(*j, JobState::Cancelled);
        }
        pending_.clear();
        for (auto& [id, j] : jobs_) j->cancel = true;
        for (auto& s : slots_) s->stop = true;
        for (auto& s : slots_) retired_.push_back(std::move(s));
        slots_.clear();
        changed_.notify_all();
    }
    // Workers exit after their current step (cancel) or model load; then they can be joined.
    for (;;) {
        std::unique_ptr<Slot> s;
        {
            std::lock_guard<std::mutex> lock(mu_);
            if (retired_.empty()) break;
            s = std::move(retired_.back());
            retired_.pop_back();
        }
        if (s->thread.joinable()) s->thread.join();
    }
}

}  // namespace nuance::server
