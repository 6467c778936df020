// Fuzz builds only: the parsers' library has no backend registry (backends/backend.cpp links every kernel), so a
// QuantizedTensor dequantizes on the host directly, as the CPU backend does.
#include "backends/cpu/ggml_quants.h"

namespace nuance {

Tensor QuantizedTensor::dequantize() const { return dequantize_on_host(type, packed, shape); }

}  // namespace nuance
