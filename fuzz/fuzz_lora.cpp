// LoRA / LyCORIS files (src/adapters/lora_file.cpp, lora_apply.cpp) on hostile bytes: a safetensors file read as an
// adapter (every kind: LoRA/LoCon, LoHa, LoKr, Tucker cores, DoRA, IA3, OFT, BOFT, GLoRA, full and norm diffs, bias
// diffs) and merged into a tiny model at strength 0.5; restore() must then give back the very weights it had.
#include <cstdlib>

#include "adapters/lora.h"
#include "fuzz_util.h"
#include "io/safetensors.h"
#include "nn/layers.h"

namespace {

using namespace nuance;

// The seeds' layers (fuzz/make_seeds.py, seeds_lora): lora_unet_proj, lora_unet_conv_in, lora_unet_norm and
// lora_te_text_model_encoder_layers_0_self_attn_q_proj.
struct Unet : Module {
    Linear proj{8, 4};
    Conv2d conv{4, 4, 3, 1, 1};
    LayerNorm norm{4};
    Linear nobias{4, 4, false};
    void visit(ParamVisitor& v) override { v("proj", proj); v("conv_in", conv); v("norm", norm); v("nobias", nobias); }
};
struct Te : Module {
    Linear q{4, 4};
    void visit(ParamVisitor& v) override { v("text_model.encoder.layers.0.self_attn.q_proj", q); }
};

void fill(Module& m, float base) {
    for_each_param(m, [&](const std::string&, Param& p) {
        if (p.value.defined() || p.shape.empty()) return;
        p.value = Tensor::empty(p.shape);
        float* d = p.value.data<float>();
        for (int64_t i = 0; i < p.value.numel(); ++i) d[i] = base + 0.01f * (float)(i % 7);
    });
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    static Unet* unet = [] {
        auto* u = new Unet();
        fill(*u, 0.5f);
        u->nobias.bias.value = Tensor();
        return u;
    }();
    static Te* te = [] {
        auto* t = new Te();
        fill(*t, -0.25f);
        return t;
    }();
    nuance::fuzz::expect_ok_or_error([&] {
        WeightFile wf = load_safetensors(nuance::fuzz::exact_storage(data, size), "<fuzz>");
        const LoraFile f = lora_from_weights(std::move(wf), "<fuzz>");
        std::vector<std::pair<std::string, Tensor>> before;
        for (Module* m : {(Module*)unet, (Module*)te})
            for_each_param(*m, [&](const std::string& n, Param& p) { before.push_back({n, p.value}); });
        LoraMerge merge;
        try {
            merge.apply({{"unet", unet}, {"text_encoder", te}}, f, 0.5f, 0.25f);
        } catch (const Error&) {
            if (!merge.empty()) std::abort();  // a refused file changes nothing
            throw;
        }
        merge.restore();
        size_t i = 0;
        for (Module* m : {(Module*)unet, (Module*)te})
            for_each_param(*m, [&](const std::string&, Param& p) {
                if (p.value.raw() != before[i++].second.raw()) std::abort();  // the very tensors, back
            });
    });
    return 0;
}
