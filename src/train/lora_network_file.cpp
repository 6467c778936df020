// The LoRA network's file side: its tensors in kohya's / LyCORIS' layout (kohya_tensors, save_kohya) and a run that
// starts from a file (init_from, kohya's --network_weights). The network itself: lora_network.cpp.
#include <cmath>
#include <set>

#include "core/error.h"
#include "io/safetensors.h"
#include "train/lora_network.h"

namespace nuance {

namespace {

// The loader's role names (LoraModule::t) of an adapter's file keys (Adapter::tensors()).
const char* role_of_key(const std::string& key) {
    static const std::pair<const char*, const char*> kRoles[] = {
        {"lora_down.weight", "down"}, {"lora_up.weight", "up"},  {"lora_mid.weight", "mid"}, {"hada_w1_a", "w1_a"},
        {"hada_w1_b", "w1_b"},        {"hada_w2_a", "w2_a"},     {"hada_w2_b", "w2_b"},      {"hada_t1", "t1"},
        {"hada_t2", "t2"},            {"lokr_w1", "w1"},         {"lokr_w1_a", "w1_a"},      {"lokr_w1_b", "w1_b"},
        {"lokr_w2", "w2"},            {"lokr_w2_a", "w2_a"},     {"lokr_w2_b", "w2_b"},      {"lokr_t2", "t2"},
        {"weight", "ia3"},            {"oft_blocks", "oft_blocks"}, {"rescale", "rescale"}, {"a1.weight", "a1"},     {"a2.weight", "a2"},
        {"b1.weight", "b1"},          {"b2.weight", "b2"},       {"diff", "diff"},           {"diff_b", "diff_b"},
        {"w_norm", "w_norm"},         {"b_norm", "b_norm"}};
    for (const auto& [k, r] : kRoles)
        if (key == k) return r;
    return nullptr;
}

LoraKind kind_of(LoraAlgo a) {
    switch (a) {
        case LoraAlgo::LoRA: return LoraKind::LoRA;
        case LoraAlgo::LoHa: return LoraKind::LoHa;
        case LoraAlgo::LoKr: return LoraKind::LoKr;
        case LoraAlgo::IA3: return LoraKind::IA3;
        case LoraAlgo::OFT: return LoraKind::OFT;
        case LoraAlgo::BOFT: return LoraKind::BOFT;
        case LoraAlgo::GLoRA: return LoraKind::GLoRA;
        case LoraAlgo::Full: return LoraKind::Full;
        case LoraAlgo::Norm: return LoraKind::Norm;
    }
    return LoraKind::LoRA;
}

Shape without_trailing_ones(Shape s) {
    while (s.size() > 1 && s.back() == 1) s.pop_back();
    return s;
}

}  // namespace

LoraNetwork::InitReport LoraNetwork::init_from(const LoraFile& file, const std::vector<LoraModuleTarget>& targets) {
    InitReport rep;
    const std::string what = str("--network-weights '", file.path, "'");
    // Everything is checked first, then the tensors are copied: a refused file leaves the network as it was.
    struct Copy {
        Param* dst;
        Tensor src;
    };
    std::vector<Copy> copies;
    std::vector<std::pair<Adapter*, double>> alphas, constraints;
    std::set<const Adapter*> set;
    for (const LoraModuleTarget& t : targets) {
        auto it = t.weight ? by_weight_.find(t.weight) : by_weight_.end();
        if (it == by_weight_.end()) {
            rep.unused.push_back(t.module->name);
            continue;
        }
        Adapter& a = *it->second;
        const LoraModule& m = *t.module;
        NUANCE_CHECK(set.insert(&a).second, what, ": two modules adapt ", a.module, " (", m.name, " is the second)");
        NUANCE_CHECK(m.kind == kind_of(a.algo), what, ": module ", m.name, " is ", lora_kind_name(m.kind),
                     ", this run trains ", lora_algo_name(a.algo), " (--network)");
        NUANCE_CHECK(!m.dora_scale.defined() || a.magnitude.defined(), what, ": module ", m.name,
                     " is DoRA (it has a magnitude): add --dora");
        NUANCE_CHECK(m.dora_scale.defined() || !a.magnitude.defined(), what, ": module ", m.name,
                     " has no DoRA magnitude, this run trains one (--dora)");
        NUANCE_CHECK(!m.t.count("bm"), what, ": module ", m.name, " has a GLoRA Tucker core (bm), which nuance does ",
                     "not train");
        std::set<std::string> used;
        for (const auto& [key, p] : a.tensors()) {
            const bool dora = key == "dora_scale";
            const char* role = dora ? "dora_scale" : role_of_key(key);
            NUANCE_CHECK_CODE(role != nullptr, Internal, "no file role for adapter key ", key);
            const Tensor* src = dora ? &m.dora_scale : nullptr;
            if (!dora) {
                auto f = m.t.find(role);
                src = f == m.t.end() ? nullptr : &f->second;
            }
            if (src == nullptr && key == "diff_b") continue;  // a full file without the bias' change: it stays 0
            NUANCE_CHECK(src != nullptr, what, ": module ", m.name, " has no ", key, " (this run's ",
                         lora_algo_name(a.algo), " adapter on ", a.module, " trains ", key,
                         key == "rescale" ? "; drop --rescaled)" : "; other factor layouts: --rank, --factor, --decompose-both, --tucker)");
            NUANCE_CHECK(dtype_is_float(src->dtype()) &&
                             without_trailing_ones(src->shape()) == without_trailing_ones(p->shape),
                         what, ": module ", m.name, ": ", key, " is ", src->str(), ", this run's adapter on ", a.module,
                         " has ", p->shape, " (--rank ", a.rank, a.conv ? ", --conv-rank" : "", ")");
            used.insert(role);
            copies.push_back({p, src->f32().contiguous().reshape(p->shape).clone()});
        }
        NUANCE_CHECK(!m.t.count("diff_b") || used.count("diff_b"), what, ": module ", m.name, " has a bias change ",
                     "(diff_b), which this run's ", lora_algo_name(a.algo), " adapter on ", a.module, " does not train",
                     a.algo == LoraAlgo::Full ? " (the layer has no bias)" : " (only --network full trains biases)");
        for (const auto& [role, tensor] : m.t)
            NUANCE_CHECK(used.count(role) || role == "on_input", what, ": module ", m.name, " has a ", role,
                         " factor this run's ", lora_algo_name(a.algo), " adapter on ", a.module, " does not train (",
                         role == "rescale" ? "add --rescaled" : "--rank, --factor, --decompose-both, --tucker", ")");
        if (a.algo == LoraAlgo::OFT || a.algo == LoraAlgo::BOFT) {  // the alpha is the norm constraint: the file's
            const double c = m.has_alpha ? m.alpha : 0.0;
            NUANCE_CHECK(std::isfinite(c) && c >= 0 && c <= 1e6, what, ": module ", m.name, " has the OFT norm ",
                         "constraint ", c, " (expected a finite number in [0, 1e6])");
            constraints.emplace_back(&a, c);
        } else if (a.algo != LoraAlgo::IA3 && a.algo != LoraAlgo::Full) {
            // kohya loads alpha with the weights; without one every loader reads scale 1 (alpha = rank).
            const double alpha = m.has_alpha ? m.alpha : (double)a.rank;
            NUANCE_CHECK(std::isfinite(alpha) && alpha > 0, what, ": module ", m.name, " has alpha ", alpha);
            alphas.emplace_back(&a, alpha);
        }
    }
    NUANCE_CHECK(!copies.empty(), what, ": none of its ", file.modules.size(), " modules adapts a layer this run ",
                 "trains (", rep.unused.empty() ? std::string("no modules") : "e.g. " + rep.unused.front(),
                 "; --targets, --train-text-encoder)");
    for (Copy& c : copies) c.dst->value = std::move(c.src);
    for (auto& [a, alpha] : alphas) a->alpha = alpha;
    for (auto& [a, c] : constraints) a->constraint = c;
    rep.adapters = (int64_t)set.size();
    rep.fresh = (int64_t)adapters_.size() - rep.adapters;
    return rep;
}

std::vector<std::pair<std::string, Tensor>> LoraNetwork::kohya_tensors() const {
    std::vector<std::pair<std::string, Tensor>> t;
    for (const auto& a : adapters_) {
        // LyCORIS: IA3 writes no alpha but on_input; OFT's alpha is its norm constraint (0: none); full and the norm
        // modules none
        if (a->algo == LoraAlgo::IA3) t.emplace_back(a->name + ".on_input", Tensor::scalar(a->on_input ? 1.0f : 0.0f));
        else if (a->algo != LoraAlgo::Full && a->algo != LoraAlgo::Norm) t.emplace_back(a->name + ".alpha", Tensor::scalar(a->algo == LoraAlgo::OFT || a->algo == LoraAlgo::BOFT
                                                                    ? (float)a->constraint
                                                                    : (float)a->alpha));
        for (const auto& [k, p] : static_cast<const Adapter&>(*a).tensors())
            t.emplace_back(a->name + "." + k, p->value.contiguous());
    }
    return t;
}

void LoraNetwork::save_kohya(const std::string& path, const std::map<std::string, std::string>& metadata,
                             DType dtype) const {
    NUANCE_CHECK(dtype == DType::F32 || dtype == DType::F16 || dtype == DType::BF16, "LoRA: cannot save as ",
                 dtype_name(dtype), " (F32, F16 or BF16)");
    std::vector<std::pair<std::string, Tensor>> t = kohya_tensors();
    for (auto& [name, v] : t) v = v.to(dtype);
    save_safetensors(path, t, metadata);
}

}  // namespace nuance
