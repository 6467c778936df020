#include "io/json_file.h"

#include <cerrno>
#include <sys/stat.h>

#include "core/error.h"
#include "io/weight_file.h"

namespace nuance {

namespace {

// The parsed value, or the problem in `error` (and a too deep value discarded, with `too_deep` set).
nlohmann::json parse_bounded(const std::string& text, std::string& error, bool& too_deep) {
    too_deep = false;
    const nlohmann::json::parser_callback_t cb = [&](int depth, nlohmann::json::parse_event_t ev, nlohmann::json&) {
        if ((ev == nlohmann::json::parse_event_t::object_start || ev == nlohmann::json::parse_event_t::array_start) &&
            depth >= kMaxJsonDepth) {
            too_deep = true;
            return false;  // discard: keeps the parsed value shallow
        }
        return true;
    };
    try {
        return nlohmann::json::parse(text, cb);
    } catch (const std::exception& e) {
        error = e.what();
        return nullptr;
    }
}

}  // namespace

nlohmann::json parse_json_bounded(const std::string& text) {
    std::string error;
    bool too_deep = false;
    nlohmann::json j = parse_bounded(text, error, too_deep);
    NUANCE_CHECK(error.empty(), "not valid JSON (", error, ")");
    NUANCE_CHECK(!too_deep, "JSON nested deeper than ", kMaxJsonDepth, " levels");
    return j;
}

nlohmann::json parse_json_text(const std::string& text, const std::string& name) {
    std::string error;
    bool too_deep = false;
    nlohmann::json j = parse_bounded(text, error, too_deep);
    NUANCE_CHECK(error.empty(), "'", name, "' is not valid JSON (", error, ")");
    NUANCE_CHECK(!too_deep, "'", name, "' nests JSON deeper than ", kMaxJsonDepth, " levels");
    return j;
}

nlohmann::json read_json_file(const std::string& path) {
    return parse_json_text(read_small_file(path, kMaxJsonFileBytes, "JSON file"), path);
}

nlohmann::json read_json_object(const std::string& path) {
    nlohmann::json j = read_json_file(path);
    NUANCE_CHECK(j.is_object(), "'", path, "' is not a JSON object (it is ", j.type_name(), ")");
    return j;
}

std::optional<nlohmann::json> read_optional_json_object(const std::string& path) {
    struct stat st {};
    if (::lstat(path.c_str(), &st) != 0 && errno == ENOENT) return std::nullopt;  // a dangling symlink is an error
    return read_json_object(path);
}

}  // namespace nuance
