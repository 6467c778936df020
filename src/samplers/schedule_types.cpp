// Schedule types, timestep spacings and schedule families: their names; and the sigma builders of the schedulers ComfyUI and A1111 added after Karras and
// exponential (sgm_uniform, simple, ddim_uniform, beta, align-your-steps) plus user-given sigma lists.
//
// Each builder copies its reference's arithmetic (ComfyUI comfy/samplers.py, comfy_extras/nodes_align_your_steps.py;
// A1111 modules/sd_schedulers.py) in float64, on nuance's float32 training table (which equals diffusers'; ComfyUI
// builds its table in float64 before casting, so its sigmas can differ from these in the 7th digit).
#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdlib>

#include "core/error.h"
#include "samplers/schedule.h"

namespace nuance {

namespace {

std::string lower_alnum(const std::string& s) {
    std::string out;
    for (char c : s) {
        const unsigned char u = (unsigned char)c;
        if (std::isalnum(u)) out += (char)std::tolower(u);
    }
    return out;
}

struct TypeNames {
    ScheduleType type;
    const char* name;
    const char* display;
    std::vector<const char*> aliases;
};

const std::vector<TypeNames>& type_table() {
    using T = ScheduleType;
    static const std::vector<TypeNames> t = {
        {T::Normal, "normal", "Normal", {"discrete", "default", "automatic", "auto"}},
        {T::Karras, "karras", "Karras", {}},
        {T::Exponential, "exponential", "Exponential", {}},
        {T::SgmUniform, "sgm_uniform", "SGM Uniform", {"sgm"}},
        {T::Simple, "simple", "Simple", {}},
        {T::DdimUniform, "ddim_uniform", "DDIM", {"ddim"}},
        {T::Beta, "beta", "Beta", {}},
        {T::AlignYourSteps, "align_your_steps", "Align Your Steps", {"ays", "ays_sd15", "align_your_steps_sd15"}},
        {T::AlignYourStepsSdxl, "align_your_steps_sdxl", "Align Your Steps", {"ays_sdxl", "ays_xl"}},
        {T::Custom, "custom", "Custom", {"sigmas"}},
    };
    return t;
}

const TypeNames& names_of(ScheduleType t) {
    for (const TypeNames& n : type_table())
        if (n.type == t) return n;
    fail(ErrorCode::Internal, "schedule type ", (int)t, " has no name");
}


// np.interp(x, xp, fp) for increasing xp, x inside [xp.front(), xp.back()].
double np_interp(double x, const std::vector<double>& xp, const std::vector<double>& fp) {
    if (x <= xp.front()) return fp.front();
    if (x >= xp.back()) return fp.back();
    const size_t j = (size_t)(std::upper_bound(xp.begin(), xp.end(), x) - xp.begin()) - 1;
    const double slope = (fp[j + 1] - fp[j]) / (xp[j + 1] - xp[j]);
    return slope * (x - xp[j]) + fp[j];
}

void check_n(int n, const char* what) { NUANCE_CHECK(n >= 1 && n <= 100000, what, ": steps must be in [1, 100000], got ", n); }

// Continued fraction of the incomplete beta function (modified Lentz; Numerical Recipes betacf).
double beta_continued_fraction(double x, double a, double b) {
    constexpr double kTiny = 1e-300, kEps = 1e-16;
    const double qab = a + b, qap = a + 1.0, qam = a - 1.0;
    double c = 1.0, d = 1.0 - qab * x / qap;
    if (std::fabs(d) < kTiny) d = kTiny;
    d = 1.0 / d;
    double h = d;
    for (int m = 1; m <= 1000; ++m) {
        const double m2 = 2.0 * m;
        double aa = m * (b - m) * x / ((qam + m2) * (a + m2));
        d = 1.0 + aa * d;
        if (std::fabs(d) < kTiny) d = kTiny;
        c = 1.0 + aa / c;
        if (std::fabs(c) < kTiny) c = kTiny;
        d = 1.0 / d;
        h *= d * c;
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2));
        d = 1.0 + aa * d;
        if (std::fabs(d) < kTiny) d = kTiny;
        c = 1.0 + aa / c;
        if (std::fabs(c) < kTiny) c = kTiny;
        d = 1.0 / d;
        const double del = d * c;
        h *= del;
        if (std::fabs(del - 1.0) < kEps) break;
    }
    return h;
}

}  // namespace

