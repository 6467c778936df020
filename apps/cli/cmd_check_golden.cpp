// nuance check-golden DIR: parity with the reference implementations on a golden folder.
#include <cstdio>

#include "backends/cpu/dnnl_context.h"
#include "commands.h"
#include "eval/check_golden.h"

namespace nuance::cli {

Runner add_check_golden(CLI::App& app) {
    auto dir = std::make_shared<std::string>();
    auto threads = std::make_shared<int>(0);
    CLI::App* c = app.add_subcommand("check-golden", "Compare with the reference on a golden folder; exit 1 on FAIL");
    c->add_option("dir", *dir, "Golden folder (one case or a folder of cases)")->required();
    c->add_option("-t,--threads", *threads, "CPU threads");
    return [=] {
        cpu::set_num_threads(*threads);
        int passed = 0, failed = 0, skipped = 0;
        check_golden_dir(*dir, [&](const CompareLine& l) {
            std::printf("%s\n", format_line(l).c_str());
            std::fflush(stdout);
            (l.skip ? skipped : l.pass ? passed : failed)++;
        });
        std::printf("%d passed, %d failed, %d skipped\n", passed, failed, skipped);
        return failed ? 1 : 0;
    };
}

}  // namespace nuance::cli
