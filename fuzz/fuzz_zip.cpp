// ZIP reader (src/io/zip_reader.cpp): end of central directory, ZIP64 records, central and local headers, stored
// and deflated entries, CRC-32. Every entry is read (with CRC check) and touched at both ends.
#include "fuzz_util.h"
#include "io/zip_reader.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    nuance::fuzz::expect_ok_or_error([&] {
        const nuance::ZipReader zip(nuance::fuzz::exact_storage(data, size), "<fuzz>");
        for (const nuance::ZipEntry& e : zip.entries()) {
            nuance::fuzz::expect_ok_or_error([&] {
                const auto st = zip.read(e, /*verify_crc=*/true);
                if (st && st->size()) {
                    const volatile uint8_t* p = st->data();
                    (void)(p[0] ^ p[st->size() - 1]);
                }
            });
        }
        if (!zip.entries().empty()) (void)zip.find(zip.entries().front().name);
    });
    return 0;
}
