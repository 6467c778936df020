// torch zip checkpoint loader. Format: torch/serialization.py (_save / _load): persistent ids are
// ('storage', <torch.XStorage>, key, location, numel) and tensors are
// torch._utils._rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad, backward_hooks[, metadata]).
#include "io/ckpt.h"

#include <algorithm>
#include <cstring>
#include <functional>
#include <map>
#include <numeric>

#include "core/checked.h"
#include "io/pickle.h"
#include "io/zip_reader.h"

namespace nuance {

namespace {

using Kind = PyValue::Kind;

constexpr const char* kRebuildTensor = "torch._utils._rebuild_tensor_v2";
constexpr const char* kRebuildParameter = "torch._utils._rebuild_parameter";
constexpr const char* kRebuildParameterWithState = "torch._utils._rebuild_parameter_with_state";
constexpr int64_t kMaxRank = 8;

// Deflated entries (torch stores them uncompressed; other zip writers may not) are inflated into memory: their
// claimed sizes are bounded per archive, so a small file cannot make us allocate and fill terabytes.
class InflateBudget {
public:
    InflateBudget(uint64_t file_size, const std::string& path) : left_(64 * file_size + (1ull << 30)), path_(path) {}
    void take(const ZipEntry& e) {
        if (e.method == 0) return;
        if (e.uncompressed_size > left_)
            fail(ErrorCode::InvalidArgument, "checkpoint '", path_, "': entry '", e.name, "' inflates to ",
                 e.uncompressed_size, " bytes, more than this ", "archive may expand to (", left_, " bytes left)");
        left_ -= e.uncompressed_size;
    }

private:
    uint64_t left_;
    const std::string& path_;
};

const std::map<std::string, DType>& storage_dtypes() {
    static const std::map<std::string, DType> m = {
        {"torch.FloatStorage", DType::F32}, {"torch.HalfStorage", DType::F16},  {"torch.BFloat16Storage", DType::BF16},
        {"torch.DoubleStorage", DType::F64}, {"torch.LongStorage", DType::I64}, {"torch.IntStorage", DType::I32},
        {"torch.ShortStorage", DType::I16}, {"torch.CharStorage", DType::I8},   {"torch.ByteStorage", DType::U8},
        {"torch.BoolStorage", DType::Bool},
    };
    return m;
}

// Reads the tensors out of the unpickled object graph, resolving storages against the zip.
class TensorBuilder {
public:
    // `copy_budget`: bytes that strided views may materialise in all (each copy is also bounded by its storage).
    // `fetch(key, tensor_name)` returns the bytes of storage `key` (a zip entry, or a record of a legacy file).
    using Fetch = std::function<std::shared_ptr<Storage>(const std::string& key, const std::string& tensor)>;
    TensorBuilder(Fetch fetch, const std::string& path, uint64_t copy_budget)
        : fetch_(std::move(fetch)), path_(path), copy_budget_(copy_budget) {}

    static bool is_tensor(const PyValue* v) {
        return v->kind == Kind::Object && (v->s == kRebuildTensor || v->s == kRebuildParameter ||
                                           v->s == kRebuildParameterWithState);
    }

    Tensor build(const std::string& name, const PyValue* v) {
        if (v->s == kRebuildParameter || v->s == kRebuildParameterWithState) {  // (data, requires_grad, hooks[, state])
            const PyValue* a = v->args;
            check(!a->items.empty() && a->items[0]->kind == Kind::Object && a->items[0]->s == kRebuildTensor, name,
                  "_rebuild_parameter expects a tensor as its first argument");
            v = a->items[0];
        }
        const auto& a = v->args->items;
        check(a.size() >= 4, name, "_rebuild_tensor_v2 with ", a.size(), " arguments, expected at least 4");
        check(a[0]->kind == Kind::PersistentId, name, "storage argument is a ", py_kind_name(a[0]->kind));
        check(a[1]->kind == Kind::Int && a[1]->i >= 0, name, "bad storage offset");
        const Shape size = ints(name, a[2], "size");
        const Shape stride = ints(name, a[3], "stride");
        check(size.size() == stride.size(), name, "size ", size, " and stride ", stride, " differ in rank");
        const auto [storage, dtype] = storage_of(name, a[0]->args);
        return view(name, storage, dtype, a[1]->i, size, stride);
    }

private:
    template <class... A>
    void check(bool ok, const std::string& name, const A&... a) const {
        if (!ok) fail(ErrorCode::InvalidArgument, "checkpoint '", path_, "': tensor '", name, "': ", a...);
    }

