// nuance eval <metric>: image-quality metrics on folders of images or on a model's samples. The metrics live in
// their own files (apps/cli/cmd_eval_*.cpp, one add_eval_X each, declared in commands.h); this file only collects
// them under one `eval` subcommand and dispatches to the one that parsed.
#include <memory>
#include <utility>
#include <vector>

#include "commands.h"
#include "core/error.h"

namespace nuance::cli {

Runner add_eval(CLI::App& app) {
    CLI::App* eval = app.add_subcommand(
        "eval", "Image-quality metrics (FID, KID, IS, LPIPS, CLIP score, precision/recall) on folders or a model");
    eval->require_subcommand(1);
    auto runners = std::make_shared<std::vector<std::pair<CLI::App*, Runner>>>();
    auto reg = [&](Runner (*add)(CLI::App&)) {
        const size_t before = eval->get_subcommands({}).size();
        Runner r = add(*eval);
        const auto subs = eval->get_subcommands({});
        for (size_t i = before; i < subs.size(); ++i) runners->emplace_back(subs[i], r);  // one add_* may add several
    };
    reg(add_eval_fid);
    reg(add_eval_lpips);
    reg(add_eval_clip);
    reg(add_eval_pr);
    return [runners] {
        for (auto& [sub, run] : *runners)
            if (sub->parsed()) return run();
        fail(ErrorCode::InvalidArgument, "usage: nuance eval needs a metric subcommand (see 'nuance eval --help')");
    };
}

}  // namespace nuance::cli
