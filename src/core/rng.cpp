// Rng: names, the factory and the Tensor helper. The streams live in mt19937.cpp (torch CPU) and
// philox.cpp (torch CUDA).
#include "core/rng.h"

#include <cctype>

#include "core/error.h"
#include "core/mt19937.h"
#include "core/philox.h"

namespace nuance {

RngKind parse_rng_kind(const std::string& name) {
    std::string s;
    s.reserve(name.size());
    for (char ch : name) s += static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    if (s == "cpu" || s == "torch") return RngKind::Cpu;
    if (s == "cuda" || s == "philox" || s == "gpu" || s == "nv") return RngKind::Cuda;
    fail(ErrorCode::InvalidArgument, "unknown rng '", name,
         "': expected one of cpu, cuda (aliases: torch = cpu; philox, gpu, nv = cuda)");
}

const char* rng_kind_name(RngKind k) {
    switch (k) {
        case RngKind::Cpu: return "cpu";
        case RngKind::Cuda: return "cuda";
    }
    return "unknown";
}

Tensor Rng::randn(const Shape& shape) {
    Tensor t = Tensor::empty(shape, DType::F32);
    fill_randn(t.data<float>(), t.numel());
    return t;
}

std::unique_ptr<Rng> make_rng(RngKind kind, uint64_t seed) {
    switch (kind) {
        case RngKind::Cpu: return std::make_unique<TorchCpuRng>(seed);
        case RngKind::Cuda: return std::make_unique<PhiloxRng>(seed);
    }
    fail(ErrorCode::InvalidArgument, "make_rng: invalid RngKind value ", static_cast<int>(kind));
}

}  // namespace nuance
