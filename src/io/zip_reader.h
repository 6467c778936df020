// Read-only ZIP archive over an mmap'd file (the container of torch .ckpt/.pt checkpoints).
// STORED entries come back as zero-copy windows into the mapping (torch writes them uncompressed
// and 64-byte aligned); DEFLATE entries are inflated with zlib into owned memory. ZIP64 is
// supported (torch writes it for big files). Every offset and length is checked against the file.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace nuance {

struct ZipEntry {
    std::string name;
    uint16_t method = 0;           // 0 = stored, 8 = deflate
    uint16_t flags = 0;
    uint32_t crc32 = 0;
    uint64_t compressed_size = 0;
    uint64_t uncompressed_size = 0;
    uint64_t local_header_offset = 0;
};

class ZipReader {
public:
    // Maps `path` and parses its central directory.
    static ZipReader open(const std::string& path);
    // Parses an archive already in memory; `name` is used in error messages.
    ZipReader(std::shared_ptr<Storage> file, std::string name);

    const std::string& name() const { return name_; }
    const std::vector<ZipEntry>& entries() const { return entries_; }
    const ZipEntry* find(const std::string& entry_name) const;  // nullptr when absent

    // The uncompressed bytes of an entry: a window into the mapping (STORED) or owned memory (DEFLATE).
    // CRC-32 is verified for inflated entries, and for stored ones when `verify_crc` is set.
    std::shared_ptr<Storage> read(const ZipEntry& e, bool verify_crc = false) const;
    std::shared_ptr<Storage> read(const std::string& entry_name, bool verify_crc = false) const;
    // Small entries as a string (always CRC-checked).
    std::string read_string(const std::string& entry_name) const;

private:
    void parse();
    uint64_t data_offset(const ZipEntry& e) const;

    std::shared_ptr<Storage> file_;
    std::string name_;
    std::vector<ZipEntry> entries_;
    std::map<std::string, size_t> index_;
};

}  // namespace nuance
