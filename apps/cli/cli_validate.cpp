#include "cli_validate.h"

#include <cerrno>
#include <cfloat>
#include <cmath>
#include <cstdlib>

#include "core/error.h"
#include "core/threads.h"

namespace nuance::cli {

std::string check_float_text(std::string& value) {
    const char* s = value.c_str();
    char* end = nullptr;
    errno = 0;
    const double v = std::strtod(s, &end);
    if (end == s || *end != 0) return str("'", value, "' is not a number");
    if (!std::isfinite(v)) return str("'", value, "' is not a finite number (nan and inf are refused)");
    if (errno == ERANGE && std::fabs(v) > 1.0) return str("'", value, "' is out of range");
    if (std::fabs(v) > FLT_MAX) return str("'", value, "' is out of range (at most ", FLT_MAX, " in magnitude)");
    return {};
}

std::string check_int_text(std::string& value, bool is_unsigned) {
    size_t i = 0;
    const bool neg = !value.empty() && value[0] == '-';
    if (!value.empty() && (value[0] == '-' || value[0] == '+')) i = 1;
    if (i == value.size()) return str("'", value, "' is not an integer");
    for (size_t k = i; k < value.size(); ++k)
        if (value[k] < '0' || value[k] > '9') return str("'", value, "' is not a decimal integer");
    if (neg && is_unsigned) return str("'", value, "' is negative; expected 0 or more");
    // Leading zeros are decimal padding, not an octal prefix (CLI11 parses with base 0).
    size_t first = i;
    while (first + 1 < value.size() && value[first] == '0') ++first;
    const std::string digits = value.substr(first);
    errno = 0;
    if (is_unsigned) {
        (void)std::strtoull(digits.c_str(), nullptr, 10);
        if (errno == ERANGE) return str("'", value, "' is larger than 18446744073709551615");
    } else {
        (void)std::strtoll((neg ? "-" + digits : digits).c_str(), nullptr, 10);
        if (errno == ERANGE)
            return str("'", value, "' is outside -9223372036854775808..9223372036854775807");
    }
    value = (neg ? "-" : "") + digits;
    return {};
}

namespace {

bool has_lname(const CLI::Option* o, const std::string& n) {
    for (const auto& l : o->get_lnames())
        if (l == n) return true;
    return false;
}

void add_checks(CLI::App* app, bool threads) {
    for (CLI::Option* o : app->get_options({})) {
        const std::string type = o->get_type_name();
        if (type == "FLOAT") {
            o->check(CLI::Validator([](std::string& v) { return check_float_text(v); }, ""));
        } else if (type == "INT" || type == "UINT") {
            const bool is_unsigned = type == "UINT";
            // transform, not check: CLI11 discards a check's rewrite, and "010" must reach the parser as "10".
            o->transform(CLI::Validator([is_unsigned](std::string& v) { return check_int_text(v, is_unsigned); }, ""));
        }
        if (threads && has_lname(o, "threads")) {
            o->check(CLI::Validator(
                [](std::string& v) {
                    try {
                        check_thread_count(std::stoll(v), "the thread count");
                    } catch (const Error& e) {
                        return std::string(e.what());
                    } catch (const std::exception&) {
                        return str("'", v, "' is not a thread count");
                    }
                    return std::string();
                },
                ""));
        }
    }
    // serve checks its own -t (with its other options, apps/cli/cmd_serve.cpp).
    for (CLI::App* sub : app->get_subcommands({})) add_checks(sub, threads && sub->get_name() != "serve");
}

}  // namespace

void add_strict_number_checks(CLI::App& app) { add_checks(&app, true); }

}  // namespace nuance::cli
