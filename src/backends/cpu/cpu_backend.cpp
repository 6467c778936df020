#include "backends/cpu/cpu_backend.h"

#include "backends/cpu/dnnl_cache.h"
#include "backends/cpu/dnnl_context.h"
#include "backends/cpu/quantized_matmul.h"

namespace nuance {

std::shared_ptr<Storage> CpuBackend::allocate(size_t bytes, Device device) {
    NUANCE_CHECK_CODE(device.is_cpu(), Internal, "cpu backend: allocation for device ", device.str());
    return Storage::allocate(bytes);
}

void CpuBackend::copy(const Tensor& dst, const Tensor& src) {
    NUANCE_CHECK_CODE(dst.device().is_cpu() && src.device().is_cpu(), Internal, "cpu backend: copy from ",
                      src.device().str(), " to ", dst.device().str());
    Tensor d = dst;
    d.copy_(src);
}

Precision CpuBackend::default_precision() const { return cpu::default_precision(); }
void CpuBackend::clear_packed_weights() {
    cpu::clear_packed_weights();
    cpu::clear_int8_pack_cache();
}
size_t CpuBackend::packed_weights_bytes() const { return cpu::packed_weights_bytes() + cpu::int8_pack_cache_bytes(); }
size_t CpuBackend::packed_weights_over_budget_bytes() const { return cpu::packed_weights_over_budget_bytes(); }
size_t CpuBackend::prune_packed_weights() { return cpu::prune_packed_weights() + cpu::prune_int8_pack_cache(); }
size_t CpuBackend::release_packed_weight(const Tensor& w) {
    return cpu::release_packed_weight(w) + cpu::release_int8_pack(w);
}

}  // namespace nuance
