// The safe unpickler (src/io/pickle.cpp) alone, with the checkpoint allowlist: opcodes, memo, marks, nesting.
#include "fuzz_util.h"
#include "io/ckpt.h"
#include "io/pickle.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    static const auto& allowed = nuance::ckpt_allowed_globals();
    nuance::fuzz::expect_ok_or_error([&] {
        // Exact-size copy: ASan reports any read past the pickle's end.
        std::unique_ptr<uint8_t[]> buf(new uint8_t[size ? size : 1]);
        if (size) std::memcpy(buf.get(), data, size);
        const nuance::Pickle p = nuance::unpickle(buf.get(), size, allowed, "<fuzz>");
        (void)p;
    });
    return 0;
}
