// nuance: generate images with diffusion models, check parity with the reference, inspect checkpoints.
// Exit codes: 0 ok, 1 error (message on stderr), 2 usage.
#include <cstdio>
#include <map>

#include "commands.h"
#include "core/error.h"

int main(int argc, char** argv) {
    CLI::App app{"nuance: a C++ engine for diffusion image models"};
    app.require_subcommand(1);
    app.set_version_flag("--version", "nuance 0.1.0");
    std::map<CLI::App*, nuance::cli::Runner> runners;
    auto reg = [&](nuance::cli::Runner (*add)(CLI::App&)) {
        const size_t before = app.get_subcommands({}).size();
        nuance::cli::Runner r = add(app);
        auto subs = app.get_subcommands({});
        for (size_t i = before; i < subs.size(); ++i) runners[subs[i]] = r;  // one add_* may register several
    };
    reg(nuance::cli::add_generate);
    reg(nuance::cli::add_info);
    reg(nuance::cli::add_check_golden);
    reg(nuance::cli::add_make_random);
    reg(nuance::cli::add_samplers);
    reg(nuance::cli::add_bench);
    reg(nuance::cli::add_serve);
    reg(nuance::cli::add_prepare_emoji);
    reg(nuance::cli::add_train);
    reg(nuance::cli::add_eval_emoji);
    try {
        app.parse(argc, argv);
    } catch (const CLI::CallForHelp& e) {
        return app.exit(e);
    } catch (const CLI::CallForAllHelp& e) {
        return app.exit(e);
    } catch (const CLI::CallForVersion& e) {
        return app.exit(e);
    } catch (const CLI::ParseError& e) {
        std::fprintf(stderr, "nuance: usage error: %s\n", e.what());
        std::fprintf(stderr, "Run 'nuance --help' or 'nuance <command> --help'.\n");
        return 2;
    }
    for (auto& [sub, run] : runners) {
        if (!sub->parsed()) continue;
        try {
            return run();
        } catch (const nuance::Error& e) {
            std::fprintf(stderr, "nuance: error: %s\n", e.what());
            return e.code() == nuance::ErrorCode::InvalidArgument && std::string(e.what()).rfind("usage:", 0) == 0 ? 2 : 1;
        } catch (const std::bad_alloc&) {
            std::fprintf(stderr, "nuance: error: out of memory\n");
            return 1;
        } catch (const std::exception& e) {
            std::fprintf(stderr, "nuance: error: %s\n", e.what());
            return 1;
        }
    }
    return 2;
}
