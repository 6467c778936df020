// nuance samplers: the sampler and schedule names nuance accepts.
#include <cstdio>

#include "commands.h"
#include "samplers/registry.h"

namespace nuance::cli {

Runner add_samplers(CLI::App& app) {
    app.add_subcommand("samplers", "List samplers (with the spellings accepted) and schedules");
    return [] {
        std::printf("%-16s %-14s %-24s %s\n", "sampler", "A1111 name", "schedules", "aliases");
        for (const auto& s : list_samplers()) {
            std::string sch, al;
            for (auto t : s.schedules) sch += std::string(sch.empty() ? "" : ",") + schedule_type_name(t);
            for (const auto& a : s.aliases) al += std::string(al.empty() ? "" : ", ") + a;
            std::printf("%-16s %-14s %-24s %s\n", s.name.c_str(), s.display_name.c_str(), sch.c_str(), al.c_str());
        }
        std::printf("\nschedules:");
        for (const auto& t : list_schedule_types()) std::printf(" %s", t.c_str());
        std::printf("\n");
        return 0;
    };
}

}  // namespace nuance::cli
