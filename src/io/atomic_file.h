// Atomic file writes: the content goes to a temp file in the target's folder, is flushed and fsynced, and is renamed
// over the target only when every write succeeded. A crash or a full disk leaves the old file (or none) and no
// partial one. A writer killed outright (kill -9, power loss) leaves its temp file, `<target>.tmp.<pid>`:
// remove_stale_temp_files() removes those whose writer is gone; writers of a folder call it when they start.
#pragma once
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

namespace nuance {

// `write` puts the content into the open FILE and returns false on a short write. Errors (ErrorCode::Io) name
// `path` and the system's reason.
void write_file_atomic(const std::string& path, const std::function<bool(FILE*)>& write);

// Removes the `*.tmp.<pid>` files directly in `dir` whose writer process no longer runs. A file whose pid runs
// (a live writer, or an unrelated process that reuses the pid) is kept, and so is this process's own. Best effort:
// a missing folder or a file that cannot be removed is skipped. Returns the paths removed.
std::vector<std::string> remove_stale_temp_files(const std::string& dir);

}  // namespace nuance
