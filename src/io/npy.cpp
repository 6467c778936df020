#include "io/npy.h"

#include <cctype>
#include <cstring>
#include <vector>

#include "core/error.h"
#include "io/image.h"
#include "io/weight_file.h"

namespace nuance {

namespace {

constexpr size_t kMaxHeader = 1 << 20;

// The value of 'key' in numpy's header dict: a quoted string (without quotes), a tuple "(...)" or a bare word.
std::string dict_value(const std::string& h, const std::string& key, const std::string& name) {
    const size_t k = h.find("'" + key + "'");
    NUANCE_CHECK(k != std::string::npos, "'", name, "': .npy header has no '", key, "': ", h);
    size_t v = h.find(':', k + key.size() + 2);
    NUANCE_CHECK(v != std::string::npos, "'", name, "': bad .npy header: ", h);
    ++v;
    while (v < h.size() && h[v] == ' ') ++v;
    size_t end = v;
    if (v < h.size() && h[v] == '(') {
        end = h.find(')', v);
        NUANCE_CHECK(end != std::string::npos, "'", name, "': bad .npy shape in header: ", h);
        return h.substr(v, end - v + 1);
    }
    if (v < h.size() && h[v] == '\'') {
        end = h.find('\'', v + 1);
        NUANCE_CHECK(end != std::string::npos, "'", name, "': bad .npy header: ", h);
        return h.substr(v + 1, end - v - 1);
    }
    while (end < h.size() && h[end] != ',' && h[end] != '}' && h[end] != ' ') ++end;
    return h.substr(v, end - v);
}

}  // namespace

Tensor parse_npy(const uint8_t* p, size_t size, const std::string& name, const NpyLimits& lim) {
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
    NUANCE_CHECK(hlen <= kMaxHeader && hoff + hlen <= size, "'", name, "': .npy header length ", hlen,
                 " does not fit the file (", size, " bytes)");
    const std::string h(reinterpret_cast<const char*>(p + hoff), hlen);
    const std::string descr = dict_value(h, "descr", name);
    DType dt;
    size_t es;
    if (descr == "<f4") { dt = DType::F32; es = 4; }
    else if (descr == "<f8") { dt = DType::F64; es = 8; }
    else if (descr == "<f2") { dt = DType::F16; es = 2; }
    else fail(ErrorCode::Unsupported, "'", name, "': .npy dtype '", descr, "' is not supported (<f2, <f4, <f8)");
    const std::string order = dict_value(h, "fortran_order", name);
    NUANCE_CHECK(order == "False" || order == "True", "'", name, "': bad .npy fortran_order '", order, "'");
    const std::string dims = dict_value(h, "shape", name);
    NUANCE_CHECK(dims.size() >= 2 && dims.front() == '(' && dims.back() == ')', "'", name, "': bad .npy shape ", dims);
    Shape shape;
    uint64_t numel = 1;
    for (size_t i = 1; i + 1 < dims.size();) {
        while (i + 1 < dims.size() && (dims[i] == ' ' || dims[i] == ',')) ++i;
        if (i + 1 >= dims.size()) break;
        NUANCE_CHECK(std::isdigit((unsigned char)dims[i]), "'", name, "': bad .npy shape ", dims);
        uint64_t d = 0;
        int digits = 0;
        while (i + 1 < dims.size() && std::isdigit((unsigned char)dims[i])) {
            NUANCE_CHECK(++digits <= 18, "'", name, "': .npy shape ", dims, " is too large");
            d = d * 10 + (uint64_t)(dims[i++] - '0');
        }
        NUANCE_CHECK((int)shape.size() < lim.max_rank, "'", name, "': .npy arrays of more than ", lim.max_rank,
                     " dimensions are not supported here (shape ", dims, ")");
        NUANCE_CHECK(d <= (uint64_t)lim.max_dim, "'", name, "': .npy dimension ", d, " in shape ", dims, " exceeds ",
                     lim.max_dim);
        NUANCE_CHECK(!__builtin_mul_overflow(numel, d, &numel) && numel <= lim.max_elements, "'", name,
                     "': .npy shape ", dims, " is too large");
        shape.push_back((int64_t)d);
    }
    uint64_t bytes = 0;
    NUANCE_CHECK(!__builtin_mul_overflow(numel, (uint64_t)es, &bytes) && bytes == size - hoff - hlen, "'", name,
                 "': .npy shape ", dims, " of ", descr, " needs ", numel * es, " data bytes, the file has ",
                 size - hoff - hlen);
    const uint8_t* data = p + hoff + hlen;
    if (order == "False" || shape.size() < 2) return Tensor::from_bytes(data, shape, dt);
    // Fortran order: element (i0, ..., ik) sits at i0 + d0 * (i1 + d1 * (...)); copy into C order.
    std::vector<uint8_t> c((size_t)bytes);
    const size_t r = shape.size();
    std::vector<int64_t> idx(r, 0), fstride(r, 1);
    for (size_t a = 1; a < r; ++a) fstride[a] = fstride[a - 1] * shape[a - 1];
    for (uint64_t lin = 0; lin < numel; ++lin) {
        int64_t off = 0;
        for (size_t a = 0; a < r; ++a) off += idx[a] * fstride[a];
        std::memcpy(c.data() + lin * es, data + (size_t)off * es, es);
        for (size_t a = r; a-- > 0;) {  // next C-order index
            if (++idx[a] < shape[a]) break;
            idx[a] = 0;
        }
    }
    return Tensor::from_bytes(c.data(), shape, dt);
}

Tensor read_npy(const std::string& path, const NpyLimits& limits) {
    const std::shared_ptr<Storage> s = map_file(path);
    return parse_npy(s->data(), s->size(), path, limits);
}

std::string npy_bytes(const Tensor& t_in) {
    NUANCE_CHECK(t_in.defined() && (t_in.dtype() == DType::F32 || t_in.dtype() == DType::F64),
                 "npy: only F32/F64 tensors can be written, got ", t_in.defined() ? t_in.str() : "an undefined tensor");
    const Tensor t = t_in.contiguous();
    std::string shape;  // numpy's repr: "(3, 4)", "(3,)", "()"
    for (int64_t i = 0; i < t.dim(); ++i) shape += (i ? ", " : "") + std::to_string(t.size(i));
    if (t.dim() == 1) shape += ",";
    std::string h = std::string("{'descr': '") + (t.dtype() == DType::F32 ? "<f4" : "<f8") +
                    "', 'fortran_order': False, 'shape': (" + shape + "), }";
    while ((10 + h.size() + 1) % 64 != 0) h += ' ';
    h += '\n';
    NUANCE_CHECK(h.size() < 65536, "npy: header too long for format 1.0 (", h.size(), " bytes)");
    std::string out = {'\x93', 'N', 'U', 'M', 'P', 'Y', 1, 0, (char)(h.size() & 0xff), (char)(h.size() >> 8)};
    out += h;
    out.append(static_cast<const char*>(t.raw()), t.nbytes());
    return out;
}

void write_npy(const std::string& path, const Tensor& t) {
    const std::string b = npy_bytes(t);
    write_bytes_atomic(path, std::vector<uint8_t>(b.begin(), b.end()));
}

}  // namespace nuance