    Shape ints(const std::string& name, const PyValue* t, const char* what) const {
        check(t->kind == Kind::Tuple, name, what, " is a ", py_kind_name(t->kind), ", expected a tuple");
        check((int64_t)t->items.size() <= kMaxRank, name, what, " has rank ", t->items.size());
        Shape s;
        for (const PyValue* x : t->items) {
            check(x->kind == Kind::Int && x->i >= 0, name, what, " holds a non-integer or negative value");
            s.push_back(x->i);
        }
        return s;
    }

    std::pair<std::shared_ptr<Storage>, DType> storage_of(const std::string& name, const PyValue* pid) {
        check(pid->kind == Kind::Tuple && pid->items.size() >= 5 && pid->items[0]->is_str("storage"), name,
              "unrecognised persistent id (expected ('storage', type, key, location, numel))");
        const PyValue* type = pid->items[1];
        const PyValue* key = pid->items[2];
        const PyValue* numel = pid->items[4];
        check(type->kind == Kind::Global, name, "storage type is a ", py_kind_name(type->kind));
        const auto dt = storage_dtypes().find(type->s);
        if (dt == storage_dtypes().end())
            fail(ErrorCode::Unsupported, "checkpoint '", path_, "': tensor '", name, "': storage type '", type->s,
                 "' is not supported");
        check(key->kind == Kind::Str && numel->kind == Kind::Int && numel->i >= 0, name, "bad storage key or numel");
        const DType dtype = dt->second;
        auto it = storages_.find(key->s);
        if (it == storages_.end()) it = storages_.emplace(key->s, fetch_(key->s, name)).first;
        const size_t es = dtype_size(dtype);
        check((uint64_t)numel->i <= it->second->size() / es, name, "storage '", key->s, "' declares ", numel->i, " ",
              dtype_name(dtype), " elements but holds only ", it->second->size(), " bytes");
        return {it->second, dtype};
    }

    Tensor view(const std::string& name, const std::shared_ptr<Storage>& s, DType dtype, int64_t offset,
                const Shape& size, const Shape& stride) {
        const size_t es = dtype_size(dtype);
        const uint64_t elems = s->size() / es;
        int64_t numel = 0, out_bytes = 0;
        check(shape_nbytes_checked(size, dtype, &out_bytes) && shape_numel_checked(size, &numel), name, "size ", size,
              " of ", dtype_name(dtype), " overflows (more than 2^63 bytes)");
        if (numel == 0) {
            check((uint64_t)offset <= elems, name, "storage offset ", offset, " is past the storage (", elems,
                  " elements)");
            return Tensor::empty(size, dtype);
        }
        // Highest element index touched: offset + sum((size_i - 1) * stride_i), overflow-checked.
        int64_t last = offset;
        for (size_t d = 0; d < size.size(); ++d) {
            int64_t span = 0;
            const bool ok = checked_mul(size[d] - 1, stride[d], &span) && checked_add(last, span, &last);
            check(ok, name, "size ", size, " with stride ", stride, " overflows");
        }
        check((uint64_t)last < elems, name, "storage too small: size ", size, ", stride ", stride, ", offset ", offset,
              " reach element ", last, " but the storage holds ", elems, " ", dtype_name(dtype), " elements");

        // Zero-copy when the strides are a permutation of a contiguous layout (e.g. a stored transpose).
        std::vector<int64_t> order;  // physical (outermost-first) order of the logical dims
        for (size_t d = 0; d < size.size(); ++d)
            if (size[d] != 1) order.push_back((int64_t)d);
        std::stable_sort(order.begin(), order.end(), [&](int64_t x, int64_t y) { return stride[x] > stride[y]; });
        bool dense = true;
        int64_t expect = 1;
        for (auto it = order.rbegin(); it != order.rend(); ++it) {
            dense = dense && stride[*it] == expect;
            expect *= size[*it];
        }
        if (dense) {
            for (size_t d = 0; d < size.size(); ++d)
                if (size[d] == 1) order.push_back((int64_t)d);
            Shape physical;
            for (int64_t d : order) physical.push_back(size[d]);
            std::vector<int64_t> perm(size.size());  // perm[logical] = position in physical order
            for (size_t k = 0; k < order.size(); ++k) perm[order[k]] = (int64_t)k;
            Tensor t = Tensor::from_storage(s, (size_t)offset * es, physical, dtype);
            bool identity = true;
            for (size_t k = 0; k < perm.size(); ++k) identity = identity && perm[k] == (int64_t)k;
            return identity ? t : t.permute(perm);
        }

        // Overlapping or gapped layout (slices, stride 0): materialise. Bound the blow-up so a tiny storage
        // viewed with stride 0 cannot ask for terabytes, one tensor or many.
        check((uint64_t)out_bytes <= 8 * (uint64_t)s->size() + (1u << 20), name, "strided view ", size, " / ", stride,
              " of a ", s->size(), "-byte storage would expand to ", out_bytes, " bytes");
        check((uint64_t)out_bytes <= copy_budget_, name, "strided views would expand the checkpoint past ",
              copied_ + copy_budget_, " bytes in all");
        copy_budget_ -= (uint64_t)out_bytes;
        copied_ += (uint64_t)out_bytes;
        Tensor out = Tensor::empty(size, dtype);
        uint8_t* dst = static_cast<uint8_t*>(out.raw());
        const uint8_t* src = s->data();
        const size_t rank = size.size();
        std::vector<int64_t> idx(rank, 0);
        for (int64_t n = 0; n < numel; ++n) {
            int64_t e = offset;
            for (size_t d = 0; d < rank; ++d) e += idx[d] * stride[d];
            std::memcpy(dst + (size_t)n * es, src + (size_t)e * es, es);
            for (size_t d = rank; d-- > 0;) {
                if (++idx[d] < size[d]) break;
                idx[d] = 0;
            }
        }
        return out;
    }

