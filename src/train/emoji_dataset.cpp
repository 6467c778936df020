// Building the emoji training set from emoji-datasource + emojibase-data (see emoji_dataset.h).
#include "train/emoji_dataset.h"

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <fstream>
#include <unordered_map>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "io/image.h"
#include "io/json_file.h"
#include "io/weight_file.h"
#include "train/dataset.h"

namespace nuance {

namespace fs = std::filesystem;
using nlohmann::json;

const std::vector<EmojiVendor>& emoji_vendors() {
    static const std::vector<EmojiVendor> v = {{"google", "noto"}, {"twitter", "twemoji"}};
    return v;
}

const std::vector<std::string>& emoji_categories() {
    static const std::vector<std::string> c = {"Smileys & Emotion", "People & Body", "Animals & Nature",
                                               "Food & Drink",      "Travel & Places", "Activities",
                                               "Objects",           "Symbols",       "Flags"};
    return c;
}

std::string emoji_join_key(const std::string& hexcode) {
    std::string out, part;
    auto flush = [&] {
        if (!part.empty() && part != "FE0F") out += (out.empty() ? "" : "-") + part;
        part.clear();
    };
    for (char ch : hexcode) {
        if (ch == '-') flush();
        else part += (char)std::toupper((unsigned char)ch);
    }
    flush();
    return out;
}

namespace {

// A regular file of at most kMaxJsonFileBytes, JSON nested at most kMaxJsonDepth deep; errors name `what` and `path`.
json read_json(const std::string& path, const char* what) {
    const std::string text = read_small_file(path, kMaxJsonFileBytes, what);
    try {
        return parse_json_text(text, path);
    } catch (const std::exception& e) {
        fail(ErrorCode::InvalidArgument, what, ": ", e.what());
    }
}

std::string get_string(const json& j, const char* key, const std::string& where) {
    NUANCE_CHECK(j.is_object() && j.contains(key) && j[key].is_string(), where, ": missing string field '", key, "'");
    return j[key].get<std::string>();
}

int64_t get_int(const json& j, const char* key, const std::string& where) {
    NUANCE_CHECK(j.is_object() && j.contains(key) && j[key].is_number_integer(), where, ": missing integer field '",
                 key, "'");
    return j[key].get<int64_t>();
}

bool get_bool(const json& j, const std::string& key) { return j.contains(key) && j[key].is_boolean() && j[key].get<bool>(); }

struct Caption {
    std::string label;
    std::vector<std::string> keywords;
    std::vector<int> tones;
};

// emojibase en/data.json: entries with hexcode, label, tags and skins[] (hexcode, label, tone: int or [int]).
std::unordered_map<std::string, Caption> read_emojibase(const std::string& path) {
    const json data = read_json(path, "emojibase data");
    NUANCE_CHECK(data.is_array(), "emojibase data '", path, "': expected a JSON array of emoji");
    std::unordered_map<std::string, Caption> out;
    for (size_t i = 0; i < data.size(); ++i) {
        const json& e = data[i];
        const std::string where = str("emojibase data '", path, "' entry ", i);
        Caption c;
        c.label = get_string(e, "label", where);
        if (e.contains("tags") && e["tags"].is_array())
            for (const json& t : e["tags"])
                if (t.is_string()) c.keywords.push_back(t.get<std::string>());
        out[emoji_join_key(get_string(e, "hexcode", where))] = c;
        if (!e.contains("skins") || !e["skins"].is_array()) continue;
        for (size_t k = 0; k < e["skins"].size(); ++k) {
            const json& s = e["skins"][k];
            const std::string swhere = str(where, " skin ", k);
            Caption sc{get_string(s, "label", swhere), c.keywords, {}};
            if (s.contains("tone") && s["tone"].is_number_integer()) sc.tones.push_back(s["tone"].get<int>());
            if (s.contains("tone") && s["tone"].is_array())
                for (const json& t : s["tone"])
                    if (t.is_number_integer()) sc.tones.push_back(t.get<int>());
            out[emoji_join_key(get_string(s, "hexcode", swhere))] = sc;
        }
    }
    return out;
}

struct Member {
    std::string unified;
    int64_t sheet_x = 0, sheet_y = 0;
    json source;  // the emoji.json object (for has_img_<vendor>)
};

std::string file_stem(const std::string& unified, const std::string& where) {
    NUANCE_CHECK(!unified.empty() && unified.size() <= 128 &&
                     std::all_of(unified.begin(), unified.end(), [](char c) { return std::isxdigit((unsigned char)c) || c == '-'; }),
                 where, ": 'unified' must be hex codepoints joined by '-', got '", unified, "'");
    std::string s = unified;
    std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return (char)std::tolower(c); });
    return s;
}

// The size x size image of cell (sheet_x, sheet_y): cells are size + 2 wide with a 1-px border (emoji-data README).
Image cut_cell(const Image& sheet, int size, const Member& m, const std::string& sheet_path) {
    const int64_t cell = size + 2;
    const int64_t x0 = m.sheet_x * cell + 1, y0 = m.sheet_y * cell + 1;
    NUANCE_CHECK(m.sheet_x >= 0 && m.sheet_y >= 0 && x0 + size <= sheet.width && y0 + size <= sheet.height, "emoji ",
                 m.unified, ": cell (", m.sheet_x, ", ", m.sheet_y, ") lies outside sheet '", sheet_path, "' (",
                 sheet.width, "x", sheet.height, " with ", size, "-px cells)");
    Image out;
    out.width = out.height = size;
    out.channels = 4;
    out.pixels.resize((size_t)size * size * 4);
    for (int y = 0; y < size; ++y)
        std::copy_n(&sheet.pixels[((size_t)(y0 + y) * sheet.width + x0) * 4], (size_t)size * 4, &out.pixels[(size_t)y * size * 4]);
    return composite_on_white(out);
}

}  // namespace

