// Inpainting over HTTP: A1111 /sdapi/v1/img2img with `mask` and its fields (names and defaults of A1111's
// StableDiffusionProcessingImg2Img), OpenAI /v1/images/edits (multipart; the mask's transparent area is edited).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "server_fixture.h"

namespace nuance::server::test {
namespace {

using ::testing::HasSubstr;
const char* kJson = "application/json";

Image pattern(int w, int h) {
    Image i;
    i.width = w;
    i.height = h;
    i.channels = 3;
    i.pixels.resize((size_t)w * h * 3);
    for (size_t k = 0; k < i.pixels.size(); ++k) i.pixels[k] = (uint8_t)(k * 37 % 251);
    return i;
}

// 64x64, white (or opaque, for RGBA) on [16, 48) x [16, 40).
Image rect_mask(int channels, bool opaque_inside) {
    Image m;
    m.width = m.height = 64;
    m.channels = channels;
    m.pixels.assign(64 * 64 * (size_t)channels, 0);
    for (int y = 0; y < 64; ++y)
        for (int x = 0; x < 64; ++x) {
            const bool in = x >= 16 && x < 48 && y >= 16 && y < 40;
            uint8_t* p = &m.pixels[((size_t)y * 64 + x) * channels];
            if (channels == 3) p[0] = p[1] = p[2] = in ? 255 : 0;
            else p[3] = (in == opaque_inside) ? 255 : 0;
        }
    return m;
}

int differing(const Image& a, const Image& b, int x1, int y1, int x2, int y2) {
    int n = 0;
    for (int y = y1; y < y2; ++y)
        for (int x = x1; x < x2; ++x)
            for (int c = 0; c < 3; ++c) {
                const size_t i = ((size_t)y * a.width + x) * 3 + c;
                if (a.pixels[i] != b.pixels[i]) {
                    ++n;
                    break;
                }
            }
    return n;
}

json img2img(const Image& init) {
    return {{"prompt", "a red apple"}, {"steps", 2}, {"width", 64}, {"height", 64}, {"seed", 3},
            {"sampler_name", "Euler"}, {"init_images", json::array({png_b64(init)})}, {"denoising_strength", 1.0}};
}

TEST(ServerInpaint, A1111MaskRepaintsOnlyTheMask) {
    TestServer ts;
    auto c = ts.client();
    const Image init = pattern(64, 64);
    json req = img2img(init);
    req["mask"] = "data:image/png;base64," + png_b64(rect_mask(3, true));
    req["mask_blur"] = 0;
    req["inpainting_fill"] = 1;
    req["inpaint_full_res"] = false;
    auto r = c->Post("/sdapi/v1/img2img", req.dump(), kJson);
    ASSERT_TRUE(r);
    ASSERT_EQ(r->status, 200) << r->body;
    const json j = body_json(r);
    EXPECT_TRUE(j["parameters"]["mask"].is_null());
    PngText text;
    const Image out = decode_b64_png(j["images"][0], &text);
    ASSERT_EQ(out.width, 64);
    EXPECT_EQ(differing(out, init, 0, 0, 64, 16), 0);
    EXPECT_EQ(differing(out, init, 0, 40, 64, 64), 0);
    EXPECT_GT(differing(out, init, 16, 16, 48, 40), 500);
    EXPECT_THAT(param(text, "parameters"), HasSubstr("Mask blur: 0"));
    EXPECT_THAT(param(text, "parameters"), ::testing::Not(HasSubstr("Masked content")));

    // A1111's defaults: "only masked" with padding 0, fill; the alpha of a transparent PNG is the mask.
    req = img2img(init);
    req["mask"] = png_b64(rect_mask(4, true));
    req["inpainting_mask_invert"] = 1;
    req["mask_blur"] = 0;
    r = c->Post("/sdapi/v1/img2img", req.dump(), kJson);
    ASSERT_TRUE(r);
    ASSERT_EQ(r->status, 200) << r->body;
    const Image inv = decode_b64_png(body_json(r)["images"][0], &text);
    EXPECT_THAT(param(text, "parameters"),
                HasSubstr("Mask blur: 0, Mask mode: Inpaint not masked, Masked content: fill, Inpaint area: Only "
                          "masked, Masked area padding: 0"));
    EXPECT_EQ(differing(inv, init, 16, 16, 48, 40), 0);  // inverted: the rectangle's inside is kept
    EXPECT_GT(differing(inv, init, 0, 0, 64, 16), 500);

    // An empty mask string is no mask (clients send it).
    req = img2img(init);
    req["mask"] = "";
    r = c->Post("/sdapi/v1/img2img", req.dump(), kJson);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 200) << r->body;
}

TEST(ServerInpaint, A1111MaskFieldsAreChecked) {
    TestServer ts;
    auto c = ts.client();
    struct Bad {
        const char* field;
        json value;
        std::string message;
    };
    for (const Bad& b : std::vector<Bad>{
             {"mask", 5, "field 'mask' must be a base64 PNG or JPEG string, got an integer"},
             {"mask", base64_encode((const uint8_t*)"hello world", 11), "mask: not a PNG or JPEG image"},
             {"inpainting_fill", 7, "field 'inpainting_fill' must be in 0..3, got 7"},
             {"mask_blur", -1, "field 'mask_blur' must be in 0..256, got -1"},
             {"inpaint_full_res", "yes", "field 'inpaint_full_res' must be true/false or 0/1, got \"yes\""},
             {"inpainting_mask_invert", 2, "field 'inpainting_mask_invert' must be true/false or 0/1, got 2"},
             {"inpaint_full_res_padding", 100000, "field 'inpaint_full_res_padding' must be in 0..8192, got 100000"},
         }) {
        json q = img2img(pattern(64, 64));
        q["mask"] = png_b64(rect_mask(3, true));
        q[b.field] = b.value;
        auto r = c->Post("/sdapi/v1/img2img", q.dump(), kJson);
        ASSERT_TRUE(r);
        EXPECT_EQ(r->status, 400) << b.field;
        EXPECT_EQ(error_message(r), b.message) << b.field;
    }
}

httplib::MultipartFormDataItems edit_form(const Image& image, const Image* mask) {
    const auto png = encode_png(image);
    httplib::MultipartFormDataItems items = {
        {"image", std::string(png.begin(), png.end()), "image.png", "image/png"},
        {"prompt", "a red apple", "", ""},
        {"n", "1", "", ""},
        {"size", "64x64", "", ""},
        {"steps", "2", "", ""},
        {"seed", "5", "", ""},
        {"response_format", "b64_json", "", ""},
    };
    if (mask) {
        const auto m = encode_png(*mask);
        items.push_back({"mask", std::string(m.begin(), m.end()), "mask.png", "image/png"});
    }
    return items;
}

TEST(ServerInpaint, OpenAiEditsRepaintTheTransparentArea) {
    TestServer ts;
    auto c = ts.client();
    const Image init = pattern(64, 64);
    const Image mask = rect_mask(4, false);  // transparent inside the rectangle = edit
    auto r = c->Post("/v1/images/edits", edit_form(init, &mask));
    ASSERT_TRUE(r);
    ASSERT_EQ(r->status, 200) << r->body;
    const json j = body_json(r);
    ASSERT_EQ(j["data"].size(), 1u);
    EXPECT_EQ(j["size"], "64x64");
    const Image out = decode_b64_png(j["data"][0]["b64_json"]);
    // blur 4 (x2 for the overlay) reaches ~20 px beyond the rectangle; further out the image is kept
    EXPECT_EQ(differing(out, init, 0, 0, 64, 2), 0);
    EXPECT_EQ(differing(out, init, 0, 60, 64, 64), 0);
    EXPECT_GT(differing(out, init, 16, 16, 48, 40), 500);

    // Without a mask the image's own transparency is the mask; an opaque image has nothing to edit.
    Image rgba = rect_mask(4, false);
    for (size_t i = 0; i < 64 * 64; ++i)
        for (int ch = 0; ch < 3; ++ch) rgba.pixels[i * 4 + ch] = init.pixels[i * 3 + ch];
    r = c->Post("/v1/images/edits", edit_form(rgba, nullptr));
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 200) << r->body;
    r = c->Post("/v1/images/edits", edit_form(init, nullptr));
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 400);
    EXPECT_EQ(error_message(r), "field 'mask' is missing and 'image' has no fully transparent pixel: nothing to edit "
                                "(send a mask whose transparent area is the part to edit)");

    auto items = edit_form(init, &mask);
    items[2].content = "x";
    r = c->Post("/v1/images/edits", items);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 400);
    EXPECT_EQ(error_message(r), "field 'n' must be an integer, got 'x'");
    items = edit_form(init, &mask);
    items.erase(items.begin());
    r = c->Post("/v1/images/edits", items);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 400);
    EXPECT_EQ(error_message(r), "field 'image' is required (a PNG or JPEG file part of a multipart/form-data body)");
    items = edit_form(init, &mask);
    items.back().content = "not a png";
    r = c->Post("/v1/images/edits", items);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 400);
    EXPECT_EQ(error_message(r), "mask: not a PNG or JPEG image");
    r = c->Post("/v1/images/edits", json{{"prompt", "x"}}.dump(), kJson);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 400);
    EXPECT_THAT(error_message(r), HasSubstr("POST /v1/images/edits takes multipart/form-data"));
}

}  // namespace
}  // namespace nuance::server::test
