// Helpers shared by the GoogleTest files (include as "../test_util.h" from tests/<area>/).
#pragma once
#include <functional>
#include <string>

#include "core/error.h"

namespace nuance::test {

// The message of the nuance::Error that `f` throws, or "(no error)" when it throws none.
inline std::string error_of(const std::function<void()>& f) {
    try {
        f();
    } catch (const Error& e) {
        return e.what();
    }
    return "(no error)";
}

}  // namespace nuance::test
