// ZIP reader: end-of-central-directory → (ZIP64 locator → ZIP64 EOCD) → central directory → local headers.
// Layout reference: PKWARE APPNOTE.TXT 6.3 (sections 4.3.6 - 4.3.16, 4.5.3).
#include "io/zip_reader.h"

#include <zlib.h>

#include <algorithm>
#include <cstring>

#include "io/weight_file.h"

namespace nuance {

namespace {

constexpr uint32_t kLocalSig = 0x04034b50;
constexpr uint32_t kCentralSig = 0x02014b50;
constexpr uint32_t kEocdSig = 0x06054b50;
constexpr uint32_t kZip64EocdSig = 0x06064b50;
constexpr uint32_t kZip64LocatorSig = 0x07064b50;
constexpr size_t kEocdSize = 22, kZip64LocatorSize = 20, kZip64EocdSize = 56, kCentralSize = 46, kLocalSize = 30;
// DEFLATE cannot expand data by more than ~1032:1; a larger claimed size is a lie (or a bomb).
constexpr uint64_t kMaxDeflateRatio = 1032;

// Little-endian reads from a bounds-checked byte range.
struct Bytes {
    const uint8_t* p;
    uint64_t n;
    const std::string& name;

    void need(uint64_t off, uint64_t len, const char* what) const {
        if (off > n || len > n - off)
            fail(ErrorCode::InvalidArgument, "zip '", name, "': ", what, " at offset ", off, " (+", len,
                 " bytes) is outside the file (", n, " bytes); truncated or corrupt archive");
    }
    uint16_t u16(uint64_t off) const { need(off, 2, "field"); return (uint16_t)(p[off] | p[off + 1] << 8); }
    uint32_t u32(uint64_t off) const {
        need(off, 4, "field");
        return (uint32_t)p[off] | (uint32_t)p[off + 1] << 8 | (uint32_t)p[off + 2] << 16 | (uint32_t)p[off + 3] << 24;
    }
    uint64_t u64(uint64_t off) const { return (uint64_t)u32(off) | (uint64_t)u32(off + 4) << 32; }
};

}  // namespace

ZipReader ZipReader::open(const std::string& path) { return ZipReader(map_file(path), path); }

ZipReader::ZipReader(std::shared_ptr<Storage> file, std::string name) : file_(std::move(file)), name_(std::move(name)) {
    NUANCE_CHECK(file_ != nullptr, "zip '", name_, "': no data");
    parse();
}

void ZipReader::parse() {
    const Bytes b{file_->data(), file_->size(), name_};
    NUANCE_CHECK(b.n >= kEocdSize, "zip '", name_, "': file is too small to be a zip archive (", b.n, " bytes)");

    // The EOCD record is at the end, followed only by a comment of at most 65535 bytes: scan backwards.
    uint64_t eocd = UINT64_MAX;
    const uint64_t lowest = b.n >= kEocdSize + 65535 ? b.n - kEocdSize - 65535 : 0;
    for (uint64_t off = b.n - kEocdSize + 1; off-- > lowest;) {
        if (b.u32(off) == kEocdSig && off + kEocdSize + b.u16(off + 20) == b.n) { eocd = off; break; }
    }
    if (eocd == UINT64_MAX) {  // tolerate trailing junk after the comment: accept any signature match
        for (uint64_t off = b.n - kEocdSize + 1; off-- > lowest;)
            if (b.u32(off) == kEocdSig) { eocd = off; break; }
    }
    NUANCE_CHECK(eocd != UINT64_MAX, "zip '", name_,
                 "': end of central directory not found (not a zip archive, or truncated)");

    uint64_t disk = b.u16(eocd + 4), cd_disk = b.u16(eocd + 6);
    uint64_t count = b.u16(eocd + 10);
    uint64_t cd_size = b.u32(eocd + 12), cd_offset = b.u32(eocd + 16);

    const bool maybe64 = count == 0xFFFF || cd_size == 0xFFFFFFFF || cd_offset == 0xFFFFFFFF;
    if (eocd >= kZip64LocatorSize && b.u32(eocd - kZip64LocatorSize) == kZip64LocatorSig) {
        const uint64_t loc = eocd - kZip64LocatorSize;
        const uint64_t z64 = b.u64(loc + 8);
        b.need(z64, kZip64EocdSize, "ZIP64 end of central directory");
        NUANCE_CHECK(b.u32(z64) == kZip64EocdSig, "zip '", name_, "': bad ZIP64 end of central directory signature at offset ",
                     z64);
        const uint64_t count64 = b.u64(z64 + 32), cd_size64 = b.u64(z64 + 40), cd_offset64 = b.u64(z64 + 48);
        // Fields not saturated in the classic record must agree with the ZIP64 ones (torch writes both).
        NUANCE_CHECK((count == 0xFFFF || count == count64) && (cd_size == 0xFFFFFFFF || cd_size == cd_size64) &&
                         (cd_offset == 0xFFFFFFFF || cd_offset == cd_offset64),
                     "zip '", name_, "': end of central directory records disagree (entries ", count, " vs ", count64,
                     ", central directory offset ", cd_offset, " vs ", cd_offset64, ")");
        disk = b.u32(z64 + 16);
        cd_disk = b.u32(z64 + 20);
        count = count64;
        cd_size = cd_size64;
        cd_offset = cd_offset64;
    } else {
        NUANCE_CHECK(!maybe64, "zip '", name_, "': ZIP64 sizes announced but the ZIP64 locator is missing");
    }
    NUANCE_CHECK_CODE(disk == 0 && cd_disk == 0, Unsupported, "zip '", name_, "': multi-volume archives are not supported");
    b.need(cd_offset, cd_size, "central directory");
    NUANCE_CHECK(count <= cd_size / kCentralSize, "zip '", name_, "': central directory claims ", count,
                 " entries but is only ", cd_size, " bytes");

    entries_.reserve((size_t)count);
    uint64_t off = cd_offset;
    const uint64_t cd_end = cd_offset + cd_size;
    for (uint64_t i = 0; i < count; ++i) {
        NUANCE_CHECK(off <= cd_end && cd_end - off >= kCentralSize, "zip '", name_, "': central directory entry ", i,
                     " runs past the directory end");
        NUANCE_CHECK(b.u32(off) == kCentralSig, "zip '", name_, "': bad central directory signature for entry ", i,
                     " at offset ", off, " (bad central directory offset?)");
        ZipEntry e;
        e.flags = b.u16(off + 8);
        e.method = b.u16(off + 10);
        e.crc32 = b.u32(off + 16);
        e.compressed_size = b.u32(off + 20);
        e.uncompressed_size = b.u32(off + 24);
        const uint64_t name_len = b.u16(off + 28), extra_len = b.u16(off + 30), comment_len = b.u16(off + 32);
        const uint32_t disk_start = b.u16(off + 34);
        e.local_header_offset = b.u32(off + 42);
        const uint64_t var = name_len + extra_len + comment_len;
        NUANCE_CHECK(cd_end - off - kCentralSize >= var, "zip '", name_, "': central directory entry ", i,
                     " runs past the directory end");
        e.name.assign(reinterpret_cast<const char*>(b.p + off + kCentralSize), name_len);

        // ZIP64 extended information: only the fields whose 32-bit value is saturated are present, in this order.
        uint64_t x = off + kCentralSize + name_len;
        const uint64_t x_end = x + extra_len;
        while (x + 4 <= x_end) {
            const uint16_t id = b.u16(x), len = b.u16(x + 2);
            NUANCE_CHECK(x + 4 + len <= x_end, "zip '", name_, "': extra field of entry '", e.name, "' is truncated");
            if (id == 0x0001) {
                uint64_t f = x + 4;
                auto take = [&](uint64_t& v) {
                    NUANCE_CHECK(f + 8 <= x + 4 + len, "zip '", name_, "': ZIP64 extra field of entry '", e.name,
                                 "' is too short");
                    v = b.u64(f);
                    f += 8;
                };
                if (e.uncompressed_size == 0xFFFFFFFF) take(e.uncompressed_size);
                if (e.compressed_size == 0xFFFFFFFF) take(e.compressed_size);
                if (e.local_header_offset == 0xFFFFFFFF) take(e.local_header_offset);
            }
            x += 4 + len;
        }
        NUANCE_CHECK_CODE(disk_start == 0 || disk_start == 0xFFFF, Unsupported, "zip '", name_,
                          "': multi-volume archives are not supported");
        NUANCE_CHECK_CODE(!(e.flags & 1), Unsupported, "zip '", name_, "': entry '", e.name, "' is encrypted");
        NUANCE_CHECK_CODE(e.method == 0 || e.method == 8, Unsupported, "zip '", name_, "': entry '", e.name,
                          "' uses compression method ", e.method, " (only stored and deflate are supported)");
        NUANCE_CHECK(e.method != 0 || e.compressed_size == e.uncompressed_size, "zip '", name_, "': stored entry '",
                     e.name, "' has compressed size ", e.compressed_size, " != uncompressed size ", e.uncompressed_size);
        const auto [it, inserted] = index_.emplace(e.name, entries_.size());
        NUANCE_CHECK(inserted, "zip '", name_, "': duplicate entry '", e.name, "'");
        entries_.push_back(std::move(e));
        off += kCentralSize + var;
    }
}

const ZipEntry* ZipReader::find(const std::string& entry_name) const {
    const auto it = index_.find(entry_name);
    return it == index_.end() ? nullptr : &entries_[it->second];
}

uint64_t ZipReader::data_offset(const ZipEntry& e) const {
    const Bytes b{file_->data(), file_->size(), name_};
    b.need(e.local_header_offset, kLocalSize, "local header");
    NUANCE_CHECK(b.u32(e.local_header_offset) == kLocalSig, "zip '", name_, "': bad local header signature for entry '",
                 e.name, "' at offset ", e.local_header_offset);
    const uint64_t start = e.local_header_offset + kLocalSize + b.u16(e.local_header_offset + 26) +
                           b.u16(e.local_header_offset + 28);
    b.need(start, e.compressed_size, "data of entry");
    return start;
}

std::shared_ptr<Storage> ZipReader::read(const ZipEntry& e, bool verify_crc) const {
    const uint64_t start = data_offset(e);
    const uint8_t* src = file_->data() + start;
    if (e.method == 0) {
        if (verify_crc) {
            uLong crc = crc32_z(0L, Z_NULL, 0);
            crc = crc32_z(crc, src, (z_size_t)e.compressed_size);
            NUANCE_CHECK((uint32_t)crc == e.crc32, "zip '", name_, "': CRC mismatch in entry '", e.name, "'");
        }
        return Storage::wrap(const_cast<uint8_t*>(src), (size_t)e.compressed_size, file_);
    }
    NUANCE_CHECK(e.uncompressed_size <= e.compressed_size * kMaxDeflateRatio + 1024, "zip '", name_, "': entry '",
                 e.name, "' claims ", e.uncompressed_size, " bytes from ", e.compressed_size,
                 " compressed bytes (impossible for deflate)");
    auto out = Storage::allocate((size_t)e.uncompressed_size);
    z_stream zs{};
    NUANCE_CHECK_CODE(inflateInit2(&zs, -MAX_WBITS) == Z_OK, OutOfMemory, "zip '", name_, "': inflateInit failed");
    uint64_t in_left = e.compressed_size, out_left = e.uncompressed_size;
    const uint8_t* in = src;
    uint8_t* dst = out->data();
    int rc = Z_OK;
    while (rc == Z_OK) {  // zlib counts in uInt: feed at most 1 GiB per call
        const uInt in_chunk = (uInt)std::min<uint64_t>(in_left, 1u << 30);
        const uInt out_chunk = (uInt)std::min<uint64_t>(out_left, 1u << 30);
        zs.next_in = const_cast<Bytef*>(in);
        zs.avail_in = in_chunk;
        zs.next_out = dst;
        zs.avail_out = out_chunk;
        rc = inflate(&zs, Z_NO_FLUSH);
        in += in_chunk - zs.avail_in;
        in_left -= in_chunk - zs.avail_in;
        dst += out_chunk - zs.avail_out;
        out_left -= out_chunk - zs.avail_out;
        if (rc == Z_BUF_ERROR && (in_left > 0 && out_left > 0)) rc = Z_OK;  // more to feed
        if (rc == Z_OK && (in_chunk == zs.avail_in) && (out_chunk == zs.avail_out)) rc = Z_BUF_ERROR;  // no progress
    }
    inflateEnd(&zs);
    NUANCE_CHECK(rc == Z_STREAM_END && out_left == 0, "zip '", name_, "': entry '", e.name,
                 "' is corrupt (inflate: ", zs.msg ? zs.msg : (rc == Z_STREAM_END ? "size mismatch" : "truncated data"),
                 ")");
    uLong crc = crc32_z(0L, Z_NULL, 0);
    crc = crc32_z(crc, out->data(), (z_size_t)e.uncompressed_size);
    NUANCE_CHECK((uint32_t)crc == e.crc32, "zip '", name_, "': CRC mismatch in entry '", e.name, "'");
    return out;
}

std::shared_ptr<Storage> ZipReader::read(const std::string& entry_name, bool verify_crc) const {
    const ZipEntry* e = find(entry_name);
    NUANCE_CHECK_CODE(e != nullptr, NotFound, "zip '", name_, "': no entry '", entry_name, "'");
    return read(*e, verify_crc);
}

std::string ZipReader::read_string(const std::string& entry_name) const {
    const auto s = read(entry_name, /*verify_crc=*/true);
    return std::string(reinterpret_cast<const char*>(s->data()), s->size());
}

}  // namespace nuance
