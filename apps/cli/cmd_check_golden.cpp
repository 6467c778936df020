// nuance check-golden DIR: parity with the reference implementations on a golden folder.
#include <algorithm>
#include <cstdio>

#include "backends/cpu/dnnl_context.h"
#include "commands.h"
#include "eval/check_golden.h"
#include "eval/golden_case.h"

namespace nuance::cli {

Runner add_check_golden(CLI::App& app) {
    auto dir = std::make_shared<std::string>();
    auto threads = std::make_shared<int>(0);
    auto precision = std::make_shared<std::string>("fp32");
    CLI::App* c = app.add_subcommand("check-golden", "Compare with the reference on a golden folder; exit 1 on FAIL");
    c->add_option("dir", *dir, "Golden folder (one case or a folder of cases)")->required();
    c->add_option("-t,--threads", *threads, "CPU threads");
    c->add_option("--precision", *precision,
                  "fp32 (parity: every case must PASS) | bf16 (reports the error of bf16 products; the fp32 "
                  "tolerances then flag what bf16 moves beyond them)")
        ->capture_default_str();
    return [=] {
        cpu::set_num_threads(*threads);
        const Precision p = cpu::resolve_precision(parse_usage_precision(*precision));
        GoldenPrecisionScope scope(p);
        int passed = 0, failed = 0, skipped = 0;
        double worst_rel = 0;  // max_abs / atol over compared lines
        check_golden_dir(*dir, [&](const CompareLine& l) {
            std::string line = format_line(l);
            if (!l.skip && l.mean_abs > 0) line += " mean_abs=" + std::to_string(l.mean_abs);
            std::printf("%s\n", line.c_str());
            std::fflush(stdout);
            (l.skip ? skipped : l.pass ? passed : failed)++;
            if (!l.skip && l.atol > 0) worst_rel = std::max(worst_rel, l.max_abs / l.atol);
        });
        std::printf("%d passed, %d failed, %d skipped (precision %s, worst max_abs/atol %.3g)\n", passed, failed,
                    skipped, precision_name(p), worst_rel);
        return failed ? 1 : 0;
    };
}

}  // namespace nuance::cli
