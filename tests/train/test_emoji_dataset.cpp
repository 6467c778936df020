// prepare_emoji_dataset on a synthetic 2x2-cell sprite sheet with a matching emoji.json and emojibase data.json;
// the prepare-emoji CLI.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>

#include <nlohmann/json.hpp>

#include "../test_util.h"
#include "data_test_util.h"
#include "train/dataset.h"
#include "train/emoji_dataset.h"

namespace nuance {
namespace {

using nlohmann::json;
using test::error_of;
using ::testing::HasSubstr;

constexpr int kSize = 2;  // cells of 4 px: 1-px border + 2x2 image

// A 2x2-cell RGBA sheet: cell (cx, cy) holds colour (base + 10 * (cy * 2 + cx), 7, vendor_b) with its top-left
// pixel transparent; borders are opaque magenta so that an off-by-one cut would show.
Image make_sheet(int vendor_b) {
    Image s;
    s.width = s.height = 2 * (kSize + 2);
    s.channels = 4;
    s.pixels.assign((size_t)s.width * s.height * 4, 0);
    for (int y = 0; y < s.height; ++y)
        for (int x = 0; x < s.width; ++x) {
            uint8_t* p = &s.pixels[((size_t)y * s.width + x) * 4];
            const int cx = x / (kSize + 2), cy = y / (kSize + 2), ix = x % (kSize + 2) - 1, iy = y % (kSize + 2) - 1;
            const bool inside = ix >= 0 && ix < kSize && iy >= 0 && iy < kSize;
            if (!inside) {
                p[0] = 255; p[1] = 0; p[2] = 255; p[3] = 255;
            } else {
                p[0] = (uint8_t)(50 + 10 * (cy * 2 + cx)); p[1] = 7; p[2] = (uint8_t)vendor_b;
                p[3] = (ix == 0 && iy == 0) ? 0 : 255;
            }
        }
    return s;
}

struct EmojiFixture {
    test::TempDir dir{"emoji"};
    EmojiPrepareOptions opt;
    EmojiFixture() {
        test::write_image(dir / "img/google/sheets/2.png", make_sheet(1));
        test::write_image(dir / "img/twitter/sheets/2.png", make_sheet(2));
        json emoji = json::array();
        emoji.push_back({{"unified", "1F600"}, {"sheet_x", 0}, {"sheet_y", 0}, {"category", "Smileys & Emotion"},
                         {"subcategory", "face-smiling"}, {"has_img_google", true}, {"has_img_twitter", true},
                         {"has_img_apple", true}});
        json skin = {{"1F3FB", {{"unified", "1F44B-1F3FB"}, {"sheet_x", 0}, {"sheet_y", 1}, {"has_img_google", true},
                                 {"has_img_twitter", false}}}};
        emoji.push_back({{"unified", "1F44B"}, {"sheet_x", 1}, {"sheet_y", 0}, {"category", "People & Body"},
                         {"subcategory", "hand-fingers-open"}, {"has_img_google", true}, {"has_img_twitter", true},
                         {"skin_variations", skin}});
        emoji.push_back({{"unified", "2764-FE0F"}, {"sheet_x", 1}, {"sheet_y", 1}, {"category", "Smileys & Emotion"},
                         {"has_img_google", true}, {"has_img_twitter", true}});
        emoji.push_back({{"unified", "1F3FB"}, {"sheet_x", 0}, {"sheet_y", 1}, {"category", "Component"},
                         {"has_img_google", true}, {"has_img_twitter", true}});
        emoji.push_back({{"unified", "1F999"}, {"sheet_x", 0}, {"sheet_y", 0}, {"category", "Animals & Nature"},
                         {"has_img_google", true}, {"has_img_twitter", true}});
        test::write_text(dir / "emoji.json", emoji.dump());
        json base = json::array();
        base.push_back({{"hexcode", "1F600"}, {"label", "grinning face"}, {"tags", {"face", "grin"}}});
        base.push_back({{"hexcode", "1F44B"}, {"label", "waving hand"}, {"tags", {"hand", "wave"}},
                        {"skins", {{{"hexcode", "1F44B-1F3FB"}, {"label", "waving hand: light skin tone"}, {"tone", 1}}}}});
        base.push_back({{"hexcode", "2764"}, {"label", "red heart"}, {"tags", {"love"}}});  // no FE0F here
        test::write_text(dir / "data.json", base.dump());
        opt.emoji_json = dir / "emoji.json";
        opt.sheets_dir = dir / "img";
        opt.emojibase_json = dir / "data.json";
        opt.output_dir = dir / "out";
        opt.size = kSize;
    }
    std::vector<json> manifest() const {
        std::ifstream f(dir / "out/manifest.jsonl");
        std::vector<json> rows;
        for (std::string line; std::getline(f, line);) rows.push_back(json::parse(line));
        return rows;
    }
};

TEST(EmojiDataset, JoinKeyDropsFe0fAndUppercases) {
    EXPECT_EQ(emoji_join_key("2764-fe0f"), "2764");
    EXPECT_EQ(emoji_join_key("1F636-200D-1F32B-FE0F"), "1F636-200D-1F32B");
    EXPECT_EQ(emoji_join_key("0023-FE0F-20E3"), "0023-20E3");
    EXPECT_EQ(emoji_join_key("1f44b-1f3fe"), "1F44B-1F3FE");
}

TEST(EmojiDataset, CutsCellsJoinsCaptionsAndWritesTheManifest) {
    EmojiFixture fx;
    const EmojiPrepareReport r = prepare_emoji_dataset(fx.opt);
    EXPECT_EQ(r.images.at("noto"), 4);     // 1F600, 1F44B, 1F44B-1F3FB, 2764-FE0F
    EXPECT_EQ(r.images.at("twemoji"), 3);  // the skin variant has no Twitter image
    EXPECT_EQ(r.concepts, 4);              // Component dropped; 1F999 counts but has no caption
    EXPECT_EQ(r.members, 5);
    EXPECT_EQ(r.captions_joined, 4);
    EXPECT_EQ(r.unmatched, (std::vector<std::string>{"1F999"}));
    EXPECT_EQ(r.skipped_no_image, 1);

    const auto rows = fx.manifest();
    ASSERT_EQ(rows.size(), 7u);
    const json* wave = nullptr;
    const json* skin = nullptr;
    for (const json& row : rows) {
        if (row["file"] == "images/twemoji/1f44b.png") wave = &row;
        if (row["file"] == "images/noto/1f44b-1f3fb.png") skin = &row;
        EXPECT_NE(row["file"].get<std::string>().find("images/"), std::string::npos);
        EXPECT_FALSE(row.contains("apple"));
    }
    ASSERT_TRUE(wave && skin);
    EXPECT_EQ((*wave)["caption"], "waving hand, twemoji style");
    EXPECT_EQ((*wave)["label"], "waving hand");
    EXPECT_EQ((*wave)["keywords"], json({"hand", "wave"}));
    EXPECT_EQ((*wave)["style"], "twemoji");
    EXPECT_EQ((*wave)["group"], "People & Body");
    EXPECT_EQ((*wave)["category_id"], 1);
    EXPECT_EQ((*wave)["subgroup"], "hand-fingers-open");
    EXPECT_EQ((*wave)["tone"], 0);
    EXPECT_EQ((*skin)["caption"], "waving hand: light skin tone, noto style");
    EXPECT_EQ((*skin)["keywords"], json({"hand", "wave"}));  // inherited from the base emoji
    EXPECT_EQ((*skin)["tone"], 1);
    EXPECT_EQ((*skin)["concept_id"], (*wave)["concept_id"]);
    EXPECT_EQ((*skin)["unified"], "1F44B-1F3FB");
    bool heart = false;
    for (const json& row : rows) heart |= row["caption"] == "red heart, noto style" && row["file"] == "images/noto/2764-fe0f.png";
    EXPECT_TRUE(heart);

    // Cell (1, 0) of the twitter sheet: colour (60, 7, 2), its top-left pixel transparent -> white; no border.
    const Image img = read_image(fx.dir / "out/images/twemoji/1f44b.png");
    ASSERT_EQ(img.width, kSize);
    ASSERT_EQ(img.height, kSize);
    EXPECT_EQ(std::vector<uint8_t>(img.pixels.begin(), img.pixels.end()),
              (std::vector<uint8_t>{255, 255, 255, 60, 7, 2, 60, 7, 2, 60, 7, 2}));
    const Image skin_img = read_image(fx.dir / "out/images/noto/1f44b-1f3fb.png");  // cell (0, 1) of google
    EXPECT_EQ(skin_img.pixels[3], 70);
    EXPECT_EQ(skin_img.pixels[5], 1);

    // The output is a data set: read back through ImageCaptionDataset with style dropout.
    DatasetOptions o;
    o.style_dropout = 1;
    ImageCaptionDataset ds(fx.opt.output_dir, o);
    ASSERT_EQ(ds.size(), 7);
    Mt19937 rng(0);
    EXPECT_EQ(ds.get(0, rng).caption, "grinning face");
    EXPECT_EQ(ds.get(0, rng).image.shape(), (Shape{3, kSize, kSize}));
}

TEST(EmojiDatasetErrors, MissingSheetBadJsonOutsideCellsHostileNames) {
    {
        EmojiFixture fx;
        std::filesystem::remove(fx.dir / "img/twitter/sheets/2.png");
        const std::string e = error_of([&] { prepare_emoji_dataset(fx.opt); });
        EXPECT_THAT(e, HasSubstr("sprite sheet '"));
        EXPECT_THAT(e, HasSubstr("twitter/sheets/2.png' not found"));
    }
    {
        EmojiFixture fx;
        test::write_text(fx.dir / "emoji.json", "[{\"unified\": ");
        EXPECT_THAT(error_of([&] { prepare_emoji_dataset(fx.opt); }), HasSubstr("emoji.json' is not valid JSON"));
    }
    {
        EmojiFixture fx;  // nested past the depth bound: refused, not a stack overflow
        test::write_text(fx.dir / "emoji.json", std::string(200000, '[') + std::string(200000, ']'));
        EXPECT_THAT(error_of([&] { prepare_emoji_dataset(fx.opt); }), HasSubstr("nests JSON deeper than 128 levels"));
    }
    {
        EmojiFixture fx;
        test::write_text(fx.dir / "data.json", "{}");
        EXPECT_THAT(error_of([&] { prepare_emoji_dataset(fx.opt); }), HasSubstr("expected a JSON array"));
    }
    {
        EmojiFixture fx;
        test::write_text(fx.dir / "emoji.json",
                         R"([{"unified": "1F600", "sheet_x": 2, "sheet_y": 0, "category": "Smileys & Emotion", "has_img_google": true}])");
        const std::string e = error_of([&] { prepare_emoji_dataset(fx.opt); });
        EXPECT_THAT(e, HasSubstr("emoji 1F600: cell (2, 0) lies outside sheet"));
        EXPECT_THAT(e, HasSubstr("8x8 with 2-px cells"));
    }
    {
        EmojiFixture fx;
        test::write_text(fx.dir / "emoji.json",
                         R"([{"unified": "../../etc", "sheet_x": 0, "sheet_y": 0, "category": "Objects", "has_img_google": true}])");
        EXPECT_THAT(error_of([&] { prepare_emoji_dataset(fx.opt); }), HasSubstr("'unified' must be hex codepoints"));
    }
    {
        EmojiFixture fx;
        test::write_text(fx.dir / "emoji.json", R"([{"unified": "1F600", "category": "Objects"}])");
        EXPECT_THAT(error_of([&] { prepare_emoji_dataset(fx.opt); }), HasSubstr("entry 0: missing integer field 'sheet_x'"));
    }
}

std::pair<int, std::string> run_cli(const std::string& args) {
    const std::string cmd = std::string(NUANCE_CLI_PATH) + " " + args + " 2>&1";
    FILE* p = popen(cmd.c_str(), "r");
    std::string out;
    char buf[512];
    while (p && fgets(buf, sizeof buf, p)) out += buf;
    const int status = p ? pclose(p) : -1;
    return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}

TEST(EmojiDataset, PrepareEmojiCommand) {
    EmojiFixture fx;
    auto [rc, out] = run_cli("prepare-emoji --emoji-json " + fx.opt.emoji_json + " --sheets-dir " + fx.opt.sheets_dir +
                             " --emojibase " + fx.opt.emojibase_json + " -o " + fx.opt.output_dir + " --size 2");
    EXPECT_EQ(rc, 0) << out;
    EXPECT_THAT(out, HasSubstr("noto: 4 images"));
    EXPECT_THAT(out, HasSubstr("twemoji: 3 images"));
    EXPECT_THAT(out, HasSubstr("captions joined: 4, unmatched: 1"));
    EXPECT_THAT(out, HasSubstr("no emojibase caption for 1F999"));
    EXPECT_EQ(fx.manifest().size(), 7u);
    auto [rc2, out2] = run_cli("prepare-emoji --emoji-json " + fx.opt.emoji_json);
    EXPECT_EQ(rc2, 2) << out2;
    EXPECT_THAT(out2, HasSubstr("usage error"));
    auto [rc3, out3] = run_cli("prepare-emoji --emoji-json /nonexistent.json --sheets-dir " + fx.opt.sheets_dir +
                               " --emojibase " + fx.opt.emojibase_json + " -o " + fx.opt.output_dir + " --size 2");
    EXPECT_EQ(rc3, 1) << out3;
    EXPECT_THAT(out3, HasSubstr("emoji.json '/nonexistent.json' does not exist"));
}

}  // namespace
}  // namespace nuance
