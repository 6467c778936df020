// Atomic file writes: the content goes to a temp file in the target's folder, is flushed and fsynced, and is renamed
// over the target only when every write succeeded. A crash or a full disk leaves the old file (or none) and no
// partial one.
#pragma once
#include <cstdio>
#include <functional>
#include <string>

namespace nuance {

// `write` puts the content into the open FILE and returns false on a short write. Errors (ErrorCode::Io) name
// `path` and the system's reason.
void write_file_atomic(const std::string& path, const std::function<bool(FILE*)>& write);

}  // namespace nuance
