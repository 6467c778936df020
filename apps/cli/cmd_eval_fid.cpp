// nuance eval fid | kid | is | sweep: Inception-based metrics (src/eval/). Placeholder while the metrics land.
#include "commands.h"

namespace nuance::cli {

Runner add_eval_fid(CLI::App&) { return {}; }

}  // namespace nuance::cli
