#include "eval/lpips.h"

#include <cmath>
#include <regex>

#include "io/weights.h"
#include "ops/interpolate.h"
#include "ops/pool.h"

namespace nuance {

LpipsNet parse_lpips_net(const std::string& name) {
    if (name == "alex") return LpipsNet::Alex;
    if (name == "vgg" || name == "vgg16") return LpipsNet::Vgg;
    fail(ErrorCode::InvalidArgument, "LPIPS net '", name, "' is not supported (alex | vgg)");
}

const char* lpips_net_name(LpipsNet n) { return n == LpipsNet::Alex ? "alex" : "vgg"; }

Lpips::Lpips(LpipsNet net) : net_(net) {
    struct Def { int64_t index, in, out, k, stride, pad; bool pool_before; int slice; bool tap; };
    std::vector<Def> defs;
    if (net == LpipsNet::Alex) {
        // torchvision alexnet().features: conv0 relu1 | pool2 conv3 relu4 | pool5 conv6 relu7 | conv8 relu9 | conv10 relu11
        defs = {{0, 3, 64, 11, 4, 2, false, 1, true},
                {3, 64, 192, 5, 1, 2, true, 2, true},
                {6, 192, 384, 3, 1, 1, true, 3, true},
                {8, 384, 256, 3, 1, 1, false, 4, true},
                {10, 256, 256, 3, 1, 1, false, 5, true}};
        chns_ = {64, 192, 384, 256, 256};
        pool_kernel_ = 3;
        pool_stride_ = 2;
    } else {
        // torchvision vgg16().features: 3x3 convs, ReLU after each, 2x2 max-pools at 4, 9, 16, 23
        const int64_t ch[13][2] = {{3, 64},    {64, 64},   {64, 128},  {128, 128}, {128, 256}, {256, 256}, {256, 256},
                                   {256, 512}, {512, 512}, {512, 512}, {512, 512}, {512, 512}, {512, 512}};
        const int64_t idx[13] = {0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28};
        const int slice[13] = {1, 1, 2, 2, 3, 3, 3, 4, 4, 4, 5, 5, 5};
        for (int i = 0; i < 13; ++i)
            defs.push_back({idx[i], ch[i][0], ch[i][1], 3, 1, 1, i == 2 || i == 4 || i == 7 || i == 10, slice[i],
                            i == 1 || i == 3 || i == 6 || i == 9 || i == 12});
        chns_ = {64, 128, 256, 512, 512};
        pool_kernel_ = 2;
        pool_stride_ = 2;
    }
    for (const Def& d : defs) {
        Stage s;
        s.index = d.index;
        s.pool_before = d.pool_before;
        s.conv = Conv2d(d.in, d.out, d.k, d.stride, d.pad);
        stages_.push_back(std::move(s));
        slice_of_.push_back(d.slice);
        if (d.tap) tap_after_.push_back((int)stages_.size() - 1);
    }
    for (int64_t c : chns_) lins_.emplace_back(c, 1, 1, 1, 0, false);
    // The smallest side every stage accepts (alex 31: the third stage's pool needs a 3x3 map; vgg 16).
    auto fits = [&](int64_t side) {
        for (size_t i = 0; i < defs.size(); ++i) {
            if (defs[i].pool_before) {
                if (side < pool_kernel_) return false;
                side = (side - pool_kernel_) / pool_stride_ + 1;
            }
            side = (side + 2 * defs[i].pad - defs[i].k) / defs[i].stride + 1;
            if (side < 1) return false;
        }
        return true;
    };
    min_side_ = 1;
    while (!fits(min_side_)) ++min_side_;
}

void Lpips::visit(ParamVisitor& v) {
    for (size_t i = 0; i < stages_.size(); ++i)
        v("net.slice" + std::to_string(slice_of_[i]) + "." + std::to_string(stages_[i].index), stages_[i].conv);
    for (size_t k = 0; k < lins_.size(); ++k) v("lin" + std::to_string(k) + ".model.1", lins_[k]);
}

std::vector<Tensor> Lpips::features(const Tensor& x_in) const {
    NUANCE_CHECK(x_in.defined() && x_in.dim() == 4 && x_in.size(1) == 3, "LPIPS: images must be [N, 3, H, W], got ",
                 x_in.defined() ? x_in.str() : std::string("an undefined tensor"));
    NUANCE_CHECK(x_in.size(0) >= 1, "LPIPS: empty batch ", x_in.shape());
    NUANCE_CHECK(x_in.size(2) >= min_side_ && x_in.size(3) >= min_side_, "LPIPS (", lpips_net_name(net_),
                 "): images of ", x_in.size(2), "x", x_in.size(3), " are too small (at least ", min_side_, "x",
                 min_side_, ")");
    const Tensor sh = Tensor::from_vector({shift[0], shift[1], shift[2]}, {1, 3, 1, 1});
    const Tensor sc = Tensor::from_vector({scale[0], scale[1], scale[2]}, {1, 3, 1, 1});
    Tensor h = (x_in.f32() - sh) / sc;
    std::vector<Tensor> taps;
    size_t next_tap = 0;
    for (size_t i = 0; i < stages_.size(); ++i) {
        if (stages_[i].pool_before) h = max_pool2d(h, pool_kernel_, pool_stride_);
        h = relu(stages_[i].conv(h));
        if (next_tap < tap_after_.size() && tap_after_[next_tap] == (int)i) {
            taps.push_back(h);
            ++next_tap;
        }
    }
    return taps;
}

LpipsResult Lpips::forward(const Tensor& in0, const Tensor& in1, const LpipsOptions& o) const {
    NUANCE_CHECK(in0.defined() && in1.defined() && in0.shape() == in1.shape(), "LPIPS: the two image batches differ: ",
                 in0.defined() ? in0.str() : "undefined", " vs ", in1.defined() ? in1.str() : "undefined");
    const int64_t N = in0.size(0);
    // One trunk pass over both batches.
    const std::vector<Tensor> f = features(cat({in0.f32(), in1.f32()}, 0));
    LpipsResult r;
    for (size_t k = 0; k < f.size(); ++k) {
        const Tensor norm = sqrt(sum(square(f[k]), 1, true)) + 1e-10f;
        const Tensor n = f[k] / norm;
        const Tensor diff = square(n.slice(0, 0, N) - n.slice(0, N, 2 * N));
        const Tensor l = lins_[k](diff);  // [N, 1, h, w]
        r.per_layer.push_back(mean(mean(l, 3, true), 2, true));
        r.dist = k == 0 ? r.per_layer.back() : r.dist + r.per_layer.back();
        if (o.spatial) {
            const Tensor up = interpolate_bilinear(l, in0.size(2), in0.size(3));
            r.spatial = k == 0 ? up : r.spatial + up;
        }
        if (o.keep_diffs) r.diffs.push_back(diff);
    }
    return r;
}

std::map<std::string, Tensor> lpips_tensors(LpipsNet net, const std::vector<std::string>& files) {
    NUANCE_CHECK(!files.empty(), "LPIPS (", lpips_net_name(net), "): no weight files given");
    // torchvision features index -> slice
    std::map<int, int> slice_of;
    if (net == LpipsNet::Alex) {
        slice_of = {{0, 1}, {3, 2}, {6, 3}, {8, 4}, {10, 5}};
    } else {
        const int idx[13] = {0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28};
        const int sl[13] = {1, 1, 2, 2, 3, 3, 3, 4, 4, 4, 5, 5, 5};
        for (int i = 0; i < 13; ++i) slice_of[idx[i]] = sl[i];
    }
    static const std::regex features_re(R"(^features\.(\d{1,3})\.(weight|bias)$)");
    static const std::regex lins_re(R"(^lins\.(\d)\.(.*)$)");
    std::map<std::string, Tensor> out;
    std::map<std::string, std::string> origin;
    for (const std::string& file : files) {
        const WeightFile w = load_weights(file);
        for (const auto& [raw, t] : w.tensors) {
            std::string key = raw.rfind("module.", 0) == 0 ? raw.substr(7) : raw;
            std::smatch m;
            if (std::regex_match(key, m, features_re)) {
                const auto it = slice_of.find(std::stoi(m[1].str()));
                if (it == slice_of.end()) continue;  // not a conv of this trunk
                key = "net.slice" + std::to_string(it->second) + "." + m[1].str() + "." + m[2].str();
            } else if (std::regex_match(key, m, lins_re)) {
                key = "lin" + m[1].str() + "." + m[2].str();
            }
            const auto prev = out.find(key);
            if (prev != out.end()) {
                // the lins.{k} aliases of a full LPIPS state dict repeat lin{k}: the same values are fine
                const bool same = prev->second.shape() == t.shape() &&
                                  (t.numel() == 0 || max_abs_diff(prev->second.f32(), t.f32()) == 0.0f);
                NUANCE_CHECK(same, "LPIPS weights: tensor '", key, "' is given twice with different values (in '",
                             origin[key], "' and '", file, "')");
                continue;
            }
            out.emplace(key, t);
            origin.emplace(key, file);
        }
    }
    return out;
}

void load_lpips_tensors(Lpips& m, const std::map<std::string, Tensor>& tensors, const std::string& source) {
    LoadOptions o;
    o.source = source;
    load_module(m, tensors, o);
    for (const char* name : {"scaling_layer.shift", "scaling_layer.scale"}) {
        const auto it = tensors.find(name);
        if (it == tensors.end()) continue;
        NUANCE_CHECK(it->second.numel() == 3 && dtype_is_float(it->second.dtype()), "'", source, "': tensor '", name,
                     "' must hold 3 floats, got ", it->second.str());
        const std::vector<float> v = it->second.to_vector();
        float* dst = std::string(name) == "scaling_layer.shift" ? m.shift : m.scale;
        for (int c = 0; c < 3; ++c) {
            NUANCE_CHECK(std::isfinite(v[(size_t)c]) && (dst != m.scale || v[(size_t)c] != 0.0f), "'", source,
                         "': tensor '", name, "' has a bad value ", v[(size_t)c]);
            dst[c] = v[(size_t)c];
        }
    }
}

Lpips load_lpips(LpipsNet net, const std::vector<std::string>& files) {
    Lpips m(net);
    std::string source;
    for (const auto& f : files) source += (source.empty() ? "" : " + ") + f;
    load_lpips_tensors(m, lpips_tensors(net, files), source);
    return m;
}

}  // namespace nuance
