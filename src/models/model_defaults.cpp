#include "models/model_defaults.h"

#include <cerrno>
#include <cmath>
#include <sys/stat.h>

#include "core/error.h"
#include "io/json_field.h"
#include "io/json_file.h"
#include "io/weight_file.h"
#include "io/weights.h"
#include "samplers/registry.h"

namespace nuance {

namespace {

using nlohmann::json;

constexpr size_t kMaxJsonBytes = 1 << 20;  // model_index.json and configs are a few KB
constexpr int kMaxSide = 16384;
constexpr int kMaxSteps = 1000;
constexpr size_t kMaxPrompt = 4096;

// A small JSON file, or an empty object when nothing exists there. Read as hostile input (io/json_file.h): a regular
// file (a FIFO never blocks), at most kMaxJsonBytes, nested at most kMaxJsonDepth deep; errors name the file.
json read_small_json(const std::string& path) {
    struct stat st {};
    if (::lstat(path.c_str(), &st) != 0 && errno == ENOENT) return json::object();  // a dangling symlink is an error
    json j = parse_json_text(read_small_file(path, kMaxJsonBytes, "model JSON file"), path);
    NUANCE_CHECK(j.is_object(), "'", path, "' must hold a JSON object, got ", j.type_name());
    return j;
}

int int_field(const json& o, const char* key, int lo, int hi, const std::string& file, int fallback) {
    auto it = o.find(key);
    if (it == o.end() || it->is_null()) return fallback;
    NUANCE_CHECK(it->is_number_integer() || it->is_number_unsigned(), "'", file, "': _nuance.defaults.", key,
                 " must be an integer, got ", it->dump());
    const long long v = it->is_number_unsigned() ? (long long)std::min<uint64_t>(it->get<uint64_t>(), (uint64_t)hi + 1)
                                                 : it->get<long long>();
    NUANCE_CHECK(v >= lo && v <= hi, "'", file, "': _nuance.defaults.", key, " must be in ", lo, "..", hi, ", got ",
                 it->dump());
    return (int)v;
}

std::string string_field(const json& o, const char* key, const std::string& file, const std::string& fallback) {
    auto it = o.find(key);
    if (it == o.end() || it->is_null()) return fallback;
    NUANCE_CHECK(it->is_string(), "'", file, "': _nuance.defaults.", key, " must be a string, got ", it->type_name());
    const std::string& s = it->get_ref<const std::string&>();
    NUANCE_CHECK(s.size() <= kMaxPrompt, "'", file, "': _nuance.defaults.", key, " is ", s.size(),
                 " bytes long (limit ", kMaxPrompt, ")");
    return s;
}

}  // namespace

// model_index.json "_nuance": {"defaults": {...}} over `d`.
void apply_index_defaults(const json& index, const std::string& file, GenerationDefaults& d) {
    auto n = index.find("_nuance");
    if (n == index.end() || !n->is_object()) return;
    auto it = n->find("defaults");
    if (it == n->end() || it->is_null()) return;
    NUANCE_CHECK(it->is_object(), "'", file, "': _nuance.defaults must be an object, got ", it->type_name());
    const json& o = *it;
    d.width = int_field(o, "width", 8, kMaxSide, file, d.width);
    d.height = int_field(o, "height", 8, kMaxSide, file, d.height);
    NUANCE_CHECK(d.width % 8 == 0 && d.height % 8 == 0, "'", file, "': _nuance.defaults size ", d.width, "x", d.height,
                 " must be multiples of 8");
    d.steps = int_field(o, "steps", 1, kMaxSteps, file, d.steps);
    if (auto c = o.find("cfg_scale"); c != o.end() && !c->is_null()) {
        NUANCE_CHECK(c->is_number(), "'", file, "': _nuance.defaults.cfg_scale must be a number, got ", c->dump());
        const double v = c->get<double>();
        NUANCE_CHECK(std::isfinite(v) && v >= 0 && v <= 100, "'", file,
                     "': _nuance.defaults.cfg_scale must be in 0..100, got ", c->dump());
        d.cfg_scale = (float)v;
    }
    d.sampler = string_field(o, "sampler", file, d.sampler);
    try {
        parse_sampler_spec(d.sampler);
    } catch (const Error& e) {
        fail(ErrorCode::InvalidArgument, "'", file, "': _nuance.defaults.sampler: ", e.what());
    }
    d.scheduler = string_field(o, "scheduler", file, d.scheduler);
    if (!d.scheduler.empty()) {
        try {
            NUANCE_CHECK(parse_schedule_type(d.scheduler) != ScheduleType::Custom,
                         "the custom schedule needs sigmas; name another schedule");
        } catch (const Error& e) {
            fail(ErrorCode::InvalidArgument, "'", file, "': _nuance.defaults.scheduler: ", e.what());
        }
    }
    d.prompt = string_field(o, "prompt", file, d.prompt);
    d.negative_prompt = string_field(o, "negative_prompt", file, d.negative_prompt);
}

void apply_folder_defaults(const std::string& folder, GenerationDefaults& d) {
    const std::string file = folder + "/model_index.json";
    apply_index_defaults(read_small_json(file), file, d);
}

nlohmann::json read_small_model_json(const std::string& path) { return read_small_json(path); }

}  // namespace nuance