// ---------------------------------------------------------------------------------------------------------------
// Names

ScheduleType parse_schedule_type(const std::string& name) {
    const std::string k = lower_alnum(name);
    if (!k.empty()) {
        for (const TypeNames& n : type_table()) {
            if (lower_alnum(n.name) == k || lower_alnum(n.display) == k) return n.type;
            for (const char* a : n.aliases)
                if (lower_alnum(a) == k) return n.type;
        }
    }
    std::string valid;
    for (const TypeNames& n : type_table()) {
        valid += std::string(valid.empty() ? "" : ", ") + n.name;
        const std::string al = schedule_type_aliases(n.type);
        if (!al.empty()) valid += " (" + al + ")";
    }
    fail(ErrorCode::InvalidArgument, "unknown schedule '", name, "': expected one of ", valid,
         " (case, spaces, '_' and '-' are ignored; 'custom' takes a sigma list)");
}

const char* schedule_type_name(ScheduleType t) { return names_of(t).name; }
const char* schedule_type_display_name(ScheduleType t) { return names_of(t).display; }

std::vector<std::string> list_schedule_types() {
    std::vector<std::string> out;
    for (const TypeNames& n : type_table()) out.push_back(n.name);
    return out;
}

std::string schedule_type_aliases(ScheduleType t) {
    std::string out;
    const TypeNames& n = names_of(t);
    for (const char* a : n.aliases) out += std::string(out.empty() ? "" : ", ") + a;
    return out;
}

Spacing parse_spacing(const std::string& name) {
    const std::string k = lower_alnum(name);
    if (k == "linspace") return Spacing::Linspace;
    if (k == "leading") return Spacing::Leading;
    if (k == "trailing") return Spacing::Trailing;
    fail(ErrorCode::InvalidArgument, "unknown timestep spacing '", name, "': expected linspace, leading or trailing");
}

const char* spacing_name(Spacing s) {
    switch (s) {
        case Spacing::Linspace: return "linspace";
        case Spacing::Leading: return "leading";
        case Spacing::Trailing: return "trailing";
    }
    return "unknown";
}

const char* schedule_family_name(ScheduleFamily f) {
    switch (f) {
        case ScheduleFamily::EulerDiscrete: return "euler_discrete";
        case ScheduleFamily::DpmSolver: return "dpm_solver";
        case ScheduleFamily::Ddim: return "ddim";
        case ScheduleFamily::Lcm: return "lcm";
        case ScheduleFamily::Tcd: return "tcd";
    }
    return "unknown";
}

// ---------------------------------------------------------------------------------------------------------------
// Builders

double NoiseSchedule::t_to_sigma_log(double t) const {
    NUANCE_CHECK(std::isfinite(t), "noise schedule: timestep ", t, " is not finite");
    const double last = (double)(log_sigmas_.size() - 1);
    t = std::clamp(t, 0.0, last);
    const size_t lo = (size_t)std::floor(t), hi = (size_t)std::ceil(t);
    const double w = t - (double)lo;
    if (w == 0) return sigmas_[lo];  // table points exactly
    // the float32 log table, so that sigma_to_t inverts this exactly
    return std::exp((1.0 - w) * (double)log_sigmas_[lo] + w * (double)log_sigmas_[hi]);
}

// ComfyUI normal_scheduler(sgm=True): timesteps linspace(T-1, 0, n+1)[:-1], sigma by log interpolation.
std::vector<double> sgm_uniform_sigmas(const NoiseSchedule& ns, int n) {
    check_n(n, "sgm_uniform schedule");
    const std::vector<double> t = np_linspace((double)(ns.num_train_timesteps() - 1), 0.0, n + 1);
    std::vector<double> out((size_t)n);
    for (int i = 0; i < n; ++i) out[(size_t)i] = ns.t_to_sigma_log(t[(size_t)i]);
    return out;
}

