// PNG decoding (src/io/image.cpp, libpng) to RGB and RGBA, and the text-chunk reader (src/io/png_meta.cpp).
#include "fuzz_util.h"
#include "io/image.h"
#include "io/png_meta.h"

// As the server does for request images (Limits::max_input_pixels): the decoder refuses bigger headers before
// allocating. Without a limit a 200-byte file may legitimately decode to 2^28 pixels, seconds per input under ASan.
constexpr uint64_t kMaxPixels = 1u << 20;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    using namespace nuance;
    fuzz::expect_ok_or_error([&] { (void)parse_png_text(data, size, "<fuzz>"); });
    for (int channels : {3, 4}) {
        fuzz::expect_ok_or_error([&] {
            const Image im = decode_image(data, size, channels, "<fuzz>", kMaxPixels);
            // A decoder that returns fewer bytes than it claims is a finding, not an error.
            if (im.pixels.size() != (size_t)im.width * im.height * im.channels) __builtin_trap();
        });
    }
    return 0;
}
