// ImageCaptionDataset: sidecar and manifest folders, transforms, caption augmentation, error messages.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>

#include "../test_util.h"
#include "data_test_util.h"
#include "train/data_loader.h"
#include "train/dataset.h"

namespace nuance {
namespace {

using test::error_of;
using test::TempDir;
using ::testing::HasSubstr;

float px(const Tensor& t, int c, int y, int x) {
    return t.data<float>()[((size_t)c * t.size(1) + y) * t.size(2) + x];
}
float u8_to_f(int v) { return (float)v / 255.0f * 2.0f - 1.0f; }

TEST(ImageCaptionDataset, SidecarCaptionsRecursiveSortedAndTrimmed) {
    TempDir d("ds_sidecar");
    test::write_image(d / "b.png", test::gradient_image(4, 4, 10));
    test::write_text(d / "b.txt", "  a red apple\n");
    test::write_image(d / "a/z.png", test::gradient_image(4, 4, 20));
    test::write_text(d / "a/z.txt", "green pear");
    test::write_text(d / "notes.md", "ignored");
    ImageCaptionDataset ds(d.path().string());
    ASSERT_EQ(ds.size(), 2);
    EXPECT_FALSE(ds.from_manifest());
    EXPECT_THAT(ds.record(0).path, HasSubstr("a/z.png"));  // sorted by path: "a/z.png" < "b.png"
    EXPECT_EQ(ds.record(0).caption, "green pear");
    EXPECT_EQ(ds.record(1).caption, "a red apple");
    Mt19937 rng(1);
    Sample s = ds.get(1, rng);
    EXPECT_EQ(s.caption, "a red apple");
    ASSERT_EQ(s.image.shape(), (Shape{3, 4, 4}));
    EXPECT_EQ(px(s.image, 0, 2, 3), u8_to_f(10 + 3));  // red = 10 + x
    EXPECT_EQ(px(s.image, 1, 2, 3), u8_to_f(2));       // green = y
    EXPECT_EQ(px(s.image, 2, 0, 0), u8_to_f(100));
    EXPECT_THAT(ds.describe(1), HasSubstr("b.png"));
}

TEST(ImageCaptionDataset, ManifestKeepsOtherKeysAndSkipsBlankLines) {
    TempDir d("ds_manifest");
    test::write_image(d / "images/x.png", test::gradient_image(2, 2));
    test::write_image(d / "images/y.png", test::gradient_image(2, 2, 50));
    test::write_text(d / "manifest.jsonl",
                     "{\"file\": \"images/x.png\", \"caption\": \"cat\", \"category_id\": 3, \"style\": \"noto\"}\n"
                     "\n"
                     "{\"file\": \"images/y.png\", \"caption\": \"dog\"}\n");
    ImageCaptionDataset ds(d.path().string());
    ASSERT_EQ(ds.size(), 2);
    EXPECT_TRUE(ds.from_manifest());
    EXPECT_EQ(ds.record(0).caption, "cat");
    EXPECT_EQ(ds.record(0).meta.at("category_id").get<int>(), 3);
    EXPECT_EQ(ds.record(0).meta.at("style").get<std::string>(), "noto");
    EXPECT_FALSE(ds.record(0).meta.contains("file"));
    EXPECT_EQ(ds.record(1).caption, "dog");
    Mt19937 rng(0);
    EXPECT_EQ(px(ds.get(1, rng).image, 0, 0, 1), u8_to_f(51));
}

TEST(ImageCaptionDataset, ExcludedConceptsLeaveOutTheirLabelsAndCaptions) {
    TempDir d("ds_exclude");
    for (const char* f : {"a", "b", "c", "e", "f"}) test::write_image(d / (std::string("images/") + f + ".png"),
                                                                       test::gradient_image(2, 2));
    test::write_text(d / "manifest.jsonl",
                     "{\"file\": \"images/a.png\", \"caption\": \"waving hand, noto style\", \"label\": \"waving hand\"}\n"
                     "{\"file\": \"images/b.png\", \"caption\": \"x\", \"label\": \"waving hand: medium skin tone\"}\n"
                     "{\"file\": \"images/c.png\", \"caption\": \"waving hands, noto style\", \"label\": \"waving hands\"}\n"
                     "{\"file\": \"images/e.png\", \"caption\": \"red apple, twemoji style\"}\n"
                     "{\"file\": \"images/f.png\", \"caption\": \"red apples\"}\n");
    test::write_text(d / "held.txt", "# held out\n  waving hand \n\nred apple\n");
    DatasetOptions o;
    o.exclude_concepts = read_concept_list(d / "held.txt");
    ASSERT_EQ(o.exclude_concepts, (std::vector<std::string>{"waving hand", "red apple"}));
    ImageCaptionDataset ds(d.path().string(), o);
    EXPECT_EQ(ds.excluded(), 3);  // both "waving hand" rows (by label) and "red apple, ..." (by caption)
    ASSERT_EQ(ds.size(), 2);
    EXPECT_EQ(ds.record(0).caption, "waving hands, noto style");  // another concept whose name starts the same
    EXPECT_EQ(ds.record(1).caption, "red apples");
    // A name that matches nothing is an error (a typo would otherwise hold out nothing), as is holding out everything.
    o.exclude_concepts = {"waving hand", "wavng hands"};
    EXPECT_THAT(error_of([&] { ImageCaptionDataset x(d.path().string(), o); }),
                HasSubstr("the held-out concept 'wavng hands' matches no image's label"));
    o.exclude_concepts = {"waving hand", "waving hands", "red apple", "red apples"};
    EXPECT_THAT(error_of([&] { ImageCaptionDataset x(d.path().string(), o); }), HasSubstr("has no images"));
}

// --balance-concepts: 1 / (rows of the concept), a concept being concept_id, else label, else caption, per style.
TEST(ImageCaptionDataset, ConceptBalanceWeights) {
    TempDir d("ds_balance");
    for (int i = 0; i < 9; ++i) test::write_image(d / ("images/" + std::to_string(i) + ".png"), test::gradient_image(2, 2));
    test::write_text(d / "manifest.jsonl",
                     // concept 5 in noto: 3 skin tones; in twemoji: 1 row; concept 6: 1 row
                     "{\"file\": \"images/0.png\", \"caption\": \"a\", \"concept_id\": 5, \"style\": \"noto\"}\n"
                     "{\"file\": \"images/1.png\", \"caption\": \"b\", \"concept_id\": 5, \"style\": \"noto\"}\n"
                     "{\"file\": \"images/2.png\", \"caption\": \"c\", \"concept_id\": 5, \"style\": \"noto\"}\n"
                     "{\"file\": \"images/3.png\", \"caption\": \"d\", \"concept_id\": 5, \"style\": \"twemoji\"}\n"
                     "{\"file\": \"images/4.png\", \"caption\": \"e\", \"concept_id\": 6, \"style\": \"noto\"}\n"
                     // no concept_id: by label (two rows share one), else by caption (two rows share one)
                     "{\"file\": \"images/5.png\", \"caption\": \"f\", \"label\": \"dog\"}\n"
                     "{\"file\": \"images/6.png\", \"caption\": \"g\", \"label\": \"dog\"}\n"
                     "{\"file\": \"images/7.png\", \"caption\": \"cat\"}\n"
                     "{\"file\": \"images/8.png\", \"caption\": \"cat\"}\n");
    ImageCaptionDataset ds(d.path().string());
    const std::vector<double> w = concept_balance_weights(ds);
    EXPECT_EQ(w, (std::vector<double>{1.0 / 3, 1.0 / 3, 1.0 / 3, 1, 1, 0.5, 0.5, 0.5, 0.5}));
    // Sidecar captions: each distinct caption is a concept (all weights 1 here).
    TempDir s("ds_balance_sidecar");
    for (const char* f : {"x", "y"}) {
        test::write_image(s / (std::string(f) + ".png"), test::gradient_image(2, 2));
        test::write_text(s / (std::string(f) + ".txt"), f);
    }
    EXPECT_EQ(concept_balance_weights(ImageCaptionDataset(s.path().string())), (std::vector<double>{1, 1}));
}

TEST(ImageCaptionDatasetErrors, ConceptListFilesAreChecked) {
    TempDir d("ds_exclude_err");
    EXPECT_THAT(error_of([&] { read_concept_list(d / "missing.txt"); }), HasSubstr("is not a readable file"));
    test::write_text(d / "empty.txt", "# nothing\n\n");
    EXPECT_THAT(error_of([&] { read_concept_list(d / "empty.txt"); }), HasSubstr("lists no concept"));
    test::write_text(d / "long.txt", "ok\n" + std::string(300, 'a') + "\n");
    EXPECT_THAT(error_of([&] { read_concept_list(d / "long.txt"); }),
                HasSubstr("line 2: a name longer than 256 bytes"));
    test::write_text(d / "big.txt", std::string((1u << 20) + 1, 'a'));
    EXPECT_THAT(error_of([&] { read_concept_list(d / "big.txt"); }), HasSubstr("larger than 1 MiB"));
}

TEST(ImageCaptionDataset, ValuesSpanExactlyMinusOneToOne) {
    TempDir d("ds_range");
    Image img = test::gradient_image(2, 1);
    img.pixels = {0, 0, 0, 255, 255, 255};
    test::write_image(d / "a.png", img);
    test::write_text(d / "a.txt", "x");
    ImageCaptionDataset ds(d.path().string());
    Mt19937 rng(0);
    const std::vector<float> v = ds.get(0, rng).image.to_vector();
    EXPECT_EQ(*std::min_element(v.begin(), v.end()), -1.0f);
    EXPECT_EQ(*std::max_element(v.begin(), v.end()), 1.0f);
}

TEST(ImageCaptionDataset, RandomFlipMirrorsColumnsAndIsSeeded) {
    TempDir d("ds_flip");
    test::write_image(d / "a.png", test::gradient_image(5, 3));
    test::write_text(d / "a.txt", "x");
    DatasetOptions o;
    o.random_flip = true;
    ImageCaptionDataset ds(d.path().string(), o);
    int flipped = 0, plain = 0;
    for (uint64_t seed = 0; seed < 40; ++seed) {
        Mt19937 r1(seed), r2(seed);
        const Tensor a = ds.get(0, r1).image, b = ds.get(0, r2).image;
        EXPECT_EQ(a.to_vector(), b.to_vector()) << "same rng state, same sample";
        if (px(a, 0, 0, 0) == u8_to_f(4)) {  // column 4 moved to column 0
            ++flipped;
            const Image src = test::gradient_image(5, 3);
            for (int c = 0; c < 3; ++c)
                for (int y = 0; y < 3; ++y)
                    for (int x = 0; x < 5; ++x) {
                        const uint8_t* p = &src.pixels[((size_t)y * 5 + (4 - x)) * 3];
                        ASSERT_EQ(px(a, c, y, x), u8_to_f(p[c]));
                    }
        } else {
            ASSERT_EQ(px(a, 0, 0, 0), u8_to_f(0));
            ++plain;
        }
    }
    EXPECT_GT(flipped, 5);
    EXPECT_GT(plain, 5);
}

TEST(ImageCaptionDataset, CenterCropTakesTheMiddleAndResizeMatchesShorterSide) {
    TempDir d("ds_crop");
    test::write_image(d / "wide.png", test::gradient_image(8, 4));
    test::write_text(d / "wide.txt", "x");
    DatasetOptions o;
    o.resolution = 4;
    {
        ImageCaptionDataset ds(d.path().string(), o);
        Mt19937 rng(0);
        const Tensor t = ds.get(0, rng).image;
        ASSERT_EQ(t.shape(), (Shape{3, 4, 4}));
        EXPECT_EQ(px(t, 0, 0, 0), u8_to_f(2));  // x0 = (8 - 4) / 2
        EXPECT_EQ(px(t, 0, 3, 3), u8_to_f(5));
        EXPECT_EQ(px(t, 1, 3, 3), u8_to_f(3));
    }
    o.center_crop = false;
    {
        ImageCaptionDataset ds(d.path().string(), o);
        Mt19937 rng(0);
        EXPECT_EQ(px(ds.get(0, rng).image, 0, 0, 0), u8_to_f(0));
    }
    // 16x8 -> shorter side 4 -> 8x4 -> centered 4x4; a flat image stays flat through Lanczos.
    Image flat = test::gradient_image(16, 8);
    std::fill(flat.pixels.begin(), flat.pixels.end(), 77);
    test::write_image(d / "wide.png", flat);
    o.center_crop = true;
    ImageCaptionDataset ds(d.path().string(), o);
    Mt19937 rng(0);
    const Tensor t = ds.get(0, rng).image;
    ASSERT_EQ(t.shape(), (Shape{3, 4, 4}));
    for (float v : t.to_vector()) ASSERT_EQ(v, u8_to_f(77));
    EXPECT_EQ(ds.load_image(0).width, 4);
}

TEST(ImageCaptionDataset, TransparentPixelsBecomeWhite) {
    TempDir d("ds_alpha");
    Image img;
    img.width = 3;
    img.height = 1;
    img.channels = 4;
    img.pixels = {0, 0, 0, 0, /* transparent black */ 10, 20, 30, 255, /* opaque */ 0, 0, 0, 128 /* half black */};
    test::write_image(d / "a.png", img);
    test::write_text(d / "a.txt", "x");
    ImageCaptionDataset ds(d.path().string());
    const Image rgb = ds.load_image(0);
    ASSERT_EQ(rgb.channels, 3);
    EXPECT_EQ(std::vector<uint8_t>(rgb.pixels.begin(), rgb.pixels.end()),
              (std::vector<uint8_t>{255, 255, 255, 10, 20, 30, 127, 127, 127}));  // 255 * 127 / 255
}

TEST(ImageCaptionDataset, CaptionStyleAndKeywordAugmentation) {
    TempDir d("ds_caption");
    test::write_image(d / "a.png", test::gradient_image(2, 2));
    test::write_text(d / "manifest.jsonl",
                     "{\"file\": \"a.png\", \"caption\": \"waving hand, twemoji style\", \"style\": \"twemoji\", "
                     "\"keywords\": [\"hand\", \"wave\", \"hello\", \"bye\"]}\n");
    DatasetOptions o;
    auto caption = [&](uint64_t seed) {
        ImageCaptionDataset ds(d.path().string(), o);
        Mt19937 rng(seed);
        return ds.get(0, rng).caption;
    };
    EXPECT_EQ(caption(0), "waving hand, twemoji style");
    o.caption_dropout = 1;
    EXPECT_EQ(caption(0), "");
    o.caption_dropout = 0;
    o.style_dropout = 1;
    EXPECT_EQ(caption(0), "waving hand");
    o.style_dropout = 0;
    o.keyword_prob = 1;
    std::set<size_t> counts;
    for (uint64_t seed = 0; seed < 60; ++seed) {
        const std::string c = caption(seed);
        ASSERT_EQ(c.rfind("waving hand, twemoji style, ", 0), 0u) << c;
        std::vector<std::string> kws;
        std::stringstream ss(c.substr(28));
        for (std::string k; std::getline(ss, k, ',');) kws.push_back(k[0] == ' ' ? k.substr(1) : k);
        std::set<std::string> uniq(kws.begin(), kws.end());
        EXPECT_EQ(uniq.size(), kws.size()) << c;
        for (const auto& k : kws) EXPECT_TRUE(k == "hand" || k == "wave" || k == "hello" || k == "bye") << c;
        counts.insert(kws.size());
    }
    EXPECT_EQ(counts, (std::set<size_t>{1, 2, 3}));  // 1..max_keywords
    // Turning keywords on must not change the flip of the same rng (fixed draws per sample).
    o.random_flip = true;
    o.keyword_prob = 0;
    ImageCaptionDataset a(d.path().string(), o);
    o.keyword_prob = 1;
    ImageCaptionDataset b(d.path().string(), o);
    for (uint64_t seed = 0; seed < 10; ++seed) {
        Mt19937 r1(seed), r2(seed);
        EXPECT_EQ(a.get(0, r1).image.to_vector(), b.get(0, r2).image.to_vector());
    }
}

TEST(ImageCaptionDataset, CachedImagesEqualDecodedOnes) {
    TempDir d("ds_cache");
    for (int i = 0; i < 3; ++i) {
        test::write_image(d / ("i" + std::to_string(i) + ".png"), test::gradient_image(6, 5, i * 30));
        test::write_text(d / ("i" + std::to_string(i) + ".txt"), "c" + std::to_string(i));
    }
    DatasetOptions o;
    o.resolution = 4;
    o.random_flip = true;
    ImageCaptionDataset plain(d.path().string(), o);
    o.cache_images = true;
    ImageCaptionDataset cached(d.path().string(), o);
    for (int64_t i = 0; i < 3; ++i) {
        Mt19937 r1(i), r2(i);
        const Sample a = plain.get(i, r1), b = cached.get(i, r2);
        EXPECT_EQ(a.image.to_vector(), b.image.to_vector());
        EXPECT_EQ(a.caption, b.caption);
    }
}

TEST(ImageCaptionDatasetErrors, MissingFolderAndNoImages) {
    EXPECT_THAT(error_of([] { ImageCaptionDataset("/nonexistent/nuance_data_xyz"); }),
                HasSubstr("dataset folder '/nonexistent/nuance_data_xyz' does not exist"));
    TempDir d("ds_empty");
    test::write_text(d / "readme.txt", "no images here");
    EXPECT_THAT(error_of([&] { ImageCaptionDataset ds(d.path().string()); }), HasSubstr("has no images"));
    test::write_text(d / "manifest.jsonl", "\n");
    EXPECT_THAT(error_of([&] { ImageCaptionDataset ds(d.path().string()); }), HasSubstr("lists none"));
}

TEST(ImageCaptionDatasetErrors, ImageWithoutCaptionNamesTheFile) {
    TempDir d("ds_nocap");
    test::write_image(d / "a.png", test::gradient_image(2, 2));
    test::write_text(d / "a.txt", "x");
    test::write_image(d / "lonely.jpg.png", test::gradient_image(2, 2));
    const std::string e = error_of([&] { ImageCaptionDataset ds(d.path().string()); });
    EXPECT_THAT(e, HasSubstr("lonely.jpg.png' has no caption"));
    EXPECT_THAT(e, HasSubstr("lonely.jpg.txt"));
}

// kohya's class tokens / DreamBooth's instance prompt: an image without a caption file takes the default caption,
// one with a file keeps its own.
TEST(ImageCaptionDataset, DefaultCaptionForImagesWithoutCaptionFiles) {
    TempDir d("ds_defcap");
    test::write_image(d / "a.png", test::gradient_image(2, 2));
    test::write_text(d / "a.txt", " own caption \n");
    test::write_image(d / "sub/b.png", test::gradient_image(2, 2));
    DatasetOptions o;
    o.default_caption = "a photo of sks dog";
    ImageCaptionDataset ds(d.path().string(), o);
    ASSERT_EQ(ds.size(), 2);
    EXPECT_EQ(ds.record(0).caption, "own caption");
    EXPECT_EQ(ds.record(1).caption, "a photo of sks dog");
    Mt19937 rng(1);
    EXPECT_EQ(ds.get(1, rng).caption, "a photo of sks dog");
}

// --limit keeps the first N rows (in the reader's order, after the held-out concepts are dropped); 0 keeps all, a
// limit above the count keeps all, a negative one is refused.
TEST(ImageCaptionDataset, LimitKeepsTheFirstRows) {
    TempDir d("ds_limit");
    for (int i = 0; i < 4; ++i) {
        test::write_image(d / ("i" + std::to_string(i) + ".png"), test::gradient_image(2, 2, 10 * i));
        test::write_text(d / ("i" + std::to_string(i) + ".txt"), i == 0 ? "waving hand" : "thing " + std::to_string(i));
    }
    DatasetOptions o;
    o.limit = 2;
    ImageCaptionDataset two(d.path().string(), o);
    ASSERT_EQ(two.size(), 2);
    EXPECT_EQ(two.record(0).caption, "waving hand");
    EXPECT_EQ(two.record(1).caption, "thing 1");
    o.exclude_concepts = {"waving hand"};
    ImageCaptionDataset held(d.path().string(), o);
    ASSERT_EQ(held.size(), 2);
    EXPECT_EQ(held.record(0).caption, "thing 1");
    EXPECT_EQ(held.record(1).caption, "thing 2");
    o.exclude_concepts.clear();
    o.limit = 100;
    EXPECT_EQ(ImageCaptionDataset(d.path().string(), o).size(), 4);
    o.limit = 0;
    EXPECT_EQ(ImageCaptionDataset(d.path().string(), o).size(), 4);
    o.limit = -1;
    EXPECT_THAT(test::error_of([&] { ImageCaptionDataset bad(d.path().string(), o); }), HasSubstr("limit must be >= 0"));
}

// Two sets read as one: indices route to the first set, then the second; describe() names the right file.
TEST(ConcatDataset, RoutesIndicesToBothSets) {
    TempDir a("ds_cat_a"), b("ds_cat_b");
    test::write_image(a / "x.png", test::gradient_image(2, 2, 10));
    test::write_text(a / "x.txt", "first");
    for (int i = 0; i < 2; ++i) {
        test::write_image(b / ("y" + std::to_string(i) + ".png"), test::gradient_image(2, 2, 50 + i));
        test::write_text(b / ("y" + std::to_string(i) + ".txt"), "second " + std::to_string(i));
    }
    ImageCaptionDataset da(a.path().string()), db(b.path().string());
    ConcatDataset cat(da, db);
    ASSERT_EQ(cat.size(), 3);
    EXPECT_FALSE(cat.in_second(0));
    EXPECT_TRUE(cat.in_second(1));
    Mt19937 rng(1);
    EXPECT_EQ(cat.get(0, rng).caption, "first");
    EXPECT_EQ(cat.get(2, rng).caption, "second 1");
    EXPECT_THAT(cat.describe(1), HasSubstr("y0.png"));
    EXPECT_THAT(error_of([&] { cat.get(3, rng); }), HasSubstr("index 3 outside 0..2"));
    EXPECT_THAT(error_of([&] { cat.describe(-1); }), HasSubstr("index -1 outside"));
}

// Prior preservation's loader weights: the instance rows (in proportion to their own weights) and the class rows
// each take half of an epoch, as kohya's repeated class images do; the loader's epochs then hold them half and half.
TEST(PriorPreservationWeights, EachSetTakesHalfAnEpoch) {
    std::vector<double> w = prior_preservation_weights({}, 3, 9);
    ASSERT_EQ(w.size(), 12u);
    for (int i = 0; i < 3; ++i) EXPECT_DOUBLE_EQ(w[(size_t)i], 1.0 / 3);
    for (int i = 3; i < 12; ++i) EXPECT_DOUBLE_EQ(w[(size_t)i], 1.0 / 9);
    w = prior_preservation_weights({1.0, 3.0}, 2, 1);  // concept-balanced instance weights keep their ratio
    EXPECT_DOUBLE_EQ(w[0], 0.25);
    EXPECT_DOUBLE_EQ(w[1], 0.75);
    EXPECT_DOUBLE_EQ(w[2], 1.0);

    TempDir a("ds_prior_a"), b("ds_prior_b");
    for (int i = 0; i < 3; ++i) test::write_image(a / ("i" + std::to_string(i) + ".png"), test::gradient_image(2, 2));
    for (int i = 0; i < 9; ++i) test::write_image(b / ("c" + std::to_string(i) + ".png"), test::gradient_image(2, 2));
    DatasetOptions o;
    o.default_caption = "x";
    ImageCaptionDataset da(a.path().string(), o), db(b.path().string(), o);
    ConcatDataset cat(da, db);
    LoaderOptions lo;
    lo.batch_size = 4;
    lo.prefetch = false;
    lo.weights = prior_preservation_weights({}, 3, 9);
    DataLoader loader(cat, 5, lo);
    for (int64_t e = 0; e < 4; ++e) {
        const std::vector<int64_t> order = loader.epoch_order(e);
        ASSERT_EQ(order.size(), 12u);
        int64_t instance = 0;
        std::vector<int64_t> per_row(12, 0);
        for (int64_t i : order) {
            instance += i < 3;
            ++per_row[(size_t)i];
        }
        EXPECT_EQ(instance, 6) << "epoch " << e;  // half of 12
        for (int i = 0; i < 3; ++i) EXPECT_EQ(per_row[(size_t)i], 2) << "instance row " << i;
        for (int i = 3; i < 12; ++i) EXPECT_TRUE(per_row[(size_t)i] == 0 || per_row[(size_t)i] == 1) << i;
    }
}

TEST(PriorPreservationWeightsErrors, SizesAndValuesAreChecked) {
    EXPECT_THAT(error_of([] { prior_preservation_weights({}, 3, 0); }), HasSubstr("needs instance and class images"));
    EXPECT_THAT(error_of([] { prior_preservation_weights({}, 0, 2); }), HasSubstr("needs instance and class images"));
    EXPECT_THAT(error_of([] { prior_preservation_weights({1.0}, 2, 2); }), HasSubstr("1 instance weights for 2 rows"));
    EXPECT_THAT(error_of([] { prior_preservation_weights({1.0, -1.0}, 2, 2); }), HasSubstr("instance weight is -1"));
    EXPECT_THAT(error_of([] { prior_preservation_weights({1.0, NAN}, 2, 2); }), HasSubstr("instance weight is nan"));
    EXPECT_THAT(error_of([] { prior_preservation_weights({0.0, 0.0}, 2, 2); }), HasSubstr("sum to 0"));
}

TEST(ImageCaptionDatasetErrors, CorruptImageNamesTheFile) {
    TempDir d("ds_corrupt");
    test::write_text(d / "bad.png", "\x89PNG\r\n\x1a\n this is not a png");
    test::write_text(d / "bad.txt", "x");
    ImageCaptionDataset ds(d.path().string());  // lazy: found at get()
    Mt19937 rng(0);
    EXPECT_THAT(error_of([&] { ds.get(0, rng); }), HasSubstr("bad.png"));
    DatasetOptions o;
    o.cache_images = true;  // eager: found at construction
    EXPECT_THAT(error_of([&] { ImageCaptionDataset c(d.path().string(), o); }), HasSubstr("bad.png"));
    test::write_text(d / "bad.png", "");
    EXPECT_THAT(error_of([&] { ds.get(0, rng); }), HasSubstr("bad.png"));
}

TEST(ImageCaptionDatasetErrors, ManifestProblemsNameTheLine) {
    TempDir d("ds_badmanifest");
    test::write_image(d / "a.png", test::gradient_image(2, 2));
    const std::string good = "{\"file\": \"a.png\", \"caption\": \"x\"}\n";
    auto err = [&](const std::string& text) {
        test::write_text(d / "manifest.jsonl", text);
        return error_of([&] { ImageCaptionDataset ds(d.path().string()); });
    };
    std::string e = err(good + "{\"file\": \"a.png\", caption: x}\n");
    EXPECT_THAT(e, HasSubstr("line 2: not valid JSON"));
    EXPECT_THAT(e, HasSubstr("manifest.jsonl"));
    EXPECT_THAT(err(good + "\n{\"file\": \"missing.png\", \"caption\": \"x\"}\n"),
                HasSubstr("line 3: image 'missing.png' not found"));
    EXPECT_THAT(err("{\"file\": \"a.png\"}\n"), HasSubstr("line 1: missing string field 'caption' (file 'a.png')"));
    EXPECT_THAT(err("{\"caption\": \"x\"}\n"), HasSubstr("line 1: missing string field 'file'"));
    EXPECT_THAT(err("[1, 2]\n"), HasSubstr("line 1: expected a JSON object"));
    EXPECT_THAT(err("{\"file\": \"a.png\", \"caption\": \"x\", \"keywords\": \"hand\"}\n"),
                HasSubstr("line 1: 'keywords' must be an array of strings"));
    DatasetOptions o;
    o.manifest = d / "nope.jsonl";
    EXPECT_THAT(error_of([&] { ImageCaptionDataset ds(d.path().string(), o); }), HasSubstr("manifest '" + (d / "nope.jsonl") + "' does not exist"));
    // Hostile manifests: a device (would never end), a line over 1 MiB, JSON nested past the depth bound.
    o.manifest = "/dev/zero";
    EXPECT_THAT(error_of([&] { ImageCaptionDataset ds(d.path().string(), o); }),
                HasSubstr("manifest '/dev/zero' is not a regular file (it is a character device)"));
    EXPECT_THAT(err(good + std::string((1u << 20) + 10, ' ') + "\n"), HasSubstr("line 2 is longer than 1048576 bytes"));
    EXPECT_THAT(err(good + std::string(100000, '[') + std::string(100000, ']') + "\n"),
                HasSubstr("line 2: JSON nested deeper than 128 levels"));
    EXPECT_EQ(err(good.substr(0, good.size() - 1)), "(no error)");  // the last line without its newline
}

TEST(ImageCaptionDatasetErrors, BadOptionsAndTooSmallImages) {
    TempDir d("ds_opts");
    test::write_image(d / "small.png", test::gradient_image(3, 3));
    test::write_text(d / "small.txt", "x");
    DatasetOptions o;
    o.caption_dropout = 1.5f;
    EXPECT_THAT(error_of([&] { ImageCaptionDataset ds(d.path().string(), o); }), HasSubstr("[0, 1], got 1.5"));
    o = {};
    o.resolution = 8;
    o.resize = false;
    ImageCaptionDataset ds(d.path().string(), o);
    Mt19937 rng(0);
    const std::string e = error_of([&] { ds.get(0, rng); });
    EXPECT_THAT(e, HasSubstr("small.png"));
    EXPECT_THAT(e, HasSubstr("smaller than the crop 8x8"));
    EXPECT_THAT(error_of([&] { ds.record(5); }), HasSubstr("index 5 out of range"));
}

}  // namespace
}  // namespace nuance
