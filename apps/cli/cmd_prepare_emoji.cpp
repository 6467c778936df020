// nuance prepare-emoji: the emoji training set (Noto + Twemoji, 32 px) from emoji-datasource's sprite sheets and
// emojibase-data's CLDR captions; scripts/install-emoji-data.sh downloads the packages and runs it.
#include <chrono>
#include <cstdio>

#include "commands.h"
#include "core/error.h"
#include "train/emoji_dataset.h"

namespace nuance::cli {

Runner add_prepare_emoji(CLI::App& app) {
    auto o = std::make_shared<EmojiPrepareOptions>();
    CLI::App* c = app.add_subcommand("prepare-emoji", "Build the emoji image+caption training set from the npm packages");
    c->add_option("--emoji-json", o->emoji_json, "emoji-datasource's emoji.json")->required();
    c->add_option("--sheets-dir", o->sheets_dir, "Folder with google/sheets/<size>.png and twitter/sheets/<size>.png")
        ->required();
    c->add_option("--emojibase", o->emojibase_json, "emojibase-data's en/data.json")->required();
    c->add_option("-o,--output", o->output_dir, "Output folder (images/<style>/*.png + manifest.jsonl)")->required();
    c->add_option("--size", o->size, "Sheet cell size in pixels")->capture_default_str();
    return [o] {
        const auto t0 = std::chrono::steady_clock::now();
        const EmojiPrepareReport r = prepare_emoji_dataset(*o);
        const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        int64_t total = 0;
        for (const auto& [style, n] : r.images) {
            std::printf("%s: %lld images\n", style.c_str(), (long long)n);
            total += n;
        }
        std::printf("concepts: %lld, members (base + skin tones): %lld, captions joined: %lld, unmatched: %zu, "
                    "missing vendor images: %lld\n",
                    (long long)r.concepts, (long long)r.members, (long long)r.captions_joined, r.unmatched.size(),
                    (long long)r.skipped_no_image);
        for (size_t i = 0; i < r.unmatched.size() && i < 10; ++i)
            std::fprintf(stderr, "warning: no emojibase caption for %s (skipped)\n", r.unmatched[i].c_str());
        std::fprintf(stderr, "wrote %lld images and %s/manifest.jsonl in %.1fs\n", (long long)total,
                     o->output_dir.c_str(), s);
        return 0;
    };
}

}  // namespace nuance::cli
