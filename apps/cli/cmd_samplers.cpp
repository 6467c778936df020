// nuance samplers: the sampler and schedule names nuance accepts.
#include <cstdio>

#include "commands.h"
#include "samplers/registry.h"

namespace nuance::cli {

Runner add_samplers(CLI::App& app) {
    app.add_subcommand("samplers", "List samplers (with the spellings accepted) and schedules");
    return [] {
        const size_t n_types = list_schedule_types().size();
        std::printf("%-14s %-14s %-9s %s\n", "sampler", "A1111 name", "schedules", "other spellings");
        for (const auto& s : list_samplers()) {
            std::string sch, al;
            if (s.schedules.size() == n_types) sch = "all";
            else
                for (auto t : s.schedules) sch += std::string(sch.empty() ? "" : ",") + schedule_type_name(t);
            for (const auto& a : s.aliases) al += std::string(al.empty() ? "" : ", ") + a;
            std::printf("%-14s %-14s %-9s %s\n", s.name.c_str(), s.display_name.c_str(), sch.c_str(), al.c_str());
        }
        std::printf("\n%-22s %-18s %s\n", "schedule", "A1111 name", "other spellings");
        for (const auto& name : list_schedule_types()) {
            const ScheduleType t = parse_schedule_type(name);
            std::printf("%-22s %-18s %s\n", name.c_str(), schedule_type_display_name(t), schedule_type_aliases(t).c_str());
        }
        std::printf("\nOld A1111 names that carry a schedule (\"DPM++ 2M Karras\") are accepted as --sampler too.\n");
        return 0;
    };
}

}  // namespace nuance::cli
