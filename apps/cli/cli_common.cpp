// Helpers shared by the subcommands.
#include "commands.h"
#include "core/error.h"

namespace nuance::cli {

Precision parse_usage_precision(const std::string& s) {
    try {
        return parse_precision(s);
    } catch (const Error& e) {
        fail(ErrorCode::InvalidArgument, "usage: --precision: ", e.what());
    }
}

}  // namespace nuance::cli