EmojiPrepareReport prepare_emoji_dataset(const EmojiPrepareOptions& o) {
    NUANCE_CHECK(o.size >= 1 && o.size <= 512, "prepare-emoji: size must be in [1, 512], got ", o.size);
    NUANCE_CHECK(!o.output_dir.empty(), "prepare-emoji: no output folder given");
    const auto captions = read_emojibase(o.emojibase_json);
    const json emoji = read_json(o.emoji_json, "emoji.json");
    NUANCE_CHECK(emoji.is_array(), "emoji.json '", o.emoji_json, "': expected a JSON array of emoji");

    std::vector<Image> sheets;
    std::vector<std::string> sheet_paths;
    for (const EmojiVendor& v : emoji_vendors()) {
        const fs::path p = fs::path(o.sheets_dir) / v.vendor / "sheets" / (std::to_string(o.size) + ".png");
        std::error_code ec;
        NUANCE_CHECK_CODE(fs::is_regular_file(p, ec), NotFound, "prepare-emoji: sprite sheet '", p.string(),
                          "' not found (sheets-dir must hold <vendor>/sheets/", o.size, ".png for google and twitter)");
        sheets.push_back(read_image_rgba(p.string()));
        sheet_paths.push_back(p.string());
        fs::create_directories(fs::path(o.output_dir) / "images" / v.style, ec);
        NUANCE_CHECK_CODE(!ec, Io, "cannot create '", (fs::path(o.output_dir) / "images" / v.style).string(), "': ",
                          ec.message());
    }

    std::vector<std::string> categories = emoji_categories();
    EmojiPrepareReport rep;
    const fs::path manifest_path = fs::path(o.output_dir) / "manifest.jsonl";
    const fs::path tmp_path = fs::path(o.output_dir) / "manifest.jsonl.tmp";
    std::ofstream manifest(tmp_path, std::ios::binary | std::ios::trunc);
    NUANCE_CHECK_CODE(manifest.good(), Io, "cannot create '", tmp_path.string(), "'");
    for (size_t i = 0; i < emoji.size(); ++i) {
        const json& e = emoji[i];
        const std::string where = str("emoji.json '", o.emoji_json, "' entry ", i);
        const std::string category = get_string(e, "category", where);
        if (category == "Component") continue;  // the bare skin-tone swatches (data.md §1.3)
        auto cat_it = std::find(categories.begin(), categories.end(), category);
        if (cat_it == categories.end()) cat_it = categories.insert(categories.end(), category);
        const int64_t category_id = cat_it - categories.begin();
        const std::string subgroup = e.contains("subcategory") && e["subcategory"].is_string() ? e["subcategory"].get<std::string>() : "";
        const int64_t concept_id = rep.concepts++;

        std::vector<Member> members;
        members.push_back({get_string(e, "unified", where), get_int(e, "sheet_x", where), get_int(e, "sheet_y", where), e});
        if (e.contains("skin_variations") && e["skin_variations"].is_object())
            for (const auto& [tone_key, v] : e["skin_variations"].items()) {
                const std::string vwhere = str(where, " skin variation ", tone_key);
                members.push_back({get_string(v, "unified", vwhere), get_int(v, "sheet_x", vwhere), get_int(v, "sheet_y", vwhere), v});
            }
        for (const Member& m : members) {
            ++rep.members;
            const std::string stem = file_stem(m.unified, where);
            const auto cap = captions.find(emoji_join_key(m.unified));
            if (cap == captions.end()) {
                rep.unmatched.push_back(m.unified);
                continue;
            }
            ++rep.captions_joined;
            for (size_t vi = 0; vi < emoji_vendors().size(); ++vi) {
                const EmojiVendor& v = emoji_vendors()[vi];
                if (!get_bool(m.source, std::string("has_img_") + v.vendor)) {
                    ++rep.skipped_no_image;
                    continue;
                }
                const std::string file = str("images/", v.style, "/", stem, ".png");
                write_png((fs::path(o.output_dir) / file).string(), cut_cell(sheets[vi], o.size, m, sheet_paths[vi]));
                nlohmann::ordered_json row;  // keys in the order written: file and caption first
                row["file"] = file;
                row["caption"] = str(cap->second.label, ", ", v.style, " style");
                row["label"] = cap->second.label;
                row["keywords"] = cap->second.keywords;
                row["style"] = v.style;
                row["group"] = category;
                row["category_id"] = category_id;
                row["subgroup"] = subgroup;
                row["concept_id"] = concept_id;
                row["tone"] = cap->second.tones.empty() ? 0 : cap->second.tones[0];
                if (cap->second.tones.size() > 1) row["tones"] = cap->second.tones;
                row["unified"] = m.unified;
                manifest << row.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::strict) << '\n';
                ++rep.images[v.style];
            }
        }
    }
    manifest.flush();
    NUANCE_CHECK_CODE(manifest.good(), Io, "cannot write '", tmp_path.string(), "' (disk full?)");
    manifest.close();
    std::error_code ec;
    fs::rename(tmp_path, manifest_path, ec);
    NUANCE_CHECK_CODE(!ec, Io, "cannot rename '", tmp_path.string(), "' to '", manifest_path.string(), "': ", ec.message());
    return rep;
}

}  // namespace nuance
