#include "io/json_field.h"

#include <cmath>
#include <limits>
#include <type_traits>

#include "core/error.h"

namespace nuance {

namespace {

template <class T>
const char* type_phrase() {
    if constexpr (std::is_same_v<T, std::string>) return "a string";
    else if constexpr (std::is_same_v<T, bool>) return "a boolean";
    else if constexpr (std::is_floating_point_v<T>) return "a number";
    else if constexpr (std::is_unsigned_v<T>) return "a non-negative integer";
    else return "an integer";
}

template <class T>
T convert(const nlohmann::json& v, std::string_view key, std::string_view where) {
    bool ok = false;
    T out{};
    if constexpr (std::is_same_v<T, std::string>) {
        ok = v.is_string();
        if (ok) out = v.get_ref<const std::string&>();
    } else if constexpr (std::is_same_v<T, bool>) {
        ok = v.is_boolean();
        if (ok) out = v.get<bool>();
    } else if constexpr (std::is_floating_point_v<T>) {
        ok = v.is_number();
        if (ok) {
            const double d = v.get<double>();
            ok = !std::is_same_v<T, float> || !std::isfinite(d) || std::fabs(d) <= std::numeric_limits<float>::max();
            out = (T)d;
        }
    } else {
        static_assert(std::is_integral_v<T>);
        if (v.is_number_unsigned()) {
            const uint64_t u = v.get<uint64_t>();
            ok = u <= (uint64_t)std::numeric_limits<T>::max();
            out = (T)u;
        } else if (v.is_number_integer()) {
            const int64_t s = v.get<int64_t>();
            ok = s >= 0 ? (uint64_t)s <= (uint64_t)std::numeric_limits<T>::max()
                        : std::is_signed_v<T> && s >= (int64_t)std::numeric_limits<T>::min();
            out = (T)s;
        }
    }
    if (!ok) {
        std::string got = v.dump();
        if (got.size() > 64) got = got.substr(0, 64) + "...";
        if constexpr (std::is_integral_v<T> && !std::is_same_v<T, bool>) {
            if (v.is_number_integer())
                fail(ErrorCode::InvalidArgument, where, ": field '", key, "' must be ", type_phrase<T>(), " in ",
                     (long long)std::numeric_limits<T>::min(), "..", (unsigned long long)std::numeric_limits<T>::max(),
                     ", got ", got);
        }
        fail(ErrorCode::InvalidArgument, where, ": field '", key, "' must be ", type_phrase<T>(), ", got ", got);
    }
    return out;
}

const nlohmann::json* find_field(const nlohmann::json& o, std::string_view key, std::string_view where) {
    NUANCE_CHECK(o.is_object(), where, " must be a JSON object, got ", o.type_name());
    const auto it = o.find(std::string(key));
    if (it == o.end() || it->is_null()) return nullptr;
    return &*it;
}

}  // namespace

template <class T>
T json_field(const nlohmann::json& o, std::string_view key, const T& fallback, std::string_view where) {
    const nlohmann::json* v = find_field(o, key, where);
    return v ? convert<T>(*v, key, where) : fallback;
}

template <class T>
T json_required(const nlohmann::json& o, std::string_view key, std::string_view where) {
    const nlohmann::json* v = find_field(o, key, where);
    NUANCE_CHECK(v != nullptr, where, ": missing field '", key, "' (", type_phrase<T>(), ")");
    return convert<T>(*v, key, where);
}

#define NUANCE_JSON_FIELD(T)                                                                                  \
    template T json_field<T>(const nlohmann::json&, std::string_view, const T&, std::string_view);            \
    template T json_required<T>(const nlohmann::json&, std::string_view, std::string_view);
NUANCE_JSON_FIELD(std::string)
NUANCE_JSON_FIELD(bool)
NUANCE_JSON_FIELD(int)
NUANCE_JSON_FIELD(int64_t)
NUANCE_JSON_FIELD(uint64_t)
NUANCE_JSON_FIELD(float)
NUANCE_JSON_FIELD(double)
#undef NUANCE_JSON_FIELD

}  // namespace nuance
