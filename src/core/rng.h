// Noise streams. Every random draw in nuance comes from an explicit Rng& (design.md §2).
// TorchCpuRng reproduces torch.randn on CPU (mt19937; torch's < 16 and >= 16 element fills) bit-exactly;
// PhiloxRng reproduces torch.randn on CUDA (Philox4x32-10, A1111's default "GPU" noise) to 1e-6.
#pragma once
#include <cstdint>
#include <memory>
#include <string>

#include "core/tensor.h"

namespace nuance {

enum class RngKind { Cpu, Cuda };
RngKind parse_rng_kind(const std::string& name);  // "cpu" | "cuda" (aliases: "torch", "philox", "gpu")
const char* rng_kind_name(RngKind k);

class Rng {
public:
    virtual ~Rng() = default;
    // Fills n standard-normal floats exactly as one torch.randn(shape) call with numel n would.
    virtual void fill_randn(float* out, int64_t n) = 0;
    Tensor randn(const Shape& shape);  // F32, contiguous
};

std::unique_ptr<Rng> make_rng(RngKind kind, uint64_t seed);

}  // namespace nuance
