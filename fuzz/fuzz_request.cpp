// The HTTP server's request parsing (apps/server/request_parse.cpp): JSON body -> generation parameters for the
// A1111 (txt2img, img2img), OpenAI and native APIs, including base64 init images (apps/server/base64.cpp) and their
// PNG/JPEG size sniffing. Small limits keep each execution fast; the checks are the same.
#include <string>

#include "fuzz_util.h"
#include "request_parse.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    using namespace nuance;
    using namespace nuance::server;
    Limits lim;
    lim.max_input_pixels = 64 * 64;
    const std::string body(reinterpret_cast<const char*>(data), size);
    json j;
    try {
        j = parse_json_object(body);
    } catch (const Error&) {
        return 0;
    }
    fuzz::expect_ok_or_error([&] { (void)parse_a1111(j, /*img2img=*/false, lim); });
    fuzz::expect_ok_or_error([&] { (void)parse_a1111(j, /*img2img=*/true, lim); });
    fuzz::expect_ok_or_error([&] { (void)parse_openai(j, lim); });
    fuzz::expect_ok_or_error([&] { (void)parse_native(j, lim); });
    return 0;
}
