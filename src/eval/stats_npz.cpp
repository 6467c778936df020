#include "eval/stats_npz.h"

#include <zlib.h>

#include <cmath>
#include <cstring>

#include "core/error.h"
#include "io/atomic_file.h"
#include "io/npy.h"
#include "io/zip_reader.h"

namespace nuance {

Tensor parse_stats_member(const std::string& bytes, const std::string& name) {
    NpyLimits lim;
    lim.max_rank = 2;
    lim.max_dim = kMaxStatsDim;
    const Tensor t = parse_npy(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), name, lim);
    NUANCE_CHECK(t.dtype() == DType::F32 || t.dtype() == DType::F64, "'", name, "': dtype ", dtype_name(t.dtype()),
                 " is not supported for statistics (<f8 or <f4)");
    return t;
}

namespace {

std::vector<double> as_doubles(const Tensor& t) {
    const Tensor d = t.to(DType::F64).contiguous();
    const double* p = d.data<double>();
    return std::vector<double>(p, p + d.numel());
}

}  // namespace

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
    const Tensor mu = parse_stats_member(member("mu.npy"), path + "/mu.npy");
    const Tensor sigma = parse_stats_member(member("sigma.npy"), path + "/sigma.npy");
    NUANCE_CHECK(mu.dim() == 1 && mu.size(0) >= 1, "stats file '", path, "': mu must be a vector, got ",
                 shape_str(mu.shape()));
    s.dim = mu.size(0);
    NUANCE_CHECK(sigma.dim() == 2 && sigma.size(0) == s.dim && sigma.size(1) == s.dim, "stats file '", path,
                 "': sigma must be [", s.dim, ", ", s.dim, "] for ", s.dim, "-d mu, got ", shape_str(sigma.shape()));
    s.mu = as_doubles(mu);
    s.sigma = as_doubles(sigma);
    for (double v : s.mu) NUANCE_CHECK(std::isfinite(v), "stats file '", path, "': mu holds a non-finite value");
    for (double v : s.sigma) NUANCE_CHECK(std::isfinite(v), "stats file '", path, "': sigma holds a non-finite value");
    return s;
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
    const std::string zip =
        make_zip({{"mu.npy", npy_bytes(Tensor::from_bytes(s.mu.data(), {s.dim}, DType::F64))},
                  {"sigma.npy", npy_bytes(Tensor::from_bytes(s.sigma.data(), {s.dim, s.dim}, DType::F64))}});
    write_file_atomic(path, [&](FILE* f) { return std::fwrite(zip.data(), 1, zip.size(), f) == zip.size(); });
}

}  // namespace nuance
