// A synthetic emoji folder for the classifier and eval-emoji tests: images of 3 easily told kinds and a manifest
// with the fields `nuance prepare-emoji` writes that those read (caption, style, category_id, concept_id).
#pragma once
#include <algorithm>
#include <random>
#include <string>

#include "data_test_util.h"

namespace nuance::test {

// n images of 3 visually distinct kinds (category c = i % 3: a red disc, a blue bar, a green frame, with noise),
// one concept per image, alternating styles: a folder the classifier can learn in a few steps.
inline void write_synthetic_emoji(const TempDir& dir, int n, bool with_category = true) {
    std::mt19937 gen(5);
    std::string manifest;
    for (int i = 0; i < n; ++i) {
        const int c = i % 3;
        Image img;
        img.width = img.height = 32;
        img.channels = 3;
        img.pixels.assign(32 * 32 * 3, 255);
        for (int y = 0; y < 32; ++y)
            for (int x = 0; x < 32; ++x) {
                uint8_t* p = &img.pixels[(size_t)(y * 32 + x) * 3];
                const bool on = c == 0 ? (x - 16) * (x - 16) + (y - 16) * (y - 16) < 100
                                : c == 1 ? (x >= 12 && x < 20)
                                         : (x < 4 || y < 4 || x >= 28 || y >= 28);
                if (on) {
                    p[0] = c == 0 ? 220 : 20;
                    p[1] = c == 2 ? 200 : 30;
                    p[2] = c == 1 ? 210 : 40;
                }
                for (int k = 0; k < 3; ++k) p[k] = (uint8_t)std::clamp((int)p[k] + (int)(gen() % 31) - 15, 0, 255);
            }
        const std::string file = "images/" + std::to_string(i) + ".png";
        test::write_image(dir / file, img);
        const std::string style = i % 2 ? "twemoji" : "noto";
        manifest += "{\"file\": \"" + file + "\", \"caption\": \"thing " + std::to_string(i) + ", " + style +
                    " style\", \"style\": \"" + style + "\"" +
                    (with_category ? ", \"category_id\": " + std::to_string(c) : std::string()) +
                    ", \"concept_id\": " + std::to_string(i) + "}\n";
    }
    test::write_text(dir / "manifest.jsonl", manifest);
}

}  // namespace nuance::test
