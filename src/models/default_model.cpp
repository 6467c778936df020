#include "models/default_model.h"

#include <cstdlib>
#include <filesystem>
#include <vector>

namespace fs = std::filesystem;

namespace nuance {

std::string default_model_path() {
    std::vector<fs::path> candidates;
    std::error_code ec;
    if (const char* env = std::getenv("NUANCE_DEFAULT_MODEL"); env && *env)  // when set, the only candidate
        return fs::is_regular_file(fs::path(env) / "model_index.json", ec) ? std::string(env) : std::string();
    const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
    if (!ec) {
        const fs::path dir = exe.parent_path();
        candidates.push_back(dir / ".." / "models" / kDefaultModelName);
        candidates.push_back(dir / ".." / "share" / "nuance" / "models" / kDefaultModelName);
    }
#ifdef NUANCE_ASSET_DIR
    candidates.push_back(fs::path(NUANCE_ASSET_DIR) / ".." / "models" / kDefaultModelName);
#endif
    for (const auto& c : candidates)
        if (fs::is_regular_file(c / "model_index.json", ec)) return fs::weakly_canonical(c, ec).string();
    return "";
}

}  // namespace nuance