// ComfyUI simple_scheduler: sigmas[-(1 + int(x * T / n))] for x = 0..n-1.
std::vector<double> simple_sigmas(const NoiseSchedule& ns, int n) {
    check_n(n, "simple schedule");
    const int T = ns.num_train_timesteps();
    const double ss = (double)T / (double)n;
    std::vector<double> out((size_t)n);
    for (int x = 0; x < n; ++x) {
        const int idx = T - 1 - (int)((double)x * ss);
        out[(size_t)x] = ns.sigmas()[(size_t)std::max(idx, 0)];
    }
    return out;
}

// ComfyUI ddim_scheduler / A1111 ddim_scheduler: table sigmas at 1, 1 + T//n, ... < T, newest first.
std::vector<double> ddim_uniform_sigmas(const NoiseSchedule& ns, int n) {
    check_n(n, "ddim_uniform schedule");
    const int T = ns.num_train_timesteps();
    const int ss = std::max(T / n, 1);
    std::vector<double> out;
    for (int x = 1; x < T; x += ss) out.push_back(ns.sigmas()[(size_t)x]);
    std::reverse(out.begin(), out.end());
    return out;
}

// ComfyUI beta_scheduler (Lee et al. 2024, "Improved Noise Schedule..."/"Beta sampling is all you need"):
// t = rint(ppf(1 - i/n) * (T-1)), sigma = table[t], consecutive repeats dropped.
std::vector<double> beta_sigmas(const NoiseSchedule& ns, int n, double alpha, double beta) {
    check_n(n, "beta schedule");
    NUANCE_CHECK(std::isfinite(alpha) && std::isfinite(beta) && alpha > 0 && beta > 0,
                 "beta schedule: alpha and beta must be > 0, got ", alpha, " and ", beta);
    const int total = ns.num_train_timesteps() - 1;
    const double step = 1.0 / (double)n;  // np.linspace(0, 1, n, endpoint=False)
    std::vector<double> out;
    double last_t = -1;
    for (int i = 0; i < n; ++i) {
        const double ts = 1.0 - (double)i * step;
        const double t = std::nearbyint(beta_ppf(ts, alpha, beta) * (double)total);
        if (t != last_t) out.push_back(ns.sigmas()[(size_t)std::clamp((int)t, 0, total)]);
        last_t = t;
    }
    return out;
}

std::vector<double> loglinear_interp(const std::vector<double>& decreasing, int n) {
    NUANCE_CHECK(decreasing.size() >= 2 && n >= 2, "loglinear_interp: need >= 2 points in and out");
    const std::vector<double> xs = np_linspace(0.0, 1.0, (int)decreasing.size());
    std::vector<double> ys;
    for (auto it = decreasing.rbegin(); it != decreasing.rend(); ++it) {
        NUANCE_CHECK(*it > 0, "loglinear_interp: values must be > 0, got ", *it);
        ys.push_back(std::log(*it));
    }
    const std::vector<double> new_xs = np_linspace(0.0, 1.0, n);
    std::vector<double> out((size_t)n);
    for (int i = 0; i < n; ++i) out[(size_t)(n - 1 - i)] = std::exp(np_interp(new_xs[(size_t)i], xs, ys));
    return out;
}

// Align Your Steps (Sabour, Fidler & Kreis 2024): NVIDIA's optimised 10-step noise levels for the SD noise schedule.
// ComfyUI AlignYourStepsScheduler: for n steps the table is interpolated to n+1 levels and the last is replaced by 0
// (A1111 instead appends 0 to the 11 levels, i.e. its "10 steps" table gives 11 steps).
std::vector<double> align_your_steps_sigmas(int n, bool sdxl) {
    check_n(n, "align_your_steps schedule");
    static const std::vector<double> kSd15 = {14.6146412293, 6.4745760956, 3.8636745985, 2.6946151520,
                                              1.8841921177,  1.3943805092, 0.9642583904, 0.6523686016,
                                              0.3977456272,  0.1515232662, 0.0291671582};
    static const std::vector<double> kSdxl = {14.6146412293, 6.3184485287, 3.7681790315, 2.1811480769,
                                              1.3405244945,  0.8620721141, 0.5550693289, 0.3798540708,
                                              0.2332364134,  0.1114188177, 0.0291671582};
    const std::vector<double>& table = sdxl ? kSdxl : kSd15;
    std::vector<double> s = (size_t)n + 1 == table.size() ? table : loglinear_interp(table, n + 1);
    s.pop_back();  // the (n+1)-th level becomes the final 0
    return s;
}

