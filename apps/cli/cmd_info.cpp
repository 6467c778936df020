// nuance info: what a checkpoint is (family, config, dtypes, components).
#include <cstdio>
#include <map>

#include "commands.h"
#include "io/weights.h"
#include "models/convert/original_format.h"
#include "models/stable_diffusion.h"

namespace nuance::cli {

namespace {
int run(const std::string& path, const std::string& vae, bool tensors) {
    std::printf("path: %s\n", path.c_str());
    if (!is_directory(path)) {
        const WeightFile wf = load_weights(path);
        std::map<std::string, int64_t> dtypes;
        int64_t params = 0;
        for (const auto& [k, t] : wf.tensors) {
            dtypes[dtype_name(t.dtype())] += t.numel();
            params += t.numel();
        }
        std::printf("tensors: %zu\nparameters: %lld\ndtypes:", wf.tensors.size(), (long long)params);
        for (const auto& [d, n] : dtypes) std::printf(" %s=%lld", d.c_str(), (long long)n);
        std::printf("\n");
        if (tensors)
            for (const auto& [k, t] : wf.tensors) std::printf("  %s %s\n", k.c_str(), t.str().c_str());
    }
    ModelLoadOptions o;
    o.vae_path = vae;
    const StableDiffusionModel m = load_stable_diffusion(path, o);
    std::printf("%s", m.describe().c_str());
    std::printf("components: text_encoder%s unet vae\n", m.te2.model ? " text_encoder_2" : "");
    return 0;
}
}  // namespace

Runner add_info(CLI::App& app) {
    auto path = std::make_shared<std::string>();
    auto vae = std::make_shared<std::string>();
    auto tensors = std::make_shared<bool>(false);
    CLI::App* c = app.add_subcommand("info", "Describe a checkpoint: family, config, dtypes, components");
    c->add_option("model", *path, "Checkpoint file or diffusers folder")->required();
    c->add_option("--vae", *vae, "VAE override, as for generate");
    c->add_flag("--tensors", *tensors, "List every tensor");
    return [=] { return run(*path, *vae, *tensors); };
}

}  // namespace nuance::cli
