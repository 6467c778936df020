#include "eval/stats_npz.h"

#include <zlib.h>

#include <cctype>
#include <cmath>
#include <cstring>

#include "core/error.h"
#include "io/atomic_file.h"
#include "io/zip_reader.h"

namespace nuance {

namespace {

std::string dict_value(const std::string& header, const std::string& key, const std::string& what) {
    const size_t k = header.find("'" + key + "'");
    NUANCE_CHECK(k != std::string::npos, what, ": the NPY header has no '", key, "': ", header);
    size_t v = header.find(':', k);
    NUANCE_CHECK(v != std::string::npos, what, ": bad NPY header: ", header);
    ++v;
    while (v < header.size() && header[v] == ' ') ++v;
    size_t end = v;
    if (v < header.size() && header[v] == '(') {
        end = header.find(')', v);
        NUANCE_CHECK(end != std::string::npos, what, ": bad NPY shape in header: ", header);
        return header.substr(v, end - v + 1);
    }
    if (v < header.size() && header[v] == '\'') {
        end = header.find('\'', v + 1);
        NUANCE_CHECK(end != std::string::npos, what, ": bad NPY header: ", header);
        return header.substr(v + 1, end - v - 1);
    }
    while (end < header.size() && header[end] != ',' && header[end] != '}') ++end;
    return header.substr(v, end - v);
}

}  // namespace

std::vector<double> parse_npy(const std::string& b, const std::string& what, std::vector<int64_t>& shape) {
    NUANCE_CHECK(b.size() >= 10 && b.compare(0, 6, "\x93NUMPY") == 0, what, " is not an NPY array (bad magic)");
    const uint8_t major = (uint8_t)b[6];
    NUANCE_CHECK(major >= 1 && major <= 3, what, ": NPY format version ", (int)major, " is not supported (1-3)");
    size_t hlen = 0, start = 0;
    if (major == 1) {
        hlen = (uint8_t)b[8] | ((size_t)(uint8_t)b[9] << 8);
        start = 10;
    } else {
        NUANCE_CHECK(b.size() >= 12, what, ": truncated NPY header");
        hlen = (size_t)(uint8_t)b[8] | ((size_t)(uint8_t)b[9] << 8) | ((size_t)(uint8_t)b[10] << 16) |
               ((size_t)(uint8_t)b[11] << 24);
        start = 12;
    }
    NUANCE_CHECK(hlen <= 65536 && start + hlen <= b.size(), what, ": NPY header of ", hlen, " bytes runs past the ",
                 b.size(), "-byte member");
    const std::string header = b.substr(start, hlen);
    const std::string descr = dict_value(header, "descr", what);
    NUANCE_CHECK(descr == "<f8" || descr == "<f4", what, ": dtype '", descr, "' is not supported (<f8 or <f4)");
    const std::string order = dict_value(header, "fortran_order", what);
    NUANCE_CHECK(order == "False" || order == "True", what, ": bad fortran_order '", order, "'");
    const std::string sh = dict_value(header, "shape", what);
    shape.clear();
    {
        size_t i = 1;
        while (i < sh.size()) {
            while (i < sh.size() && (sh[i] == ' ' || sh[i] == ',')) ++i;
            if (i >= sh.size() || sh[i] == ')') break;
            NUANCE_CHECK(std::isdigit((unsigned char)sh[i]), what, ": bad NPY shape ", sh);
            int64_t v = 0;
            while (i < sh.size() && std::isdigit((unsigned char)sh[i])) {
                NUANCE_CHECK(v <= kMaxStatsDim, what, ": NPY dimension in ", sh, " exceeds ", kMaxStatsDim);
                v = v * 10 + (sh[i] - '0');
                ++i;
            }
            NUANCE_CHECK(v <= kMaxStatsDim, what, ": NPY dimension in ", sh, " exceeds ", kMaxStatsDim);
            shape.push_back(v);
            NUANCE_CHECK(shape.size() <= 2, what, ": NPY shape ", sh, " has more than 2 dimensions");
        }
    }
    uint64_t n = 1;
    for (int64_t d : shape) n *= (uint64_t)d;  // <= 16384^2: no overflow
    const size_t item = descr == "<f8" ? 8 : 4;
    const size_t data = start + hlen;
    NUANCE_CHECK(b.size() - data == n * item, what, ": NPY data is ", b.size() - data, " bytes, shape ", sh, " of ",
                 descr, " needs ", n * item);
    std::vector<double> out((size_t)n);
    for (size_t i = 0; i < n; ++i) {
        if (item == 8) {
            std::memcpy(&out[i], b.data() + data + i * 8, 8);
        } else {
            float f;
            std::memcpy(&f, b.data() + data + i * 4, 4);
            out[i] = f;
        }
    }
    if (order == "True" && shape.size() == 2) {  // column-major -> row-major
        std::vector<double> t(out.size());
        const int64_t r = shape[0], c = shape[1];
        for (int64_t i = 0; i < r; ++i)
            for (int64_t j = 0; j < c; ++j) t[(size_t)(i * c + j)] = out[(size_t)(j * r + i)];
        out.swap(t);
    }
    return out;
}

FidStats read_fid_stats(const std::string& path) {
    const ZipReader z = ZipReader::open(path);
    FidStats s;
    auto member = [&](const std::string& name) -> std::string {
        const ZipEntry* e = z.find(name);
        NUANCE_CHECK(e, "stats file '", path, "' has no ", name, " (a pytorch-fid .npz holds mu and sigma)");
        NUANCE_CHECK(e->uncompressed_size <= (uint64_t)kMaxStatsDim * kMaxStatsDim * 8 + 65536, "stats file '", path,
                     "': member ", name, " of ", e->uncompressed_size, " bytes is too large");
        const auto st = z.read(*e, true);
        return std::string((const char*)st->data(), (size_t)e->uncompressed_size);
    };
    std::vector<int64_t> ms, ss;
    s.mu = parse_npy(member("mu.npy"), "stats file '" + path + "' mu", ms);
    s.sigma = parse_npy(member("sigma.npy"), "stats file '" + path + "' sigma", ss);
    NUANCE_CHECK(ms.size() == 1 && ms[0] >= 1, "stats file '", path, "': mu must be a vector, got ", ms.size(),
                 " dimensions");
    s.dim = ms[0];
    NUANCE_CHECK(ss.size() == 2 && ss[0] == s.dim && ss[1] == s.dim, "stats file '", path, "': sigma must be [",
                 s.dim, ", ", s.dim, "] for ", s.dim, "-d mu");
    for (double v : s.mu) NUANCE_CHECK(std::isfinite(v), "stats file '", path, "': mu holds a non-finite value");
    for (double v : s.sigma) NUANCE_CHECK(std::isfinite(v), "stats file '", path, "': sigma holds a non-finite value");
    return s;
}

std::string make_npy_f8(const std::vector<double>& values, const std::vector<int64_t>& shape) {
    std::string sh = "(";
    for (size_t i = 0; i < shape.size(); ++i) sh += std::to_string(shape[i]) + (shape.size() == 1 ? "," : i + 1 < shape.size() ? ", " : "");
    sh += ")";
    std::string header = "{'descr': '<f8', 'fortran_order': False, 'shape': " + sh + ", }";
    const size_t total = 10 + header.size() + 1;
    header += std::string((64 - total % 64) % 64, ' ') + "\n";
    std::string out = "\x93NUMPY";
    out += (char)1;
    out += (char)0;
    out += (char)(header.size() & 0xff);
    out += (char)(header.size() >> 8);
    out += header;
    const size_t off = out.size();
    out.resize(off + values.size() * 8);
    std::memcpy(&out[off], values.data(), values.size() * 8);
    return out;
}

namespace {

void put16(std::string& s, uint16_t v) {
    s += (char)(v & 0xff);
    s += (char)(v >> 8);
}
void put32(std::string& s, uint32_t v) {
    put16(s, (uint16_t)(v & 0xffff));
    put16(s, (uint16_t)(v >> 16));
}

// A zip of stored members (no ZIP64: members < 4 GiB, which kMaxStatsDim guarantees).
std::string make_zip(const std::vector<std::pair<std::string, std::string>>& members) {
    std::string out, central;
    for (const auto& [name, data] : members) {
        NUANCE_CHECK(data.size() < 0xffffffffu, "stats: member ", name, " too large for a plain zip");
        const uint32_t crc = (uint32_t)crc32(0L, (const Bytef*)data.data(), (uInt)data.size());
        const uint32_t offset = (uint32_t)out.size();
        put32(out, 0x04034b50);
        put16(out, 20);  // version needed
        put16(out, 0);   // flags
        put16(out, 0);   // stored
        put16(out, 0);   // time
        put16(out, 0x21);  // date 1980-01-01
        put32(out, crc);
        put32(out, (uint32_t)data.size());
        put32(out, (uint32_t)data.size());
        put16(out, (uint16_t)name.size());
        put16(out, 0);
        out += name;
        out += data;
        put32(central, 0x02014b50);
        put16(central, 20);
        put16(central, 20);
        put16(central, 0);
        put16(central, 0);
        put16(central, 0);
        put16(central, 0x21);
        put32(central, crc);
        put32(central, (uint32_t)data.size());
        put32(central, (uint32_t)data.size());
        put16(central, (uint16_t)name.size());
        put16(central, 0);
        put16(central, 0);
        put16(central, 0);
        put16(central, 0);
        put32(central, 0);
        put32(central, offset);
        central += name;
    }
    NUANCE_CHECK(out.size() + central.size() < 0xffffffffu, "stats: archive too large for a plain zip");
    const uint32_t cd_offset = (uint32_t)out.size();
    out += central;
    put32(out, 0x06054b50);
    put16(out, 0);
    put16(out, 0);
    put16(out, (uint16_t)members.size());
    put16(out, (uint16_t)members.size());
    put32(out, (uint32_t)central.size());
    put32(out, cd_offset);
    put16(out, 0);
    return out;
}

}  // namespace

void write_fid_stats(const std::string& path, const FidStats& s) {
    NUANCE_CHECK(s.dim >= 1 && s.dim <= kMaxStatsDim && (int64_t)s.mu.size() == s.dim &&
                     s.sigma.size() == (size_t)s.dim * (size_t)s.dim,
                 "stats: mu of ", s.mu.size(), " and sigma of ", s.sigma.size(), " values for dimension ", s.dim);
    const std::string zip = make_zip({{"mu.npy", make_npy_f8(s.mu, {s.dim})},
                                      {"sigma.npy", make_npy_f8(s.sigma, {s.dim, s.dim})}});
    write_file_atomic(path, [&](FILE* f) { return std::fwrite(zip.data(), 1, zip.size(), f) == zip.size(); });
}

}  // namespace nuance
