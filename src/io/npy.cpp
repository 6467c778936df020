#include "io/npy.h"

#include <cstring>
#include <regex>
#include <vector>

#include "core/error.h"
#include "io/image.h"
#include "io/weight_file.h"

namespace nuance {

Tensor parse_npy(const uint8_t* p, size_t size, const std::string& name) {
    static const uint8_t kMagic[6] = {0x93, 'N', 'U', 'M', 'P', 'Y'};
    NUANCE_CHECK(size >= 10 && std::memcmp(p, kMagic, 6) == 0, "'", name, "' is not a .npy file (bad magic)");
    const int major = p[6];
    NUANCE_CHECK(major >= 1 && major <= 3, "'", name, "': .npy version ", major, ".", (int)p[7], " is not supported");
    size_t hlen = 0, hoff = 0;
    if (major == 1) {
        hlen = (size_t)p[8] | ((size_t)p[9] << 8);
        hoff = 10;
    } else {
        NUANCE_CHECK(size >= 12, "'", name, "': truncated .npy header");
        hlen = (size_t)p[8] | ((size_t)p[9] << 8) | ((size_t)p[10] << 16) | ((size_t)p[11] << 24);
        hoff = 12;
    }
    NUANCE_CHECK(hlen <= 1 << 20 && hoff + hlen <= size, "'", name, "': .npy header length ", hlen,
                 " does not fit the file (", size, " bytes)");
    const std::string h(reinterpret_cast<const char*>(p + hoff), hlen);
    std::smatch m;
    static const std::regex descr_re(R"('descr'\s*:\s*'([^']*)')");
    static const std::regex order_re(R"('fortran_order'\s*:\s*(True|False))");
    static const std::regex shape_re(R"('shape'\s*:\s*\(([^)]*)\))");
    NUANCE_CHECK(std::regex_search(h, m, descr_re), "'", name, "': .npy header has no 'descr': ", h);
    const std::string descr = m[1].str();
    DType dt;
    size_t es;
    if (descr == "<f4") { dt = DType::F32; es = 4; }
    else if (descr == "<f8") { dt = DType::F64; es = 8; }
    else if (descr == "<f2") { dt = DType::F16; es = 2; }
    else fail(ErrorCode::Unsupported, "'", name, "': .npy dtype '", descr, "' is not supported (<f2, <f4, <f8)");
    NUANCE_CHECK(std::regex_search(h, m, order_re), "'", name, "': .npy header has no 'fortran_order': ", h);
    NUANCE_CHECK(m[1].str() == "False", "'", name, "': Fortran-order .npy arrays are not supported");
    NUANCE_CHECK(std::regex_search(h, m, shape_re), "'", name, "': .npy header has no 'shape': ", h);
    Shape shape;
    const std::string dims = m[1].str();
    static const std::regex dim_re(R"(\s*(\d{1,18})\s*(,|$))");
    uint64_t numel = 1;
    for (auto it = std::sregex_iterator(dims.begin(), dims.end(), dim_re); it != std::sregex_iterator(); ++it) {
        const int64_t d = std::stoll((*it)[1].str());
        NUANCE_CHECK(shape.size() < 8, "'", name, "': .npy arrays of more than 8 dims are not supported");
        NUANCE_CHECK(!__builtin_mul_overflow(numel, (uint64_t)d, &numel) && numel <= (uint64_t(1) << 40), "'", name,
                     "': .npy shape (", dims, ") is too large");
        shape.push_back(d);
    }
    uint64_t bytes = 0;
    NUANCE_CHECK(!__builtin_mul_overflow(numel, (uint64_t)es, &bytes) && bytes == size - hoff - hlen, "'", name,
                 "': .npy shape (", dims, ") of ", descr, " needs ", numel * es, " data bytes, the file has ",
                 size - hoff - hlen);
    return Tensor::from_bytes(p + hoff + hlen, shape, dt);
}

Tensor read_npy(const std::string& path) {
    const std::shared_ptr<Storage> s = map_file(path);
    return parse_npy(s->data(), s->size(), path);
}

void write_npy(const std::string& path, const Tensor& t_in) {
    NUANCE_CHECK(t_in.dtype() == DType::F32 || t_in.dtype() == DType::F64, "write_npy '", path,
                 "': only F32/F64 tensors, got ", t_in.str());
    const Tensor t = t_in.contiguous();
    std::string shape;  // numpy's repr: "(3, 4)", "(3,)", "()"
    for (int64_t i = 0; i < t.dim(); ++i) shape += (i ? ", " : "") + std::to_string(t.size(i));
    if (t.dim() == 1) shape += ",";
    std::string h = std::string("{'descr': '") + (t.dtype() == DType::F32 ? "<f4" : "<f8") +
                    "', 'fortran_order': False, 'shape': (" + shape + "), }";
    while ((10 + h.size() + 1) % 64 != 0) h += ' ';
    h += '\n';
    NUANCE_CHECK(h.size() < 65536, "write_npy '", path, "': header too long");
    std::vector<uint8_t> out = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, (uint8_t)(h.size() & 0xff), (uint8_t)(h.size() >> 8)};
    out.insert(out.end(), h.begin(), h.end());
    const uint8_t* d = static_cast<const uint8_t*>(t.raw());
    out.insert(out.end(), d, d + t.nbytes());
    write_bytes_atomic(path, out);
}

}  // namespace nuance
