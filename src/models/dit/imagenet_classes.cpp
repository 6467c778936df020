#include "models/dit/imagenet_classes.h"

#include <algorithm>
#include <array>
#include <cctype>
#include <map>

#include "core/error.h"

namespace nuance {

namespace {

const std::array<const char*, kImageNetClasses> kNames{
#include "models/dit/imagenet_classes.inc"
};

constexpr size_t kMaxNameBytes = 256;

std::string lower_trim(const std::string& s) {
    size_t a = 0, b = s.size();
    while (a < b && std::isspace((unsigned char)s[a])) ++a;
    while (b > a && std::isspace((unsigned char)s[b - 1])) --b;
    std::string out = s.substr(a, b - a);
    for (char& c : out) c = (char)std::tolower((unsigned char)c);
    return out;
}

// Lower-cased lemma -> class ids (two ids for the 19 lemmas that two synsets share).
struct Index {
    std::map<std::string, std::vector<int64_t>> by_name;
    struct Lemma {
        std::string lower, text;
        int64_t id;
    };
    std::vector<Lemma> lemmas;  // for near matches
    Index() {
        for (int64_t id = 0; id < kImageNetClasses; ++id) {
            const std::string full = kNames[(size_t)id];
            by_name[lower_trim(full)].push_back(id);
            size_t start = 0;
            while (start <= full.size()) {
                size_t comma = full.find(',', start);
                if (comma == std::string::npos) comma = full.size();
                std::string text = full.substr(start, comma - start);
                text.erase(0, text.find_first_not_of(' '));
                const std::string l = lower_trim(text);
                if (!l.empty()) {
                    auto& ids = by_name[l];
                    if (std::find(ids.begin(), ids.end(), id) == ids.end()) ids.push_back(id);
                    lemmas.push_back({l, text, id});
                }
                start = comma + 1;
            }
        }
    }
};

const Index& index() {
    static const Index idx;
    return idx;
}

size_t edit_distance(const std::string& a, const std::string& b) {
    std::vector<size_t> row(b.size() + 1);
    for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
    for (size_t i = 1; i <= a.size(); ++i) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= b.size(); ++j) {
            const size_t up = row[j];
            row[j] = std::min({row[j] + 1, row[j - 1] + 1, diag + (a[i - 1] == b[j - 1] ? 0 : 1)});
            diag = up;
        }
    }
    return row[b.size()];
}

// Up to 5 lemmas closest to `q`: those containing it first, then by edit distance (within a third of the length).
std::string near_matches(const std::string& q) {
    std::vector<std::pair<size_t, std::string>> scored;
    std::map<std::string, bool> seen;
    for (const auto& [l, text, id] : index().lemmas) {
        const std::string d = text + " (" + std::to_string(id) + ")";
        if (seen.count(d)) continue;
        size_t score;
        if (!q.empty() && l.find(q) != std::string::npos) score = 0;
        else score = 1 + edit_distance(q, l);
        if (score > 0 && score - 1 > std::max<size_t>(2, q.size() / 3)) continue;
        seen[d] = true;
        scored.emplace_back(score, d);
    }
    std::stable_sort(scored.begin(), scored.end(),
                     [](const auto& a, const auto& b) { return a.first < b.first; });
    std::string s;
    for (size_t i = 0; i < scored.size() && i < 5; ++i) s += (i ? ", " : "") + scored[i].second;
    return s;
}

}  // namespace

const std::string& imagenet_class_name(int64_t id) {
    static const std::vector<std::string> names(kNames.begin(), kNames.end());
    NUANCE_CHECK(id >= 0 && id < kImageNetClasses, "ImageNet class ", id, " is out of range [0, ", kImageNetClasses,
                 ")");
    return names[(size_t)id];
}

std::string imagenet_class_short_name(int64_t id) {
    const std::string& n = imagenet_class_name(id);
    return n.substr(0, n.find(','));
}

int64_t imagenet_class_id(const std::string& name) {
    NUANCE_CHECK(name.size() <= kMaxNameBytes, "ImageNet class name of ", name.size(), " bytes is too long (at most ",
                 kMaxNameBytes, ")");
    const std::string q = lower_trim(name);
    NUANCE_CHECK(!q.empty(), "ImageNet class name is empty");
    auto it = index().by_name.find(q);
    if (it == index().by_name.end()) {
        const std::string near = near_matches(q);
        NUANCE_CHECK(false, "unknown ImageNet class name '", name, "'",
                     near.empty() ? std::string("; pass a class number 0..999") : "; did you mean: " + near);
    }
    const std::vector<int64_t>& ids = it->second;
    if (ids.size() > 1) {
        std::string s;
        for (size_t i = 0; i < ids.size(); ++i)
            s += (i ? " and " : "") + std::to_string(ids[i]) + " (" + imagenet_class_name(ids[i]) + ")";
        NUANCE_CHECK(false, "ImageNet class name '", name, "' is ambiguous: it names classes ", s,
                     "; pass the class number");
    }
    return ids.front();
}

int64_t parse_class_label(const std::string& value, int64_t num_classes) {
    NUANCE_CHECK(num_classes >= 1, "--class-label: the model has no classes");
    const std::string v = lower_trim(value);
    const bool digits = !v.empty() && std::all_of(v.begin(), v.end(), [](char c) {
        return std::isdigit((unsigned char)c);
    });
    const bool negative = v.size() > 1 && v[0] == '-' && std::isdigit((unsigned char)v[1]);
    if (digits || negative) {
        NUANCE_CHECK(digits && v.size() <= 18, "--class-label ", value, " is out of range [0, ", num_classes - 1, "]");
        const int64_t id = std::stoll(v);
        NUANCE_CHECK(id < num_classes, "--class-label ", id, " is out of range [0, ", num_classes - 1, "]",
                     num_classes == kImageNetClasses ? "" : " (the model has " + std::to_string(num_classes) +
                                                               " classes)");
        return id;
    }
    NUANCE_CHECK(num_classes == kImageNetClasses, "--class-label '", value, "': the model has ", num_classes,
                 " classes, not ImageNet's 1000, so only class numbers 0..", num_classes - 1, " work");
    return imagenet_class_id(value);
}

}  // namespace nuance