    Fetch fetch_;
    const std::string& path_;
    std::map<std::string, std::shared_ptr<Storage>> storages_;
    uint64_t copy_budget_ = 0, copied_ = 0;
};

// Kernels assume aligned rows: a storage that does not start on a 64-byte boundary is copied once.
std::shared_ptr<Storage> aligned(std::shared_ptr<Storage> s) {
    if (reinterpret_cast<uintptr_t>(s->data()) % 64 == 0) return s;
    auto owned = Storage::allocate(s->size());
    if (s->size()) std::memcpy(owned->data(), s->data(), s->size());
    return owned;
}


// Every tensor under `v`, keys joined with '.': dicts (string or int keys) and the state of container objects
// (torch.nn.ParameterDict keeps its tensors in state["_parameters"]). Depth and visits are bounded: a pickle may
// share one dict many times over (memo), which must not make the walk exponential.
void collect_nested(const PyValue* v, const std::string& key, int depth, size_t& visits, const std::string& name,
                    TensorBuilder& builder, WeightFile& wf) {
    NUANCE_CHECK(depth <= 16, "checkpoint '", name, "': objects nested deeper than 16 levels at '", key, "'");
    NUANCE_CHECK(++visits <= (1u << 20), "checkpoint '", name, "': more than ", 1u << 20, " nested objects");
    if (TensorBuilder::is_tensor(v)) {
        NUANCE_CHECK(!key.empty(), "checkpoint '", name, "': a tensor without a name");
        NUANCE_CHECK(!wf.tensors.count(key), "checkpoint '", name, "': two tensors are named '", key, "'");
        wf.tensors.emplace(key, builder.build(key, v));
        return;
    }
    if (v->kind == Kind::Object && v->state) {
        const PyValue* st = v->state;
        if (st->kind == Kind::Dict)
            if (const PyValue* params = st->get("_parameters"); params && params->kind == Kind::Dict) st = params;
        collect_nested(st, key, depth + 1, visits, name, builder, wf);
        return;
    }
    if (v->kind != Kind::Dict) return;
    for (const auto& [k, child] : v->dict) {
        std::string part;
        if (k->kind == Kind::Str) part = k->s;
        else if (k->kind == Kind::Int) part = std::to_string(k->i);
        else continue;
        collect_nested(child, key.empty() ? part : key + "." + part, depth + 1, visits, name, builder, wf);
    }
}

// The state dict of an unpickled checkpoint: a top-level {"state_dict": {...}} is flattened, non-tensors ignored.
// `nested`: every tensor anywhere (collect_nested), and the top level's strings and ints as metadata.
WeightFile collect_tensors(const PyValue* root, const std::string& name, const char* format, TensorBuilder builder,
                           bool nested = false) {
    WeightFile wf;
    wf.path = name;
    wf.metadata["format"] = format;
    if (TensorBuilder::is_tensor(root))
        fail(ErrorCode::Unsupported, "checkpoint '", name, "' holds a single tensor, not a state dict");
    NUANCE_CHECK(root->kind == Kind::Dict, "checkpoint '", name, "': top-level object is a ", py_kind_name(root->kind),
                 ", expected a state dict");
    for (const char* k : {"epoch", "global_step"})
        if (const PyValue* v = root->get(k); v && v->kind == Kind::Int) wf.metadata[k] = std::to_string(v->i);
    if (nested) {
        for (const auto& [k, v] : root->dict) {
            if (k->kind != Kind::Str) continue;
            if (v->kind == Kind::Str) wf.metadata[k->s] = v->s.substr(0, 4096);
            if (v->kind == Kind::Int) wf.metadata[k->s] = std::to_string(v->i);
        }
        size_t visits = 0;
        collect_nested(root, "", 0, visits, name, builder, wf);
        return wf;
    }
    const PyValue* sd = root;
    if (const PyValue* inner = root->get("state_dict"); inner && inner->kind == Kind::Dict) sd = inner;

    for (const auto& [key, value] : sd->dict) {
        if (key->kind != Kind::Str || !TensorBuilder::is_tensor(value)) continue;  // non-tensor entries: ignored
        wf.tensors.insert_or_assign(key->s, builder.build(key->s, value));
    }
    return wf;
}

// The legacy (pre-1.6, `_use_new_zipfile_serialization=False`) torch.save format, still what torchvision's and the
// lpips package's weight files are: five pickles back to back -- the magic number 0x1950a86a20f9469cfc6c, the
// protocol version (1001), sys_info, the object (persistent ids ('storage', type, key, location, numel[, view])),
// the list of storage keys -- then, for each key in that order, an int64 element count and the raw little-endian
// elements.
WeightFile load_legacy(const std::shared_ptr<Storage>& file, const std::string& name, bool nested) {
    static const uint8_t kMagic[15] = {0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46,
                                       0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19, 0x2e};
    const uint8_t* p = file->data();
    const size_t n = file->size();
    NUANCE_CHECK(n >= sizeof kMagic && std::memcmp(p, kMagic, sizeof kMagic) == 0, "checkpoint '", name,
                 "' starts like a legacy (pre-1.6) torch file but lacks its magic number");
    size_t pos = sizeof kMagic, used = 0;
    auto next = [&](const std::set<std::string>& globals) {
        Pickle pk = unpickle(p + pos, n - pos, globals, name, {}, &used);
        pos += used;
        return pk;
    };
    static const std::set<std::string> none;
    const Pickle version = next(none);
    NUANCE_CHECK(version.root->kind == Kind::Int && version.root->i == 1001, "checkpoint '", name,
                 "': legacy torch protocol version is not 1001");
    const Pickle sys_info = next(none);
    if (sys_info.root->kind == Kind::Dict)
        if (const PyValue* le = sys_info.root->get("little_endian"); le && le->kind == Kind::Bool)
            NUANCE_CHECK_CODE(le->b, Unsupported, "checkpoint '", name, "' was saved big-endian");
    const Pickle object = next(ckpt_allowed_globals());
    const Pickle keys = next(none);
    NUANCE_CHECK(keys.root->kind == Kind::List, "checkpoint '", name, "': the storage key list is a ",
                 py_kind_name(keys.root->kind));
    // Element size of each storage, from the persistent ids anywhere in the object.
    std::map<std::string, size_t> elem;
    for (const PyValue& v : object.arena) {
        if (v.kind != Kind::PersistentId || !v.args || v.args->kind != Kind::Tuple || v.args->items.size() < 5) continue;
        const PyValue* type = v.args->items[1];
        const PyValue* key = v.args->items[2];
        if (type->kind != Kind::Global || key->kind != Kind::Str) continue;
        const auto dt = storage_dtypes().find(type->s);
        if (dt != storage_dtypes().end()) elem[key->s] = dtype_size(dt->second);
    }
    std::map<std::string, std::shared_ptr<Storage>> records;
    for (const PyValue* k : keys.root->items) {
        NUANCE_CHECK(k->kind == Kind::Str, "checkpoint '", name, "': a storage key is a ", py_kind_name(k->kind));
        const auto es = elem.find(k->s);
        NUANCE_CHECK(es != elem.end(), "checkpoint '", name, "': storage '", k->s, "' is used by no tensor");
        NUANCE_CHECK(n - pos >= 8, "checkpoint '", name, "': truncated before storage '", k->s, "'");
        int64_t count = 0;
        std::memcpy(&count, p + pos, 8);
        pos += 8;
        uint64_t bytes = 0;
        NUANCE_CHECK(count >= 0 && !__builtin_mul_overflow((uint64_t)count, (uint64_t)es->second, &bytes) &&
                         bytes <= n - pos,
                     "checkpoint '", name, "': storage '", k->s, "' claims ", count, " elements of ", es->second,
                     " bytes but only ", n - pos, " bytes are left");
        NUANCE_CHECK(!records.count(k->s), "checkpoint '", name, "': storage '", k->s, "' is listed twice");
        records[k->s] = aligned(Storage::wrap(const_cast<uint8_t*>(p + pos), (size_t)bytes, file, true));
        pos += (size_t)bytes;
    }
    auto fetch = [&](const std::string& key, const std::string& tensor) {
        const auto it = records.find(key);
        if (it == records.end())
            fail(ErrorCode::NotFound, "checkpoint '", name, "': tensor '", tensor, "': storage '", key,
                 "' is not in the file");
        return it->second;
    };
    return collect_tensors(object.root, name, "torch_legacy", TensorBuilder(fetch, name, 4 * (uint64_t)n + (64u << 20)),
                           nested);
}

}  // namespace

const std::set<std::string>& ckpt_allowed_globals() {
    static const std::set<std::string> s = [] {
        std::set<std::string> g = {
            "collections.OrderedDict",
            kRebuildTensor,
            kRebuildParameter,
            kRebuildParameterWithState,
            // Extras found in real CompVis / Lightning SD checkpoints (A1111 allows the same); they only ever
            // become inert placeholder objects.
            "pytorch_lightning.callbacks.model_checkpoint.ModelCheckpoint",
            "numpy.core.multiarray.scalar",
            "numpy.core.multiarray._reconstruct",
            "numpy.ndarray",
            "numpy.dtype",
            "_codecs.encode",
            "__builtin__.set",
            "builtins.set",
            // Textual-inversion embeddings of the original implementation keep string_to_param in one.
            "torch.nn.modules.container.ParameterDict",
        };
        for (const auto& [name, dtype] : storage_dtypes()) g.insert(name);
        return g;
    }();
    return s;
}

WeightFile load_ckpt(const std::string& path) { return load_ckpt(map_file(path), path); }

WeightFile load_ckpt_nested(const std::string& path) { return load_ckpt(map_file(path), path, true); }

WeightFile load_ckpt(std::shared_ptr<Storage> file, const std::string& name, bool nested) {
    NUANCE_CHECK(file != nullptr, "checkpoint '", name, "': no data");
    const uint8_t* p = file->data();
    const size_t n = file->size();
    if (n >= 2 && p[0] == 0x80 && p[1] <= 5) return load_legacy(file, name, nested);
    NUANCE_CHECK(n >= 4 && std::memcmp(p, "PK\x03\x04", 4) == 0, "checkpoint '", name,
                 "' is not a torch zip checkpoint (no zip signature)");
    const ZipReader zip(file, name);
    InflateBudget inflate(n, name);

    // The pickle is `<archive>/data.pkl`, where <archive> is a single folder (torch names it after the file).
    const ZipEntry* pkl = nullptr;
    std::string prefix;
    for (const ZipEntry& e : zip.entries()) {
        const std::string& en = e.name;
        const size_t slash = en.find('/');
        const bool top = en == "data.pkl";
        const bool nested = slash != std::string::npos && en.compare(slash + 1, std::string::npos, "data.pkl") == 0;
        if (top || nested) {
            NUANCE_CHECK(pkl == nullptr, "checkpoint '", name, "': more than one data.pkl ('", pkl ? pkl->name : "",
                         "', '", en, "')");
            pkl = &e;
            prefix = top ? "" : en.substr(0, slash + 1);
        }
    }
    NUANCE_CHECK(pkl != nullptr, "checkpoint '", name, "': no data.pkl in the archive (not a torch checkpoint)");
    if (const ZipEntry* bo = zip.find(prefix + "byteorder")) {
        inflate.take(*bo);
        const auto s = zip.read(*bo, true);
        const std::string order(reinterpret_cast<const char*>(s->data()), s->size());
        NUANCE_CHECK_CODE(order == "little", Unsupported, "checkpoint '", name, "': byte order '", order,
                          "' is not supported");
    }

    inflate.take(*pkl);
    const auto pkl_bytes = zip.read(*pkl, /*verify_crc=*/true);
    const Pickle pickle = unpickle(pkl_bytes->data(), pkl_bytes->size(), ckpt_allowed_globals(), name);

    // Strided (non-dense) views are copied: at most 4x the file plus 64 MiB in all, whatever the pickle asks.
    auto fetch = [&](const std::string& key, const std::string& tensor) {
        const std::string entry = prefix + "data/" + key;
        const ZipEntry* e = zip.find(entry);
        if (!e)
            fail(ErrorCode::NotFound, "checkpoint '", name, "': tensor '", tensor, "': storage '", key,
                 "' is missing from the archive (no entry '", entry, "')");
        inflate.take(*e);
        return aligned(zip.read(*e));
    };
    return collect_tensors(pickle.root, name, "torch_zip", TensorBuilder(fetch, name, 4 * (uint64_t)n + (64u << 20)),
                           nested);
}


}  // namespace nuance
