#include "eval/image_folder.h"

#include <algorithm>
#include <filesystem>

#include "core/error.h"
#include "io/png_meta.h"
#include "io/weight_file.h"
#include "io/weights.h"

namespace nuance {

namespace fs = std::filesystem;

namespace {
bool is_image_name(const std::string& name) {
    std::string ext = fs::path(name).extension().string();
    std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return (char)std::tolower(c); });
    return ext == ".png" || ext == ".jpg" || ext == ".jpeg";
}
}  // namespace

std::vector<std::string> list_images(const std::string& dir, size_t max_images) {
    NUANCE_CHECK_CODE(is_directory(dir), NotFound, "image folder '", dir, "' does not exist or is not a folder");
    std::vector<std::string> names;
    std::error_code ec;
    for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
        const std::string name = it->path().filename().string();
        if (!is_image_name(name)) continue;
        std::error_code ec2;
        if (!fs::is_regular_file(it->path(), ec2)) continue;  // folders or FIFOs named *.png are not images
        NUANCE_CHECK(names.size() < max_images, "image folder '", dir, "' holds more than ", max_images, " images");
        names.push_back(name);
    }
    NUANCE_CHECK_CODE(!ec, Io, "cannot list image folder '", dir, "': ", ec.message());
    NUANCE_CHECK_CODE(!names.empty(), NotFound, "image folder '", dir, "' has no .png/.jpg images");
    std::sort(names.begin(), names.end());
    std::vector<std::string> out;
    for (const auto& n : names) out.push_back((fs::path(dir) / n).string());
    return out;
}

std::vector<std::pair<std::string, std::string>> pair_images(const std::string& dir_a, const std::string& dir_b) {
    const std::vector<std::string> a = list_images(dir_a), b = list_images(dir_b);
    std::vector<std::string> na, nb;
    for (const auto& p : a) na.push_back(fs::path(p).filename().string());
    for (const auto& p : b) nb.push_back(fs::path(p).filename().string());
    std::vector<std::string> only_a, only_b;
    std::set_difference(na.begin(), na.end(), nb.begin(), nb.end(), std::back_inserter(only_a));
    std::set_difference(nb.begin(), nb.end(), na.begin(), na.end(), std::back_inserter(only_b));
    NUANCE_CHECK(only_a.empty(), "'", only_a.empty() ? "" : only_a[0], "' is in '", dir_a, "' but not in '", dir_b,
                 "' (", only_a.size(), " of ", na.size(), " images have no pair; pairs are matched by file name)");
    NUANCE_CHECK(only_b.empty(), "'", only_b.empty() ? "" : only_b[0], "' is in '", dir_b, "' but not in '", dir_a,
                 "' (", only_b.size(), " of ", nb.size(), " images have no pair; pairs are matched by file name)");
    std::vector<std::pair<std::string, std::string>> out;
    for (size_t i = 0; i < a.size(); ++i) out.emplace_back(a[i], b[i]);
    return out;
}

std::string caption_from_infotext(const std::string& t) {
    size_t end = t.size();
    const size_t neg = t.rfind("\nNegative prompt: ");
    if (t.rfind("Negative prompt: ", 0) == 0) return "";
    if (neg != std::string::npos) {
        end = neg;
    } else {
        const size_t nl = t.rfind('\n');
        if (nl != std::string::npos && t.compare(nl + 1, 7, "Steps: ") == 0) end = nl;
        else if (t.rfind("Steps: ", 0) == 0) end = 0;
    }
    return t.substr(0, end);
}

std::string caption_from_png(const std::string& path) {
    for (const auto& [k, v] : read_png_text(path))
        if (k == "parameters") return caption_from_infotext(v);
    fail(ErrorCode::InvalidArgument, "'", path, "' has no \"parameters\" text chunk to take the caption from");
}

std::vector<std::string> read_prompt_lines(const std::string& path, size_t max_lines) {
    const std::string text = read_small_file(path, 64u << 20, "prompt file");
    NUANCE_CHECK(is_valid_utf8(text), "prompt file '", path, "' is not valid UTF-8");
    std::vector<std::string> out;
    size_t start = 0;
    while (start < text.size()) {
        size_t nl = text.find('\n', start);
        if (nl == std::string::npos) nl = text.size();
        std::string line = text.substr(start, nl - start);
        if (!line.empty() && line.back() == '\r') line.pop_back();
        if (!line.empty()) {
            NUANCE_CHECK(out.size() < max_lines, "prompt file '", path, "' has more than ", max_lines, " prompts");
            out.push_back(std::move(line));
        }
        start = nl + 1;
    }
    NUANCE_CHECK(!out.empty(), "prompt file '", path, "' has no prompts");
    return out;
}

void check_report_path(const std::string& path) {
    NUANCE_CHECK(!path.empty(), "report file name is empty");
    NUANCE_CHECK(!is_directory(path), "report file '", path, "' is a folder");
    const fs::path parent = fs::path(path).parent_path();
    NUANCE_CHECK_CODE(parent.empty() || is_directory(parent.string()), NotFound, "report file '", path,
                      "': folder '", parent.string(), "' does not exist");
}

}  // namespace nuance
