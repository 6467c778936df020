// The emoji training set (shared/reference/data.md §1): Noto (Google, Apache-2.0) and Twemoji (Twitter,
// CC-BY-4.0) images cut from iamcal/emoji-data's sprite sheets, captioned with CLDR names and keywords from
// emojibase-data, joined by codepoint. Never reads the Apple or Facebook sheets.
//
// Output folder: images/<style>/<unified lower-case>.png (RGB, composited on white) and manifest.jsonl with one
// object per image, e.g.
//   {"file": "images/twemoji/1f44b-1f3fe.png", "caption": "waving hand: medium-dark skin tone, twemoji style",
//    "label": "waving hand: medium-dark skin tone", "keywords": ["bye", ...], "style": "twemoji",
//    "group": "People & Body", "category_id": 1, "subgroup": "hand-fingers-open", "concept_id": 187,
//    "tone": 4, "unified": "1F44B-1F3FE"}
// which ImageCaptionDataset reads (caption / style / keyword dropout use "style" and "keywords").
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace nuance {

struct EmojiPrepareOptions {
    std::string emoji_json;      // emoji-datasource's emoji.json
    std::string sheets_dir;      // folder with <vendor>/sheets/<size>.png (the package's img/ folder)
    std::string emojibase_json;  // emojibase-data's en/data.json
    std::string output_dir;
    int size = 32;  // cell size of the sheets (cells are size + 2 with a 1-px transparent border)
};

struct EmojiPrepareReport {
    std::map<std::string, int64_t> images;  // per style ("noto", "twemoji")
    int64_t concepts = 0;                   // base emoji kept (without the Component category)
    int64_t members = 0;                    // base emoji + skin-tone variants considered
    int64_t captions_joined = 0;            // members whose codepoints matched an emojibase entry
    std::vector<std::string> unmatched;     // unified codes without an emojibase entry (skipped)
    int64_t skipped_no_image = 0;           // (member, vendor) pairs with has_img_<vendor> false
};

// The vendors used, with their style names: google -> "noto", twitter -> "twemoji".
struct EmojiVendor {
    const char* vendor;
    const char* style;
};
const std::vector<EmojiVendor>& emoji_vendors();

// The emoji-data category names in Unicode order (Component excluded); category_id is the index here.
const std::vector<std::string>& emoji_categories();

// Upper-case codepoints with every FE0F removed: "1f44b-FE0F" -> "1F44B" (the join key of data.md §1.3).
std::string emoji_join_key(const std::string& hexcode);

EmojiPrepareReport prepare_emoji_dataset(const EmojiPrepareOptions& options);

}  // namespace nuance
