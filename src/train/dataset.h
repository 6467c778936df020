// Training data: image + caption pairs from a folder (a JSONL manifest or sidecar .txt captions), with the
// transforms of the diffusers training scripts (resize shorter side, center crop, random flip) and the caption
// augmentations of the emoji set (caption / style / keyword dropout, shared/reference/data.md §1.4).
// Images: [C, H, W] F32 in [-1, 1]. All randomness comes from the Mt19937& passed to get(), so a sample is a pure
// function of (index, rng state): the DataLoader seeds one rng per sample and resumes bit-exactly.
#pragma once
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/mt19937.h"
#include "core/tensor.h"
#include "io/image.h"

namespace nuance {

struct Sample {
    Tensor image;         // [C, H, W] F32 in [-1, 1]
    std::string caption;  // after augmentation; may be empty (caption dropout)
};

// What a DataLoader needs from a data set. get() must be callable from the loader's prefetch thread while the
// caller does other work, so implementations keep get() free of shared mutable state.
class Dataset {
public:
    virtual ~Dataset() = default;
    virtual int64_t size() const = 0;
    virtual Sample get(int64_t index, Mt19937& rng) const = 0;
    // The file or record that `index` came from, for error messages ("image 'a/b.png' ...").
    virtual std::string describe(int64_t index) const = 0;
};

struct DatasetOptions {
    // Side of the square output. 0 keeps every image at its own size (then no resize or crop happens and the
    // DataLoader requires all images to be the same size).
    int resolution = 0;
    bool resize = true;          // scale so that the shorter side == resolution (Lanczos-3, io/image.h)
    bool center_crop = true;     // take the centered resolution x resolution square (else the top-left one)
    bool random_flip = false;    // horizontal flip with p = 0.5
    float caption_dropout = 0;   // p of the empty caption (classifier-free guidance)
    float style_dropout = 0;     // p of dropping the ", <style> style" suffix (manifest rows with "style")
    float keyword_prob = 0;      // p of appending 1..max_keywords shuffled keywords (manifest rows with "keywords")
    int max_keywords = 3;
    // Decode, resize and crop every image once at construction: errors surface before training starts and
    // get() only flips and converts (7,562 emoji at 32 px are 23 MB).
    bool cache_images = false;
    // Manifest file; empty: <root>/manifest.jsonl when it exists, else sidecar captions.
    std::string manifest;
    // Sidecar folders: the caption of an image without a <stem>.txt (kohya's class tokens, DreamBooth's instance or
    // class prompt); empty: such an image is an error.
    std::string default_caption;
    // Concepts held out of the data set (`nuance train --exclude-concepts FILE`): a row is left out when its label
    // (the manifest's "label", else its caption) is one of these names or starts with one followed by ':' or ','
    // ("waving hand" holds out "waving hand: medium skin tone" and "waving hand, noto style"). Each name must match
    // at least one row (a misspelt name would otherwise hold out nothing).
    std::vector<std::string> exclude_concepts;
    // Keep only the first `limit` rows (manifest order, or the sorted sidecar files), after the exclusions; 0: all
    // (`nuance train --limit`).
    int64_t limit = 0;
};

// Whether a sidecar folder's reader takes this file: extension .png, .jpg or .jpeg (any case).
bool is_image_ext(const std::filesystem::path& p);

// Reads an --exclude-concepts file: one name per line, '#' comments and blank lines ignored, surrounding spaces
// trimmed; at most 1 MiB, 65,536 names of at most 256 bytes each, and at least one name.
std::vector<std::string> read_concept_list(const std::string& path);

// One row: the image path (absolute), the canonical caption and, for manifests, every other key of the line.
struct CaptionRecord {
    std::string path;
    std::string caption;
    nlohmann::json meta = nlohmann::json::object();
};

// Manifest bounds: a line of at most 1 MiB (JSON nested at most kMaxJsonDepth deep), at most 100 million rows.
constexpr size_t kMaxManifestLineBytes = 1u << 20;
constexpr int64_t kMaxManifestRows = 100'000'000;

class ImageCaptionDataset final : public Dataset {
public:
    // root: a folder with either a JSONL manifest (one {"file": path relative to root, "caption": text, ...} per line)
    // or images (.png, .jpg, .jpeg, searched recursively, sorted by path) each with a <stem>.txt caption.
    ImageCaptionDataset(const std::string& root, const DatasetOptions& options = {});