double beta_cdf(double x, double a, double b) {
    NUANCE_CHECK(a > 0 && b > 0 && std::isfinite(a) && std::isfinite(b), "beta_cdf: a and b must be > 0");
    if (!(x > 0)) return 0.0;
    if (x >= 1) return 1.0;
    const double front =
        std::exp(std::lgamma(a + b) - std::lgamma(a) - std::lgamma(b) + a * std::log(x) + b * std::log1p(-x));
    if (x < (a + 1.0) / (a + b + 2.0)) return front * beta_continued_fraction(x, a, b) / a;
    return 1.0 - front * beta_continued_fraction(1.0 - x, b, a) / b;
}

double beta_ppf(double p, double a, double b) {
    NUANCE_CHECK(std::isfinite(p) && p >= 0 && p <= 1, "beta_ppf: p must be in [0, 1], got ", p);
    if (p == 0) return 0.0;
    if (p == 1) return 1.0;
    if (a == b && p == 0.5) return 0.5;  // exact by symmetry (bisection could land an ulp either side)
    double lo = 0.0, hi = 1.0;  // the cdf is increasing: bisect to the last representable bit
    for (int i = 0; i < 200 && hi - lo > 0; ++i) {
        const double mid = 0.5 * (lo + hi);
        if (mid <= lo || mid >= hi) break;
        (beta_cdf(mid, a, b) < p ? lo : hi) = mid;
    }
    return 0.5 * (lo + hi);
}

// ---------------------------------------------------------------------------------------------------------------
// Custom sigma lists

std::vector<double> parse_sigma_list(const std::string& text) {
    std::vector<double> out;
    std::string tok;
    int index = 0;
    auto flush = [&] {
        if (tok.empty()) return;
        ++index;
        errno = 0;
        char* end = nullptr;
        const double v = std::strtod(tok.c_str(), &end);
        NUANCE_CHECK(end && *end == '\0' && end != tok.c_str() && errno != ERANGE, "sigma list: entry ", index,
                     " '", tok, "' is not a number");
        NUANCE_CHECK(std::isfinite(v), "sigma list: entry ", index, " '", tok, "' is not finite");
        NUANCE_CHECK(v >= 0, "sigma list: entry ", index, " (", tok, ") is negative; sigmas must be >= 0");
        out.push_back(v);
        tok.clear();
    };
    for (char c : text) {
        if (c == ',' || c == ';' || std::isspace((unsigned char)c) || c == '[' || c == ']') flush();
        else tok += c;
    }
    flush();
    NUANCE_CHECK(!out.empty(), "sigma list '", text, "' is empty: expected comma-separated sigmas such as "
                 "\"14.6, 7.0, 3.5, 0\"");
    validate_custom_sigmas(out);
    return out;
}

void validate_custom_sigmas(const std::vector<double>& s) {
    NUANCE_CHECK(s.size() >= 2, "sigma list: need at least 2 sigmas (start and end, e.g. \"14.6, 0\"), got ",
                 s.size());
    for (size_t i = 0; i < s.size(); ++i) {
        NUANCE_CHECK(std::isfinite(s[i]) && s[i] >= 0, "sigma list: entry ", i + 1, " (", s[i],
                     ") is not a finite sigma >= 0");
        if (i > 0)
            NUANCE_CHECK(s[i] < s[i - 1], "sigma list: sigmas must be strictly decreasing, but entry ", i + 1, " (",
                         s[i], ") >= entry ", i, " (", s[i - 1], ")");
    }
}

}  // namespace nuance
