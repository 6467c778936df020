// Reading LoRA / LyCORIS files into LoraModules, and each module's delta(W) (see lora.h for the formats).
#include <algorithm>
#include <cmath>

#include "adapters/lora.h"
#include "backends/backend.h"
#include "core/checked.h"
#include "core/quantized_weight.h"
#include "io/weights.h"
#include "ops/cayley.h"
#include "ops/matmul.h"

namespace nuance {

const char* lora_kind_name(LoraKind k) {
    switch (k) {
        case LoraKind::LoRA: return "LoRA";
        case LoraKind::LoHa: return "LoHa";
        case LoraKind::LoKr: return "LoKr";
        case LoraKind::Full: return "full diff";
        case LoraKind::IA3: return "IA3";
        case LoraKind::OFT: return "OFT";
        case LoraKind::BOFT: return "BOFT";
        case LoraKind::GLoRA: return "GLoRA";
        case LoraKind::Norm: return "norm diff";
    }
    return "?";
}

namespace {

constexpr int64_t kMaxRank = 8192;
constexpr size_t kMaxModules = 100000;
constexpr int64_t kMaxOftBlock = 512;  // an OFT block is inverted (b^3 work per block): LyCORIS' are 2 to 64
constexpr int64_t kMaxBoftStages = 32;

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
    {".diff", "diff"},                      {".diff_b", "diff_b"},
    {".oft_blocks", "oft_blocks"},          {".rescale", "rescale"},
    {".a1.weight", "a1"},                   {".a2.weight", "a2"},
    {".b1.weight", "b1"},                   {".b2.weight", "b2"},
    {".bm.weight", "bm"},                   {".w_norm", "w_norm"},
    {".b_norm", "b_norm"},                  {".on_input", "on_input"},
    {".weight", "ia3"},  // IA3's scale vector: only with an on_input beside it (else the key is no adapter's)
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

// The module's kind from its tensors, and every factor's shape checked against its partners.
void validate_kind(const LoraFile& f, LoraModule& m) {
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
            return;
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
    } else if (has("oft_blocks")) {  // OFT [n, b, b] / BOFT [m, n, b, b] (+ rescale [out, 1...])
        check_factor(f, m, "oft_blocks", 3, 4);
        const Tensor& b = m.t["oft_blocks"];
        m.kind = b.dim() == 3 ? LoraKind::OFT : LoraKind::BOFT;
        const int64_t bs = b.size(b.dim() - 1), n = b.size(b.dim() - 3);
        NUANCE_CHECK(b.size(b.dim() - 2) == bs && bs <= kMaxOftBlock && n <= (int64_t)1 << 24 &&
                         (b.dim() == 3 || (b.size(0) <= kMaxBoftStages && bs % 2 == 0)),
                     "LoRA '", f.path, "': module ", m.name, ": oft_blocks ", b.shape(), " is not ",
                     b.dim() == 3 ? "[blocks, b, b]" : "[stages <= 32, blocks, b, b] with b even", " with b <= ",
                     kMaxOftBlock);
        if (has("rescale")) {
            check_factor(f, m, "rescale", 1, 4);
            NUANCE_CHECK(m.t["rescale"].numel() == n * bs && m.t["rescale"].size(0) == n * bs, "LoRA '", f.path,
                         "': module ", m.name, ": rescale ", m.t["rescale"].shape(), " does not fit oft_blocks ",
                         b.shape(), " (expected [", n * bs, ", 1...])");
        }
    } else if (has("a1") || has("a2") || has("b1") || has("b2") || has("bm")) {
        m.kind = LoraKind::GLoRA;
        for (const char* r : {"a1", "a2", "b1", "b2"}) { need(r); check_factor(f, m, r, 2, 4); }
        if (has("bm")) core("bm");
        for (const char* r : {"a1", "a2", "b1", "b2"})
            NUANCE_CHECK(std::min(m.t[r].size(0), flat_cols(m.t[r])) <= kMaxRank, "LoRA '", f.path, "': module ",
                         m.name, ": ", r, ".weight ", m.t[r].shape(), " has a rank above ", kMaxRank);
    } else if (has("ia3")) {
        m.kind = LoraKind::IA3;
        check_factor(f, m, "ia3", 1, 4);
        const Tensor& w = m.t["ia3"];
        bool vec = w.dim() == 1 || w.size(0) == 1;
        for (int64_t d = 2; d < w.dim(); ++d) vec = vec && w.size(d) == 1;
        NUANCE_CHECK(vec, "LoRA '", f.path, "': IA3 module ", m.name, ": weight ", w.shape(),
                     " is not a vector ([C] or [1, C, 1, 1])");
        NUANCE_CHECK(m.t["on_input"].numel() == 1, "LoRA '", f.path, "': IA3 module ", m.name, ": on_input ",
                     m.t["on_input"].shape(), " is not one value");
    } else if (has("w_norm")) {
        m.kind = LoraKind::Norm;
        check_factor(f, m, "w_norm", 1, 1);
        if (has("b_norm")) {
            check_factor(f, m, "b_norm", 1, 1);
            NUANCE_CHECK(m.t["b_norm"].numel() == m.t["w_norm"].numel(), "LoRA '", f.path, "': module ", m.name,
                         ": b_norm ", m.t["b_norm"].shape(), " does not fit w_norm ", m.t["w_norm"].shape());
        }
    } else if (has("diff") || has("diff_b")) {
        m.kind = LoraKind::Full;
        if (has("diff")) check_factor(f, m, "diff", 1, 4);
    } else {
        fail(ErrorCode::InvalidArgument, "LoRA '", f.path, "': module ", m.name,
             " has only an alpha / dora_scale / on_input / rescale tensor and no weights");
    }
}

void validate(const LoraFile& f, LoraModule& m) {
    validate_kind(f, m);
    if (m.t.count("diff_b")) check_factor(f, m, "diff_b", 1, 1);
    validate_dora(f, m);
    NUANCE_CHECK(!m.dora_scale.defined() || m.kind == LoraKind::LoRA || m.kind == LoraKind::LoHa ||
                     m.kind == LoraKind::LoKr || m.kind == LoraKind::GLoRA || m.kind == LoraKind::Full,
                 "LoRA '", f.path, "': module ", m.name, " is ", lora_kind_name(m.kind),
                 " with a DoRA magnitude, which LyCORIS does not make and nuance does not read");
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

namespace {

// GLoRA's two layouts (lora.h): LyCORIS 2.x+ a1 [in, r], a2 [r, in], b1 [out, r], b2 [r, in...]; the old one
// a1 [r, X], a2 [X, r], b1 [r, X], b2 [out, r]. ComfyUI's rule: the old one when its pattern holds, unless the
// current one's also holds and the layer is not square with a2's rows as wide.
bool glora_old_layout(const LoraModule& m, const Shape& shape) {
    const Tensor &a1 = m.t.at("a1"), &a2 = m.t.at("a2"), &b1 = m.t.at("b1"), &b2 = m.t.at("b2");
    const bool old = a1.size(0) == flat_cols(a2) && b1.size(0) == a1.size(0) && flat_cols(b2) == a1.size(0);
    const bool cur = flat_cols(a1) == a2.size(0) && flat_cols(b1) == a2.size(0) && b2.size(0) == a2.size(0);
    if (old && cur)  // (no layer given: a2 [in, r] is the old layout's when in > r)
        return shape.empty() ? a2.size(0) > flat_cols(a2) : shape.size() >= 2 && a2.size(0) == shape[0] && shape[0] == shape[1];
    return old && !m.t.count("bm");
}

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
        case LoraKind::GLoRA:  // the layout's own rank (a square layer as wide as the rank: see glora_old_layout)
            return glora_old_layout(*this, Shape{}) ? t.at("a1").size(0) : t.at("a2").size(0);
        case LoraKind::Full:
        case LoraKind::IA3:
        case LoraKind::OFT:
        case LoraKind::BOFT:
        case LoraKind::Norm: return 0;
    }
    return 0;
}

double LoraModule::scale() const {
    // GLoRA applies its alpha / rank inside delta() (the rank depends on the layout, which the layer tells).
    if (kind != LoraKind::LoRA && kind != LoraKind::LoHa && kind != LoraKind::LoKr) return 1.0;
    const int64_t r = rank();
    if (!has_alpha || r <= 0) return 1.0;  // no alpha: alpha = rank; LoKr without a decomposed factor: 1
    return alpha / (double)r;
}

bool LoraModule::uses_weight() const {
    return kind == LoraKind::IA3 || kind == LoraKind::OFT || kind == LoraKind::BOFT || kind == LoraKind::GLoRA;
}

bool LoraModule::strength_inside() const { return kind == LoraKind::OFT || kind == LoraKind::BOFT; }

const Tensor* LoraModule::bias_delta() const {
    auto it = t.find(kind == LoraKind::Norm ? "b_norm" : "diff_b");
    return it == t.end() ? nullptr : &it->second;
}

namespace {


// Cayley transforms of skew parts: R = (I + Q)(I - Q)^-1 with Q = B - B^T for each b x b block of `blocks` ([..., b,
// b]), Q scaled to norm `constraint` first when its norm (over all blocks) + 1e-8 exceeds it (LyCORIS' get_r; no
// constraint when <= 0). Q in double, the transform in ops/cayley (F32 values, as LyCORIS computes it).
std::vector<double> cayley_blocks(const Tensor& blocks, double constraint) {
    const int64_t b = blocks.size(blocks.dim() - 1), nb = blocks.numel() / (b * b);
    const Tensor bf = blocks.f32().contiguous();
    const float* src = bf.data<float>();
    std::vector<double> q((size_t)(nb * b * b));
    double norm2 = 0;
    for (int64_t k = 0; k < nb; ++k)
        for (int64_t i = 0; i < b; ++i)
            for (int64_t j = 0; j < b; ++j) {
                const double v = (double)src[(k * b + i) * b + j] - (double)src[(k * b + j) * b + i];
                q[(size_t)((k * b + i) * b + j)] = v;
                norm2 += v * v;
            }
    if (constraint > 0) {
        const double qn = std::sqrt(norm2) + 1e-8;
        if (qn > constraint)
            for (double& v : q) v *= constraint / qn;
    }
    Tensor qt = Tensor::empty(blocks.shape());
    for (int64_t i = 0; i < nb * b * b; ++i) qt.data<float>()[i] = (float)q[(size_t)i];
    const Tensor rt = cayley(qt).r;
    std::vector<double> r((size_t)(nb * b * b));
    for (int64_t i = 0; i < nb * b * b; ++i) r[(size_t)i] = rt.data<float>()[i];
    return r;
}

// rows[j * b + i] = sum_l m[i][l] * rows[j * b + l] (transpose: m[l][i]) for the b-row block j of a [rows, cols]
// F32 matrix, in place, with the block's matrix `m` (b x b, double) per block.
void mix_rows(float* rows, int64_t nblocks, int64_t b, int64_t cols, const double* mats, bool transpose,
              const std::vector<int64_t>* order = nullptr) {
#pragma omp parallel if (nblocks * b * b * cols > (1 << 20))
    {
        std::vector<double> in((size_t)(b * cols)), out((size_t)(b * cols));
#pragma omp for schedule(static)
        for (int64_t k = 0; k < nblocks; ++k) {
            auto row = [&](int64_t i) { return rows + (order ? (*order)[(size_t)(k * b + i)] : k * b + i) * cols; };
            for (int64_t i = 0; i < b; ++i)
                for (int64_t c = 0; c < cols; ++c) in[(size_t)(i * cols + c)] = row(i)[c];
            std::fill(out.begin(), out.end(), 0.0);
            const double* mk = mats + k * b * b;
            for (int64_t i = 0; i < b; ++i)
                for (int64_t l = 0; l < b; ++l) {
                    const double f = transpose ? mk[l * b + i] : mk[i * b + l];
                    if (f == 0) continue;
                    const double* src = in.data() + l * cols;
                    double* dst = out.data() + i * cols;
                    for (int64_t c = 0; c < cols; ++c) dst[c] += f * src[c];
                }
            for (int64_t i = 0; i < b; ++i)
                for (int64_t c = 0; c < cols; ++c) row(i)[c] = (float)out[(size_t)(i * cols + c)];
        }
    }
}

}  // namespace

void LoraModule::check_target(const Shape& shape, const std::string& file) const {
    NUANCE_CHECK(!shape.empty(), "LoRA '", file, "': module ", name, " targets a scalar");
    const int64_t out = shape[0];
    const int64_t numel = shape_numel(shape), cols = numel / std::max<int64_t>(1, out);
    const int64_t in = shape.size() >= 2 ? shape[1] : cols;
    auto mismatch = [&](const std::string& got) {
        fail(ErrorCode::InvalidArgument, "LoRA '", file, "': module ", name, " (", lora_kind_name(kind), ") makes ",
             got, " but the model's weight is ", shape, " (a LoRA for another model?)");
    };
    NUANCE_CHECK(kind == LoraKind::Norm || kind == LoraKind::Full || shape.size() >= 2, "LoRA '", file, "': module ",
                 name, " (", lora_kind_name(kind), ") targets the vector ", shape, ", not a weight matrix");
    switch (kind) {
        case LoraKind::LoRA: {
            const Tensor &dn = t.at("down"), &up = t.at("up");
            if (t.count("mid")) {
                const Tensor& mid = t.at("mid");
                const int64_t K = mid.size(2) * mid.size(3);
                if (up.size(0) != out || flat_cols(dn) * K != cols)
                    mismatch(str("[", up.size(0), ", ", flat_cols(dn), ", ", mid.size(2), ", ", mid.size(3), "]"));
            } else if (up.size(0) != out || flat_cols(dn) != cols) {
                mismatch(str("[", up.size(0), ", ", flat_cols(dn), "]"));
            }
            return;
        }
        case LoraKind::LoHa: {
            const Tensor &a1 = t.at("w1_a"), &b1 = t.at("w1_b");
            if (t.count("t1")) {
                const Tensor& t1 = t.at("t1");
                if (a1.size(1) != out || b1.size(1) * t1.size(2) * t1.size(3) != cols)
                    mismatch(str("[", a1.size(1), ", ", b1.size(1), ", ", t1.size(2), ", ", t1.size(3), "]"));
            } else if (a1.size(0) != out || flat_cols(b1) != cols) {
                mismatch(str("[", a1.size(0), ", ", flat_cols(b1), "]"));
            }
            return;
        }
        case LoraKind::LoKr: {
            const int64_t a = t.count("w1") ? t.at("w1").size(0) : t.at("w1_a").size(0);
            const int64_t c = t.count("w1") ? t.at("w1").size(1) : t.at("w1_b").size(1);
            int64_t b = 0, w2cols = 0;
            if (t.count("w2")) {
                b = t.at("w2").size(0);
                w2cols = flat_cols(t.at("w2"));
            } else if (t.count("t2")) {
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
            return;
        }
        case LoraKind::Full:
            if (t.count("diff") && (t.at("diff").numel() != numel || t.at("diff").size(0) != out))
                mismatch(str(t.at("diff").shape()));
            return;
        case LoraKind::Norm:
            if (shape.size() != 1 || t.at("w_norm").numel() != out) mismatch(str(t.at("w_norm").shape()));
            return;
        case LoraKind::IA3: {
            const bool on_input = t.at("on_input").item() != 0;
            const int64_t n = t.at("ia3").numel();
            if (n != (on_input ? in : out))
                mismatch(str("a scale of ", n, " ", on_input ? "input channels" : "output rows"));
            return;
        }
        case LoraKind::OFT:
        case LoraKind::BOFT: {
            const Tensor& bl = t.at("oft_blocks");
            const int64_t b = bl.size(bl.dim() - 1), n = bl.size(bl.dim() - 3);
            if (n * b != out) mismatch(str(n, " blocks of ", b, " rows"));
            if (kind == LoraKind::BOFT && out % (b << (bl.size(0) - 1)) != 0)
                mismatch(str(bl.size(0), " butterfly stages of ", b, "-row blocks (", out, " rows are not a multiple of ",
                             b << (bl.size(0) - 1), ")"));
            return;
        }
        case LoraKind::GLoRA: {
            const Tensor &a1 = t.at("a1"), &a2 = t.at("a2"), &b1 = t.at("b1"), &b2 = t.at("b2");
            if (glora_old_layout(*this, shape)) {  // W a2 a1 + b2 b1, W [out, cols]
                if (a2.size(0) != cols || flat_cols(a1) != cols || b2.size(0) != out || flat_cols(b1) != cols)
                    mismatch(str("(old layout) a2 ", a2.shape(), ", a1 ", a1.shape(), ", b2 ", b2.shape(), ", b1 ",
                                 b1.shape()));
                return;
            }
            const int64_t r = a2.size(0), K = cols / std::max<int64_t>(1, in);
            bool ok = a1.size(0) == in && flat_cols(a1) == r && flat_cols(a2) == in && b1.size(0) == out;
            if (t.count("bm")) {
                const Tensor& bm = t.at("bm");
                ok = ok && flat_cols(b1) == bm.size(0) && b2.size(0) == bm.size(1) && flat_cols(b2) == in &&
                     bm.size(2) * bm.size(3) == K;
            } else {
                ok = ok && flat_cols(b1) == b2.size(0) && flat_cols(b2) == cols;
            }
            if (!ok || flat_cols(b1) > kMaxRank)
                mismatch(str("a1 ", a1.shape(), ", a2 ", a2.shape(), ", b1 ", b1.shape(), ", b2 ", b2.shape(),
                             t.count("bm") ? str(", bm ", t.at("bm").shape()) : std::string()));
            return;
        }
    }
}

Tensor LoraModule::delta(const Shape& shape, const std::string& file, const Tensor& weight, float strength) const {
    check_target(shape, file);
    const int64_t out = shape[0];
    const int64_t numel = shape_numel(shape), cols = numel / std::max<int64_t>(1, out);
    const int64_t in = shape.size() >= 2 ? shape[1] : cols, K = cols / std::max<int64_t>(1, in);
    Tensor W;
    if (uses_weight()) {
        NUANCE_ASSERT(weight.defined() && weight.numel() == numel, "LoRA ", name, ": delta needs the layer's weight");
        W = weight.f32().contiguous().reshape({out, cols});
    }
    Tensor d;
    switch (kind) {
        case LoraKind::LoRA: {
            const Tensor &dn = t.at("down"), &up = t.at("up");
            if (t.count("mid")) {  // Tucker LoCon: einsum("m n ..., i m, n j -> i j ...", mid, up, down)
                const Tensor& mid = t.at("mid");
                d = cp_rebuild(mid, up.f32().contiguous().reshape({out, mid.size(0)}),
                               dn.f32().contiguous().reshape({mid.size(1), flat_cols(dn)}));
                break;
            }
            d = mm(up, out, dn, cols);
            break;
        }
        case LoraKind::LoHa: {
            const Tensor &a1 = t.at("w1_a"), &b1 = t.at("w1_b"), &a2 = t.at("w2_a"), &b2 = t.at("w2_b");
            Tensor d2;
            if (t.count("t1")) {  // Tucker: einsum("i j k l, j r, i p -> p r k l", t, w_b, w_a)
                d = cp_rebuild(t.at("t1"), transposed(a1), b1);
                d2 = cp_rebuild(t.at("t2"), transposed(a2), b2);
            } else {
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
            const int64_t a = w1.size(0), c = w1.size(1), b = out / a, w2cols = cols / c;
            Tensor w2;
            if (t.count("w2")) {
                w2 = t.at("w2").f32().contiguous();
            } else if (t.count("t2")) {  // Tucker: einsum("i j k l, i p, j r -> p r k l", t2, w2_a, w2_b)
                w2 = cp_rebuild(t.at("t2"), transposed(t.at("w2_a")), t.at("w2_b"));
            } else {
                w2 = mm(t.at("w2_a"), b, t.at("w2_b"), w2cols);
            }
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
        case LoraKind::Full:
            d = t.count("diff") ? t.at("diff").f32().contiguous().clone() : Tensor::zeros({out, cols});
            break;
        case LoraKind::Norm: d = t.at("w_norm").f32().contiguous().clone(); break;
        case LoraKind::IA3: {  // W * w along the output rows, or the input channels (on_input)
            const bool on_input = t.at("on_input").item() != 0;
            const Tensor wv = t.at("ia3").f32().contiguous();
            const float* w = wv.data<float>();
            d = W.clone();
            float* p = d.data<float>();
            for (int64_t o = 0; o < out; ++o)
                for (int64_t c = 0; c < cols; ++c) p[o * cols + c] *= on_input ? w[c / K] : w[o];
            break;
        }
        case LoraKind::OFT:
        case LoraKind::BOFT: {
            const Tensor& bl = t.at("oft_blocks");
            const int64_t b = bl.size(bl.dim() - 1), n = bl.size(bl.dim() - 3);
            const int64_t stages = kind == LoraKind::BOFT ? bl.size(0) : 1;
            std::vector<double> r = cayley_blocks(bl, has_alpha ? alpha * (double)out : 0.0);
            // Each block s R + (1 - s) I: the strength interpolates every stage towards the identity.
            for (int64_t k = 0; k < stages * n; ++k)
                for (int64_t i = 0; i < b; ++i)
                    for (int64_t j = 0; j < b; ++j) {
                        double& v = r[(size_t)((k * b + i) * b + j)];
                        v = v * strength + (i == j ? 1.0 - strength : 0.0);
                    }
            d = W.clone();
            float* p = d.data<float>();
            if (kind == LoraKind::OFT) {
                mix_rows(p, n, b, cols, r.data(), /*transpose=*/true);  // einsum("k n m, k n ... -> k m ...")
            } else {
                // Stage i: rows grouped (c, g, k) with g in {0, 1} and k < 2^i * b/2 are taken in (c, k, g) order, and
                // every b consecutive of those are mixed by the stage's next block ("b i j, b j ... -> b i ...").
                std::vector<int64_t> order((size_t)out);
                for (int64_t i = 0; i < stages; ++i) {
                    const int64_t kk = (b / 2) << i;
                    for (int64_t q = 0; q < out; ++q) {
                        const int64_t c = q / (2 * kk), rem = q % (2 * kk), ki = rem / 2, g = rem % 2;
                        order[(size_t)q] = c * 2 * kk + g * kk + ki;
                    }
                    mix_rows(p, n, b, cols, r.data() + i * n * b * b, /*transpose=*/false, &order);
                }
            }
            if (t.count("rescale")) {
                const Tensor rs = t.at("rescale").f32().contiguous();
                for (int64_t o = 0; o < out; ++o)
                    for (int64_t c = 0; c < cols; ++c) p[o * cols + c] *= rs.data<float>()[o];
            }
            const float* w = W.data<float>();
            for (int64_t i = 0; i < numel; ++i) p[i] -= w[i];
            break;
        }
        case LoraKind::GLoRA: {
            const Tensor &a1 = t.at("a1"), &a2 = t.at("a2"), &b1 = t.at("b1"), &b2 = t.at("b2");
            const bool old = glora_old_layout(*this, shape);
            const int64_t r = old ? a1.size(0) : a2.size(0);
            if (old) {  // (W a2) a1 + b2 b1 on the flattened weight (ComfyUI's "old lycoris glora")
                d = matmul(matmul(W, a2.f32().contiguous().reshape({cols, r})), a1.f32().contiguous().reshape({r, cols}));
                const Tensor b = mm(b2, out, b1, cols);
                float* p = d.data<float>();
                for (int64_t i = 0; i < numel; ++i) p[i] += b.data<float>()[i];
            } else {  // W a1 a2 on W's input axis (per output row and kernel position) + b1 b2
                const Tensor A = mm(a1, in, a2, in);  // [in, in]
                Tensor wk = W;
                if (K > 1) wk = W.reshape({out, in, K}).transpose(1, 2).contiguous().reshape({out * K, in});
                Tensor wa = matmul(wk.reshape({out * K, in}), A);
                if (K > 1) wa = wa.reshape({out, K, in}).transpose(1, 2).contiguous();
                d = wa.contiguous().reshape({out, cols});
                const Tensor b = t.count("bm") ? cp_rebuild(t.at("bm"), b1.f32().contiguous().reshape({out, t.at("bm").size(0)}),
                                                           b2.f32().contiguous().reshape({t.at("bm").size(1), in}))
                                               : mm(b1, out, b2, cols);
                float* p = d.data<float>();
                for (int64_t i = 0; i < numel; ++i) p[i] += b.data<float>()[i];
            }
            const double s = has_alpha && r > 0 ? alpha / (double)r : 1.0;
            float* p = d.data<float>();
            for (int64_t i = 0; i < numel; ++i) p[i] = (float)(p[i] * s);
            break;
        }
    }
    return d.reshape(shape);
}

LoraFile load_lora(const std::string& path) { return lora_from_weights(load_weights(path), path); }

LoraFile lora_from_weights(WeightFile w, const std::string& path) {
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
        if (m.t.count("ia3") && !m.t.count("on_input")) {  // a plain "<module>.weight": no IA3 without on_input
            f.ignored.push_back(name + ".weight");
            m.t.erase("ia3");
        }
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