    int64_t size() const override { return (int64_t)records_.size(); }
    Sample get(int64_t index, Mt19937& rng) const override;
    std::string describe(int64_t index) const override;

    const CaptionRecord& record(int64_t index) const;
    const DatasetOptions& options() const { return options_; }
    bool from_manifest() const { return from_manifest_; }
    int64_t excluded() const { return excluded_; }  // rows left out by DatasetOptions::exclude_concepts
    // The image after decode, alpha compositing on white, resize and crop (cached or decoded now): RGB u8.
    Image load_image(int64_t index) const;
    // The caption get() would produce with this rng (same draws, same order).
    std::string augment_caption(int64_t index, Mt19937& rng) const;

private:
    void read_manifest(const std::string& path);
    void scan_sidecars();
    std::string root_;
    DatasetOptions options_;
    bool from_manifest_ = false;
    int64_t excluded_ = 0;
    void exclude_concepts();
    std::vector<CaptionRecord> records_;
    std::vector<Image> cache_;
};

// Sampling weights that give every concept of the data set the same share of an epoch (`nuance train
// --balance-concepts`): row i weighs 1 / (rows of its concept). A concept is the manifest's "concept_id" (the emoji
// set's: one per CLDR emoji, shared by its skin-tone variants), else its "label", else the caption; with a "style"
// key, each (concept, style) pair is one concept. The emoji set has 3,812 of them for 7,562 rows: "People & Body"
// is 60% of the rows (skin tones) and 20% of the concepts.
std::vector<double> concept_balance_weights(const ImageCaptionDataset& data);

// Two data sets read as one (indices 0..first.size()-1, then second's): DreamBooth-style prior preservation trains
// the instance images (first) beside the class images (second). Both must outlive it.
class ConcatDataset final : public Dataset {
public:
    ConcatDataset(const Dataset& first, const Dataset& second) : first_(first), second_(second) {}
    int64_t size() const override { return first_.size() + second_.size(); }
    Sample get(int64_t index, Mt19937& rng) const override;
    std::string describe(int64_t index) const override;
    bool in_second(int64_t index) const { return index >= first_.size(); }

private:
    const Dataset& first_;
    const Dataset& second_;
};

// Loader weights (LoaderOptions::weights) for an instance set of `instance.size()` rows weighted `instance` (empty:
// every row 1) beside `n_class` class rows: the two halves each get half of an epoch's samples (kohya repeats the
// class images to the instance images' count), the rows of each half in proportion to their weights. n_class >= 1.
std::vector<double> prior_preservation_weights(const std::vector<double>& instance, int64_t n_instance,
                                               int64_t n_class);

// Uniform float in [0, 1) from 24 bits of one draw (the same rule as torch's uniform_real_distribution<float>).
inline float uniform01(Mt19937& rng) { return (float)(rng() & 0xFFFFFFu) * (1.0f / 16777216.0f); }
// Uniform integer in [0, n) (n >= 1) without modulo bias.
uint32_t uniform_below(Mt19937& rng, uint32_t n);

// RGB or RGBA u8 -> RGB composited over white (the emoji sheets and many PNGs are transparent).
Image composite_on_white(const Image& image);
// Shorter side -> `size` (Lanczos), then a size x size crop (centered or top-left).
Image resize_and_crop(const Image& image, int size, bool resize, bool center_crop);
// u8 HWC -> [C, H, W] F32 in [-1, 1] (x / 127.5 - 1), optionally mirrored left-right.
Tensor image_to_chw(const Image& image, bool flip);

}  // namespace nuance
