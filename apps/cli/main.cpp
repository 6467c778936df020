// nuance: generate images with diffusion models, check parity with the reference, inspect checkpoints.
// Exit codes: 0 ok, 1 error (message on stderr), 2 usage. Every error, in every subcommand, is printed as
// "nuance: error: <message>"; usage errors read "nuance: error: usage: <message>" and add a line pointing at the
// subcommand's --help.
#include <cstdio>
#include <map>

#include "cli_validate.h"
#include "commands.h"
#include "core/error.h"

namespace {

std::string help_hint(const CLI::App& app) {
    for (const CLI::App* sub : app.get_subcommands())
        if (sub->parsed()) return nuance::str("(a usage error: run 'nuance ", sub->get_name(), " --help' for its options)");
    return "(a usage error: run 'nuance --help' or 'nuance <command> --help')";
}

void print_error(const std::string& msg) { std::fprintf(stderr, "nuance: error: %s\n", msg.c_str()); }

}  // namespace

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
    reg(nuance::cli::add_quantize);
    reg(nuance::cli::add_check_golden);
    reg(nuance::cli::add_make_random);
    reg(nuance::cli::add_samplers);
    reg(nuance::cli::add_bench);
    reg(nuance::cli::add_serve);
    reg(nuance::cli::add_prepare_emoji);
    reg(nuance::cli::add_train);
    reg(nuance::cli::add_eval_emoji);
    reg(nuance::cli::add_eval_quant);
    reg(nuance::cli::add_eval);
    nuance::cli::add_strict_number_checks(app);  // every subcommand: no nan/inf, no clamped integers, bounded -t
    try {
        app.parse(argc, argv);
    } catch (const CLI::CallForHelp& e) {
        return app.exit(e);
    } catch (const CLI::CallForAllHelp& e) {
        return app.exit(e);
    } catch (const CLI::CallForVersion& e) {
        return app.exit(e);
    } catch (const CLI::ParseError& e) {
        print_error(std::string("usage: ") + e.what());
        std::fprintf(stderr, "%s\n", help_hint(app).c_str());
        return 2;
    }
    for (auto& [sub, run] : runners) {
        if (!sub->parsed()) continue;
        try {
            return run();
        } catch (const nuance::Error& e) {
            const std::string msg = e.what();
            if (e.code() == nuance::ErrorCode::InvalidArgument && msg.rfind("usage: ", 0) == 0) {
                print_error(msg);
                std::fprintf(stderr, "%s\n", help_hint(app).c_str());
                return 2;
            }
            print_error(msg);
            return 1;
        } catch (const std::bad_alloc&) {
            print_error("out of memory");
            return 1;
        } catch (const std::exception& e) {
            print_error(e.what());
            return 1;
        }
    }
    return 2;
}
