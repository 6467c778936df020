// Typed optional fields of hostile JSON (a model's configs, a training checkpoint's metadata, a config set in code
// or sent in a request). nlohmann's `j.value(key, fallback)` throws its own type_error ("[json.exception.type_error.302]
// type must be string, but is number") when the field has another type, naming neither the field nor the file;
// these name both: "<where>: field 'num_train_timesteps' must be an integer, got \"x\"".
#pragma once
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

namespace nuance {

// `fallback` when `o` has no `key` or it is null; else the field as T, or InvalidArgument naming `where`, `key`, the
// expected type and (the first 64 characters of) the value. Integers must be JSON integers that fit in T; floating T
// takes any number. `o` must be an object. T: std::string, bool, int, int64_t, uint64_t, float, double.
template <class T>
T json_field(const nlohmann::json& o, std::string_view key, const T& fallback, std::string_view where);

// The same for a field that must be present: "<where>: missing field 'step' (an integer)".
template <class T>
T json_required(const nlohmann::json& o, std::string_view key, std::string_view where);

}  // namespace nuance
