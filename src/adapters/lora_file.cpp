// Reading LoRA / LyCORIS files into LoraModules, and each module's delta(W) (see lora.h for the formats).
#include <algorithm>
#include <cmath>

#include "adapters/lora.h"
#include "backends/backend.h"
#include "core/checked.h"
#include "core/quantized_weight.h"
#include "io/weights.h"
#include "ops/matmul.h"

namespace nuance {

const char* lora_kind_name(LoraKind k) {
    switch (k) {
        case LoraKind::LoRA: return "LoRA";
        case LoraKind::LoHa: return "LoHa";
        case LoraKind::LoKr: return "LoKr";
        case LoraKind::Full: return "full diff";
    }
    return "?";
}

namespace {

constexpr int64_t kMaxRank = 8192;
constexpr size_t kMaxModules = 100000;

struct Suffix {
    const char* text;
    const char* role;
};
// Longest spellings first where one ends another.
constexpr Suffix kSuffixes[] = {
    {".lora_down.weight", "down"},          {".lora_up.weight", "up"},
    {".lora_mid.weight", "mid"},            {".lora_A.default.weight", "down"},
    {".lora_B.default.weight", "up"},       {".lora_A.weight", "down"},
    {".lora_B.weight", "up"},               {".lora_linear_layer.down.weight", "down"},
    {".lora_linear_layer.up.weight", "up"}, {"_lora.down.weight", "down"},
    {"_lora.up.weight", "up"},              {".lora.down.weight", "down"},
    {".lora.up.weight", "up"},              {".hada_w1_a", "w1_a"},
    {".hada_w1_b", "w1_b"},                 {".hada_w2_a", "w2_a"},
    {".hada_w2_b", "w2_b"},                 {".hada_t1", "t1"},
    {".hada_t2", "t2"},                     {".lokr_w1_a", "w1_a"},
    {".lokr_w1_b", "w1_b"},                 {".lokr_w2_a", "w2_a"},
    {".lokr_w2_b", "w2_b"},                 {".lokr_w1", "w1"},
    {".lokr_w2", "w2"},                     {".lokr_t2", "t2"},
    {".dora_scale", "dora_scale"},          {".lora_magnitude_vector.weight", "magnitude"},
    {".lora_magnitude_vector", "magnitude"}, {".alpha", "alpha"},
    {".diff", "diff"},
};

bool ends_with(const std::string& s, const std::string& suf) {
    return s.size() >= suf.size() && s.compare(s.size() - suf.size(), suf.size(), suf) == 0;
}

// diffusers' old attention-processor LoRAs: "<attn>.processor.to_q" -> "<attn>.to_q", "processor.to_out" ->
// "to_out.0".
std::string fix_processor_name(std::string m) {
    const std::string p = ".processor.";
    const size_t at = m.find(p);
    if (at == std::string::npos) return m;
    std::string tail = m.substr(at + p.size());
    if (tail == "to_out") tail = "to_out.0";
    return m.substr(0, at + 1) + tail;
}

int64_t flat_cols(const Tensor& t) {  // in * kh * kw of a [rows, ...] factor
    return t.dim() == 0 ? 0 : t.numel() / std::max<int64_t>(1, t.size(0));
}

void check_factor(const LoraFile& f, const LoraModule& m, const std::string& role, int64_t min_dim, int64_t max_dim) {
    const Tensor& t = m.t.at(role);
    NUANCE_CHECK(dtype_is_float(t.dtype()), "LoRA '", f.path, "': ", m.name, ".", role, " has dtype ",
                 dtype_name(t.dtype()), ", expected a float tensor");
    NUANCE_CHECK(t.dim() >= min_dim && t.dim() <= max_dim, "LoRA '", f.path, "': ", m.name, ".", role, " has shape ",
                 t.shape(), ", expected ", min_dim, " to ", max_dim, " dimensions");
    for (int64_t d = 0; d < t.dim(); ++d)
        NUANCE_CHECK(t.size(d) > 0, "LoRA '", f.path, "': ", m.name, ".", role, " has an empty shape ", t.shape());
}

// DoRA (Liu et al. 2024): kohya / LyCORIS "dora_scale" ([1, in(, 1, 1)]: norms per input channel, or [out, 1...]:
// per output row, as ComfyUI tells them apart) or PEFT's "lora_magnitude_vector" ([out] or [1, out, 1, 1]: always
// per output row). Moved out of the factor map into dora_scale.
void validate_dora(const LoraFile& f, LoraModule& m) {
    const bool ds = m.t.count("dora_scale") > 0, mv = m.t.count("magnitude") > 0;
    if (!ds && !mv) return;
    NUANCE_CHECK(!(ds && mv), "LoRA '", f.path, "': module ", m.name, " has both dora_scale and lora_magnitude_vector");
    const char* role = ds ? "dora_scale" : "magnitude";
    m.dora_scale = m.t[role];
    m.t.erase(role);
    m.dora_peft = mv;
    NUANCE_CHECK(dtype_is_float(m.dora_scale.dtype()) && m.dora_scale.dim() >= 1 && m.dora_scale.dim() <= 4 &&
                     m.dora_scale.numel() >= 1,
                 "LoRA '", f.path, "': ", m.name, ".", ds ? "dora_scale" : "lora_magnitude_vector", " is ",
                 m.dora_scale.str(), ", expected a float vector");
}

void validate(const LoraFile& f, LoraModule& m) {
    auto has = [&](const char* r) { return m.t.count(r) > 0; };
    auto need = [&](const char* r) {
        NUANCE_CHECK(has(r), "LoRA '", f.path, "': module ", m.name, " (", lora_kind_name(m.kind), ") has no '", r,
                     "' tensor");
    };
    // CP/Tucker cores: [r1, r2, kh, kw], r1, r2 <= kMaxRank, kh * kw <= 49 (a 7x7 kernel at most).
    auto core = [&](const char* r) {
        check_factor(f, m, r, 4, 4);
        const Tensor& t = m.t[r];
        NUANCE_CHECK(t.size(0) <= kMaxRank && t.size(1) <= kMaxRank && t.size(2) * t.size(3) <= 49, "LoRA '", f.path,
                     "': module ", m.name, ": Tucker core ", r, " ", t.shape(), " is too large");
    };
    if (has("down") || has("up") || has("mid")) {
        m.kind = LoraKind::LoRA;
        need("down"); need("up");
        check_factor(f, m, "down", 2, 4);
        check_factor(f, m, "up", 2, 4);
        const Tensor &d = m.t["down"], &u = m.t["up"];
        const int64_t r = d.size(0);
        NUANCE_CHECK(r <= kMaxRank, "LoRA '", f.path, "': module ", m.name, " has rank ", r, " (at most ", kMaxRank,
                     ")");
        const int64_t r_up = has("mid") ? m.t["mid"].size(0) : r;
        NUANCE_CHECK(flat_cols(u) == r_up && (u.dim() == 2 || (u.size(2) == 1 && u.size(3) == 1)), "LoRA '", f.path,
                     "': module ", m.name, ": lora_up ", u.shape(), " does not fit lora_down ", d.shape(),
                     " (expected [out, ", r_up, "] or [out, ", r_up, ", 1, 1])");
        if (has("mid")) {  // LoCon with a Tucker core: down [r, in, 1, 1], mid [r, r, kh, kw], up [out, r, 1, 1]
            core("mid");
            NUANCE_CHECK(m.t["mid"].size(1) == r && (d.dim() == 2 || (d.dim() == 4 && d.size(2) == 1 && d.size(3) == 1)),
                         "LoRA '", f.path, "': module ", m.name, ": lora_mid ", m.t["mid"].shape(),
                         " does not fit lora_down ", d.shape(), " (expected [", r, ", in, 1, 1])");
        }
    } else if (m.kind == LoraKind::LoHa) {
        for (const char* r : {"w1_a", "w1_b", "w2_a", "w2_b"}) { need(r); check_factor(f, m, r, 2, 4); }
        const Tensor &a1 = m.t["w1_a"], &b1 = m.t["w1_b"], &a2 = m.t["w2_a"], &b2 = m.t["w2_b"];
        if (has("t1") || has("t2")) {  // Tucker: t [r, r, kh, kw], w_a [r, out], w_b [r, in]
            need("t1"); need("t2");
            core("t1"); core("t2");
            const Tensor &t1 = m.t["t1"], &t2 = m.t["t2"];
            NUANCE_CHECK(a1.dim() == 2 && b1.dim() == 2 && a2.dim() == 2 && b2.dim() == 2 && t1.size(0) == a1.size(0) &&
                             t1.size(1) == b1.size(0) && t2.size(0) == a2.size(0) && t2.size(1) == b2.size(0) &&
                             a1.size(1) == a2.size(1) && b1.size(1) == b2.size(1) && t1.size(2) == t2.size(2) &&
                             t1.size(3) == t2.size(3),
                         "LoRA '", f.path, "': LoHa module ", m.name, ": hada_t1 ", t1.shape(), ", hada_w1_a ",
                         a1.shape(), ", hada_w1_b ", b1.shape(), ", hada_t2 ", t2.shape(), ", hada_w2_a ", a2.shape(),
                         ", hada_w2_b ", b2.shape(), " do not fit together");
            return validate_dora(f, m);
        }
        NUANCE_CHECK(a1.dim() == 2 && a2.dim() == 2 && a1.size(1) == b1.size(0) && a2.size(1) == b2.size(0) &&
                         a1.size(0) == a2.size(0) && flat_cols(b1) == flat_cols(b2) && b1.size(0) <= kMaxRank &&
                         b2.size(0) <= kMaxRank,
                     "LoRA '", f.path, "': LoHa module ", m.name, ": hada_w1_a ", a1.shape(), ", hada_w1_b ",
                     b1.shape(), ", hada_w2_a ", a2.shape(), ", hada_w2_b ", b2.shape(), " do not fit together");
    } else if (m.kind == LoraKind::LoKr) {
        NUANCE_CHECK(has("w1") != (has("w1_a") || has("w1_b")), "LoRA '", f.path, "': LoKr module ", m.name,
                     " needs lokr_w1 or lokr_w1_a + lokr_w1_b");
        NUANCE_CHECK(has("w2") != (has("w2_a") || has("w2_b")), "LoRA '", f.path, "': LoKr module ", m.name,
                     " needs lokr_w2 or lokr_w2_a + lokr_w2_b");
        if (!has("w1")) { need("w1_a"); need("w1_b"); }
        if (!has("w2")) { need("w2_a"); need("w2_b"); }
        for (auto& [role, t] : m.t)
            if (role != "t2" && role != "dora_scale" && role != "magnitude")
                check_factor(f, m, role, 2, role == "w2" || role == "w2_b" ? 4 : 2);
        if (has("t2")) {  // Tucker: t2 [r, r, kh, kw], w2_a [r, b], w2_b [r, d]
            core("t2");
            need("w2_a"); need("w2_b");
            NUANCE_CHECK(m.t["t2"].size(0) == m.t["w2_a"].size(0) && m.t["t2"].size(1) == m.t["w2_b"].size(0) &&
                             m.t["w2_b"].dim() == 2,
                         "LoRA '", f.path, "': LoKr module ", m.name, ": lokr_t2 ", m.t["t2"].shape(), " does not fit ",
                         "lokr_w2_a ", m.t["w2_a"].shape(), " and lokr_w2_b ", m.t["w2_b"].shape());
        }
        if (has("w1_a"))
            NUANCE_CHECK(m.t["w1_a"].size(1) == m.t["w1_b"].size(0) && m.t["w1_a"].size(1) <= kMaxRank, "LoRA '",
                         f.path, "': LoKr module ", m.name, ": lokr_w1_a ", m.t["w1_a"].shape(), " does not fit lokr_w1_b ",
                         m.t["w1_b"].shape());
        if (has("w2_a") && !has("t2"))
            NUANCE_CHECK(m.t["w2_a"].size(1) == m.t["w2_b"].size(0) && m.t["w2_a"].size(1) <= kMaxRank, "LoRA '",
                         f.path, "': LoKr module ", m.name, ": lokr_w2_a ", m.t["w2_a"].shape(), " does not fit lokr_w2_b ",
                         m.t["w2_b"].shape());
    } else if (has("diff")) {
        m.kind = LoraKind::Full;
        check_factor(f, m, "diff", 1, 4);
    } else {
        fail(ErrorCode::InvalidArgument, "LoRA '", f.path, "': module ", m.name,
             " has only an alpha / dora_scale tensor and no weights");
    }
    validate_dora(f, m);
}

// a [m, k] @ b [k, n], both flattened to 2-D, in F32.
Tensor mm(const Tensor& a, int64_t m, const Tensor& b, int64_t n) {
    const int64_t k = a.numel() / m;
    return matmul(a.f32().contiguous().reshape({m, k}), b.f32().contiguous().reshape({k, n}));
}

// LyCORIS' rebuild_tucker / A1111's make_weight_cp: W[p, r, k] = sum_ij t[i, j, k] wa_t[p, i] wb[j, r], as [P, R * K]
// (t [r1, r2, kh, kw], wa_t [P, r1], wb [r2, R]); one [P, r1] @ [r1, r2] @ [r2, R] product per kernel position.
Tensor cp_rebuild(const Tensor& t, const Tensor& wa_t, const Tensor& wb) {
    const int64_t r1 = t.size(0), r2 = t.size(1), K = t.size(2) * t.size(3);
    const int64_t P = wa_t.size(0), R = wb.size(1);
    const Tensor tf = t.f32().contiguous();
    const Tensor a = wa_t.f32().contiguous(), b = wb.f32().contiguous();
    Tensor out = Tensor::empty({P, R * K});
    float* o = out.data<float>();
    Tensor tk = Tensor::empty({r1, r2});
    for (int64_t k = 0; k < K; ++k) {
        const float* src = tf.data<float>();
        float* dst = tk.data<float>();
        for (int64_t i = 0; i < r1 * r2; ++i) dst[i] = src[i * K + k];
        const Tensor bk = matmul(matmul(a, tk), b);  // [P, R]
        const float* q = bk.data<float>();
        for (int64_t p = 0; p < P; ++p)
            for (int64_t r = 0; r < R; ++r) o[(p * R + r) * K + k] = q[p * R + r];
    }
    return out;
}

Tensor transposed(const Tensor& m) { return m.f32().contiguous().transpose(0, 1).contiguous(); }

}  // namespace

int64_t LoraModule::rank() const {
    switch (kind) {
        case LoraKind::LoRA: return t.at("down").size(0);
        case LoraKind::LoHa: return t.at("w1_b").size(0);
        case LoraKind::LoKr:
            if (t.count("t2")) return t.at("t2").size(0);
            if (t.count("w1_a")) return t.at("w1_a").size(1);
            if (t.count("w2_a")) return t.at("w2_a").size(1);
            return 0;
        case LoraKind::Full: return 0;
    }
    return 0;
}

double LoraModule::scale() const {
    if (kind == LoraKind::Full) return 1.0;
    const int64_t r = rank();
    if (!has_alpha || r <= 0) return 1.0;  // no alpha: alpha = rank; LoKr without a decomposed factor: 1
    return alpha / (double)r;
}

Tensor LoraModule::delta(const Shape& shape, const std::string& file) const {
    NUANCE_CHECK(!shape.empty(), "LoRA '", file, "': module ", name, " targets a scalar");
    const int64_t out = shape[0];
    const int64_t numel = shape_numel(shape), cols = numel / std::max<int64_t>(1, out);
    auto mismatch = [&](const std::string& got) {
        fail(ErrorCode::InvalidArgument, "LoRA '", file, "': module ", name, " (", lora_kind_name(kind), ") makes ",
             got, " but the model's weight is ", shape, " (a LoRA for another model?)");
    };
    Tensor d;
    switch (kind) {
        case LoraKind::LoRA: {
            const Tensor &dn = t.at("down"), &up = t.at("up");
            if (t.count("mid")) {  // Tucker LoCon: einsum("m n ..., i m, n j -> i j ...", mid, up, down)
                const Tensor& mid = t.at("mid");
                const int64_t in = flat_cols(dn), K = mid.size(2) * mid.size(3);
                if (up.size(0) != out || in * K != cols)
                    mismatch(str("[", up.size(0), ", ", in, ", ", mid.size(2), ", ", mid.size(3), "]"));
                d = cp_rebuild(mid, up.f32().contiguous().reshape({out, mid.size(0)}),
                               dn.f32().contiguous().reshape({mid.size(1), in}));
                break;
            }
            if (up.size(0) != out || flat_cols(dn) != cols) mismatch(str("[", up.size(0), ", ", flat_cols(dn), "]"));
            d = mm(up, out, dn, cols);
            break;
        }
        case LoraKind::LoHa: {
            const Tensor &a1 = t.at("w1_a"), &b1 = t.at("w1_b"), &a2 = t.at("w2_a"), &b2 = t.at("w2_b");
            Tensor d2;
            if (t.count("t1")) {  // Tucker: einsum("i j k l, j r, i p -> p r k l", t, w_b, w_a)
                const Tensor &t1 = t.at("t1"), &t2 = t.at("t2");
                const int64_t K = t1.size(2) * t1.size(3);
                if (a1.size(1) != out || b1.size(1) * K != cols)
                    mismatch(str("[", a1.size(1), ", ", b1.size(1), ", ", t1.size(2), ", ", t1.size(3), "]"));
                d = cp_rebuild(t1, transposed(a1), b1);
                d2 = cp_rebuild(t2, transposed(a2), b2);
            } else {
                if (a1.size(0) != out || flat_cols(b1) != cols) mismatch(str("[", a1.size(0), ", ", flat_cols(b1), "]"));
                d = mm(a1, out, b1, cols);
                d2 = mm(a2, out, b2, cols);
            }
            float* p = d.data<float>();
            const float* q = d2.data<float>();
            for (int64_t i = 0; i < numel; ++i) p[i] *= q[i];
            break;
        }
        case LoraKind::LoKr: {
            Tensor w1 = t.count("w1") ? t.at("w1").f32().contiguous()
                                      : mm(t.at("w1_a"), t.at("w1_a").size(0), t.at("w1_b"), t.at("w1_b").size(1));
            const int64_t a = w1.size(0), c = w1.size(1);
            int64_t b = 0, w2cols = 0;
            Tensor w2;
            if (t.count("w2")) {
                w2 = t.at("w2").f32().contiguous();
                b = w2.size(0);
                w2cols = flat_cols(w2);
            } else if (t.count("t2")) {  // Tucker: einsum("i j k l, i p, j r -> p r k l", t2, w2_a, w2_b)
                const Tensor& t2 = t.at("t2");
                b = t.at("w2_a").size(1);
                w2cols = t.at("w2_b").size(1) * t2.size(2) * t2.size(3);
            } else {
                b = t.at("w2_a").size(0);
                w2cols = flat_cols(t.at("w2_b"));
            }
            int64_t rows = 0, kcols = 0;
            if (__builtin_mul_overflow(a, b, &rows) || __builtin_mul_overflow(c, w2cols, &kcols) || rows != out ||
                kcols != cols)
                mismatch(str("kron([", a, ", ", c, "], [", b, ", ", w2cols, "])"));
            if (!w2.defined())
                w2 = t.count("t2") ? cp_rebuild(t.at("t2"), transposed(t.at("w2_a")), t.at("w2_b"))
                                   : mm(t.at("w2_a"), b, t.at("w2_b"), w2cols);
            // kron(w1, w2) with w2's columns (d, kh, kw) flattened: row i*b + k, column j*w2cols + l.
            d = Tensor::empty({out, cols});
            float* p = d.data<float>();
            const float* x = w1.data<float>();
            const float* y = w2.data<float>();
            for (int64_t i = 0; i < a; ++i)
                for (int64_t k = 0; k < b; ++k) {
                    float* row = p + (i * b + k) * cols;
                    for (int64_t j = 0; j < c; ++j) {
                        const float s = x[i * c + j];
                        const float* src = y + k * w2cols;
                        float* dst = row + j * w2cols;
                        for (int64_t l = 0; l < w2cols; ++l) dst[l] = s * src[l];
                    }
                }
            break;
        }
        case LoraKind::Full: {
            const Tensor& df = t.at("diff");
            if (df.numel() != numel || df.size(0) != out) mismatch(str(df.shape()));
            d = df.f32().contiguous().clone();
            break;
        }
    }
    return d.reshape(shape);
}

LoraFile load_lora(const std::string& path) {
    WeightFile w = load_weights(path);
    // An FP8 (or GGUF-quantized) LoRA file: its matrices as values (they are small, and the LoRA math reads them).
    for (auto& [key, t] : w.tensors)
        if (is_quantized_storage(t)) t = dequantize_weight(t);
    LoraFile f;
    f.path = path;
    f.name = stem(path);
    f.metadata = w.metadata;
    std::map<std::string, LoraModule> mods;
    for (auto& [key, t] : w.tensors) {
        const Suffix* hit = nullptr;
        for (const auto& s : kSuffixes)
            if (ends_with(key, s.text)) { hit = &s; break; }
        if (!hit) {
            f.ignored.push_back(key);
            continue;
        }
        std::string mod = key.substr(0, key.size() - std::string(hit->text).size());
        if (std::string(hit->text).rfind("_lora.", 0) == 0) mod = fix_processor_name(mod);
        NUANCE_CHECK(!mod.empty(), "LoRA '", path, "': tensor '", key, "' names no module");
        LoraModule& m = mods[mod];
        if (m.name.empty()) {
            NUANCE_CHECK(mods.size() <= kMaxModules, "LoRA '", path, "' has more than ", kMaxModules, " modules");
            m.name = mod;
        }
        const std::string role = hit->role;
        if (role == "alpha") {
            NUANCE_CHECK(t.numel() == 1 && dtype_is_float(t.dtype()), "LoRA '", path, "': '", key,
                         "' must be one float, got ", t.str());
            m.alpha = t.item();
            NUANCE_CHECK(std::isfinite(m.alpha), "LoRA '", path, "': '", key, "' is ", m.alpha);
            m.has_alpha = true;
            continue;
        }
        const std::string hk(hit->text);
        if (hk.rfind(".hada_", 0) == 0) m.kind = LoraKind::LoHa;
        if (hk.rfind(".lokr_", 0) == 0) m.kind = LoraKind::LoKr;
        NUANCE_CHECK(!m.t.count(role), "LoRA '", path, "': module ", mod, " has two '", role,
                     "' tensors (two spellings of the same weight)");
        m.t[role] = t;
    }
    for (auto& [name, m] : mods) {
        if (m.t.empty()) continue;  // a stray alpha: ignored
        validate(f, m);
        f.modules.push_back(std::move(m));
    }
    if (f.modules.empty()) {
        std::string ex;
        for (size_t i = 0; i < f.ignored.size() && i < 5; ++i) ex += (i ? ", " : "") + f.ignored[i];
        fail(ErrorCode::InvalidArgument, "LoRA '", path, "' holds no LoRA / LyCORIS weights (", w.tensors.size(),
             " tensors", ex.empty() ? "" : ", e.g. " + ex, ")");
    }
    return f;
}

}  // namespace nuance
