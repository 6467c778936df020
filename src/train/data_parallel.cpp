#include "train/data_parallel.h"

#include <string>
#include <vector>

#include "core/error.h"

namespace nuance {

dist::Range local_rows(int64_t global) {
    const int n = dist::size();
    NUANCE_CHECK(global >= n, "train: --batch ", global, " is smaller than the ", n,
                 " ranks of this run (every rank needs at least one sample of the global batch)");
    return dist::shard(global, n, dist::rank());
}

Batch batch_rows(const Batch& b, dist::Range r) {
    const int64_t B = b.images.size(0);
    NUANCE_CHECK(r.begin >= 0 && r.begin < r.end && r.end <= B && (int64_t)b.captions.size() == B &&
                     (int64_t)b.indices.size() == B,
                 "batch_rows: rows ", r.begin, "..", r.end, " of a batch of ", B, " images, ", b.captions.size(),
                 " captions, ", b.indices.size(), " indices");
    if (r.begin == 0 && r.end == B) return b;
    Batch out;
    out.images = b.images.slice(0, r.begin, r.end).contiguous();
    out.captions.assign(b.captions.begin() + r.begin, b.captions.begin() + r.end);
    out.indices.assign(b.indices.begin() + r.begin, b.indices.begin() + r.end);
    out.epoch = b.epoch;
    return out;
}

void reduce_gradients(ParamGrads& params, double local_weight) {
    if (dist::size() == 1) return;
    std::vector<Tensor> grads;
    size_t total = 0;
    for (auto& e : params.entries()) {
        if (!e.leaf.requires_grad()) continue;
        Tensor g = e.leaf.grad();
        if (!g.defined()) continue;
        NUANCE_ASSERT(g.dtype() == DType::F32 && g.is_dense(), "reduce_gradients: the gradient of '", e.name,
                      "' is not dense f32");
        grads.push_back(g);
        total += (size_t)g.numel();
    }
    // Every rank runs the same graph, so the same parameters have gradients; a difference would silently mix
    // gradients of different parameters in the flat buffer.
    const std::vector<uint64_t> counts = dist::allgather((uint64_t)total);
    for (size_t r = 1; r < counts.size(); ++r)
        NUANCE_CHECK(counts[r] == counts[0], "train: rank ", r, " has ", counts[r], " gradient values, rank 0 has ",
                     counts[0], " (the ranks built different models?)");
    std::vector<float> flat(total);
    size_t off = 0;
    const float w = (float)local_weight;
    for (const Tensor& g : grads) {
        const float* p = static_cast<const float*>(g.raw());  // dense: any memory order, the same on every rank
        for (int64_t i = 0; i < g.numel(); ++i) flat[off + (size_t)i] = p[i] * w;
        off += (size_t)g.numel();
    }
    dist::allreduce_sum(flat.data(), flat.size());
    off = 0;
    for (Tensor& g : grads) {
        float* p = static_cast<float*>(g.raw());
        for (int64_t i = 0; i < g.numel(); ++i) p[i] = flat[off + (size_t)i];
        off += (size_t)g.numel();
    }
}

uint64_t params_fingerprint(const ParamGrads& params) {
    uint64_t h = 1469598103934665603ull;
    for (const auto& e : params.entries()) {
        const Tensor v = e.param->value.contiguous();
        const unsigned char* p = static_cast<const unsigned char*>(v.raw());
        for (size_t i = 0; i < v.nbytes(); ++i) h = (h ^ p[i]) * 1099511628211ull;
    }
    return h;
}

void check_replicas(const ParamGrads& params, int64_t step) {
    if (dist::size() == 1) return;
    const std::vector<uint64_t> fp = dist::allgather(params_fingerprint(params));
    std::string bad;
    for (size_t r = 1; r < fp.size(); ++r)
        if (fp[r] != fp[0]) bad += (bad.empty() ? "" : ", ") + std::to_string(r);
    NUANCE_CHECK_CODE(bad.empty(), Internal, "train: after step ", step, " the weights of rank(s) ", bad,
                      " differ from rank 0's (the replicas diverged)");
}

}  // namespace nuance
