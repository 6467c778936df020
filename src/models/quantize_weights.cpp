#include "models/quantize_weights.h"

#include <fcntl.h>
#include <linux/magic.h>
#include <sys/mman.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "backends/backend.h"
#include "core/allocator.h"
#include "core/checked.h"
#include "core/error.h"
#include "core/quantized_weight.h"
#include "nn/module.h"

namespace nuance {

std::string QuantizeWeightsSummary::describe() const {
    int64_t n = 0;
    std::string types;
    for (const auto& [t, c] : tensors_per_type) {
        n += c;
        types += str(types.empty() ? "" : ", ", c, " ", t);
    }
    char sizes[96];
    std::snprintf(sizes, sizeof sizes, "%.0f MB -> %.0f MB", (double)bytes_before / 1e6, (double)bytes_after / 1e6);
    std::string s = str(recipe, ": ", n, " weights quantized");
    if (!types.empty()) s += str(" (", types, ")");
    s += str(", ", sizes);
    if (kept) s += str(", ", kept, " kept as they were");
    if (already_quantized) s += str(", ", already_quantized, " already quantized");
    if (!spill_note.empty()) s += str("; ", spill_note);
    char t[32];
    std::snprintf(t, sizeof t, "%.2f", seconds);
    return s + str(", in ", t, " s");
}

bool QuantizeWeightsOptions::spill_default() {
    const char* e = std::getenv("NUANCE_QUANT_SPILL");
    return !(e && std::strcmp(e, "0") == 0);
}

std::string quantize_rules_arch(const std::string& family) {
    if (family == "sd1" || family == "sd2") return "sd1";
    return family;  // sdxl, sd3, flux, dit: the names the rules know
}

QuantizeRecipe parse_weight_type(const std::string& name, const char* what) {
    const std::optional<QuantizeRecipe> r = parse_quantize_recipe(name);
    const bool block = r && ggml_type_info(r->type).block > 1;
    NUANCE_CHECK(block, what, " '", name, "' is not a quantized type; one of: q8_0, q4_0, q4_1, q5_0, q5_1, q2_k, ",
                 "q3_k, q4_k, q5_k, q6_k, iq4_nl, iq4_xs, q3_k_s, q3_k_m, q3_k_l, q4_k_s, q4_k_m, q5_k_s, q5_k_m ",
                 "(weights already run in their file's dtype: f16 / bf16 / f32 change nothing)");
    return *r;
}

namespace {

struct Slot {
    std::string name;  // "text_encoder/text_model.encoder.layers.0.self_attn.v_proj.weight" (sorting key)
    std::string rule_name;
    Param* p = nullptr;
    GgufComponent component = GgufComponent::Other;
};

constexpr size_t kSpillAlign = 4096;  // each weight's blocks start on a page: releasing one never drops another's

// An unlinked scratch file of `bytes` in `dir` ($TMPDIR, else /var/tmp, when empty) mapped shared and writable, or
// nullptr (with the reason in *note) when none can be made: no such folder, no space (fallocate reserves it all first,
// so a full disk is found here and never as a fault while writing), or a memory file system (tmpfs / ramfs: its
// pages would be memory by another name).
std::shared_ptr<uint8_t> spill_mapping(size_t bytes, std::string dir, std::string* note) {
    if (dir.empty()) {
        const char* t = std::getenv("TMPDIR");
        dir = t && *t ? t : "/var/tmp";
    }
    int fd = ::open(dir.c_str(), O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    if (fd < 0) {  // a file system without O_TMPFILE: a named file, unlinked at once
        std::string name = dir + "/nuance-blocks-XXXXXX";
        fd = ::mkostemp(name.data(), O_CLOEXEC);
        if (fd >= 0) ::unlink(name.c_str());
    }
    if (fd < 0) {
        *note = str("no scratch file in '", dir, "' (", std::strerror(errno), ")");
        return nullptr;
    }
    struct statfs fs {};
    const bool memory_fs = ::fstatfs(fd, &fs) == 0 && (fs.f_type == TMPFS_MAGIC || fs.f_type == RAMFS_MAGIC);
    if (memory_fs) {
        ::close(fd);
        *note = str("'", dir, "' is a memory file system");
        return nullptr;
    }
    const int err = ::posix_fallocate(fd, 0, (off_t)bytes);
    if (err != 0) {
        ::close(fd);
        *note = str("no room for ", bytes / 1000000, " MB in '", dir, "' (", std::strerror(err), ")");
        return nullptr;
    }
    void* p = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    ::close(fd);  // the mapping keeps the (nameless) file until it goes
    if (p == MAP_FAILED) {
        *note = str("cannot map the scratch file (", std::strerror(errno), ")");
        return nullptr;
    }
    *note = str("blocks in an unlinked scratch file in '", dir, "'");
    return std::shared_ptr<uint8_t>(static_cast<uint8_t*>(p), [bytes](uint8_t* q) { ::munmap(q, bytes); });
}

}  // namespace

QuantizeWeightsSummary quantize_model_weights(DiffusionModel& m, const QuantizeRecipe& recipe,
                                              const QuantizeWeightsOptions& options) {
    const bool text_encoders = options.text_encoders;
    const auto t0 = std::chrono::steady_clock::now();
    for (const std::optional<GgmlType> t :
         {std::optional(recipe.type), recipe.attn_v, recipe.attn_v_later, recipe.attn_qkv, recipe.ffn_down})
        NUANCE_CHECK(!t || (can_quantize(*t) && ggml_type_info(*t).block > 1), "quantize: type ",
                     ggml_type_info(*t).name, " is not a block type with a quantizer (", recipe.name, ")");
    QuantizeWeightsSummary sum;
    sum.recipe = recipe.name;
    const std::string arch = quantize_rules_arch(m.family_name());
    // Every product weight first, sorted by name per component: the recipes' "first N value projections" count in
    // sorted order, as the files nuance quantize writes do.
    std::vector<Slot> slots;
    for (auto& [name_of_module, mod] : m.modules()) {
        if (!mod) continue;
        const std::string mod_name = name_of_module;  // (a structured binding cannot be captured before C++20)
        const bool denoiser = mod_name == "unet" || mod_name == "transformer";
        const bool te = mod_name.rfind("text_encoder", 0) == 0;
        if (!denoiser && !(te && text_encoders)) continue;
        for_each_param(*mod, [&](const std::string& name, Param& p) {
            if (!p.matrix || !p.value.defined()) return;
            slots.push_back({mod_name + "/" + name, name, &p,
                             denoiser ? GgufComponent::Denoiser : GgufComponent::TextEncoder});
        });
    }
    std::sort(slots.begin(), slots.end(), [](const Slot& a, const Slot& b) {
        if (a.component != b.component) return a.component < b.component;
        return a.name < b.name;
    });
    // Plan every weight's type and place first (the recipes' counters run in this order), then quantize one at a time.
    struct Planned {
        const Slot* slot;
        GgmlType type;
        size_t bytes, offset;
    };
    std::vector<Planned> plan;
    size_t total = 0;
    int attn_v_seen = 0, attn_v_seen_te = 0;
    for (const Slot& s : slots) {
        const Tensor& w = s.p->value;
        if (is_quantized_storage(w)) {
            ++sum.already_quantized;
            continue;
        }
        const GgmlType t = w.device().is_cpu() && dtype_is_float(w.dtype())
                               ? resident_tensor_type(arch, s.rule_name, w.shape(), s.component, recipe,
                                                      s.component == GgufComponent::Denoiser ? attn_v_seen : attn_v_seen_te)
                               : GgmlType::F32;
        if (t == GgmlType::F32) {
            ++sum.kept;
            continue;
        }
        const size_t bytes = resident_weight_bytes(w.shape(), t);
        const size_t offset = total;
        total = add_or_throw<size_t>(total, (bytes + kSpillAlign - 1) / kSpillAlign * kSpillAlign, "quantize: blocks");
        plan.push_back({&s, t, bytes, offset});
    }
    // The blocks' home: a scratch file when one can be made (its pages leave memory and come back as a GGUF file's
    // do), else the process's memory, one buffer per weight.
    const std::shared_ptr<uint8_t> spill = options.spill && total > 0 ? spill_mapping(total, options.spill_dir, &sum.spill_note)
                                                                      : std::shared_ptr<uint8_t>();
    sum.spilled = spill != nullptr;
    const UncachedScope uncached;
    for (const Planned& pl : plan) {
        Param& p = *pl.slot->p;
        const Tensor w = p.value;
        // One f32 copy of this weight at a time (given back to the system, not to the tensor cache: no step asks
        // for these sizes again).
        std::shared_ptr<uint8_t> own = spill ? spill : large_buffer(pl.bytes);
        uint8_t* dst = spill ? spill.get() + pl.offset : own.get();
        Tensor h = quantize_weight_into(w, pl.type, dst, own, /*file_backed=*/spill != nullptr);
        sum.bytes_before += w.nbytes();
        sum.bytes_after += pl.bytes;
        sum.tensors_per_type[ggml_type_info(pl.type).name] += 1;
        release_file_pages(h);  // (written back by the kernel; read again on first use)
        p.value = std::move(h);
        release_packed_weight(w);
        release_file_pages(w);
    }
    sum.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return sum;
}

}  // namespace nuance
