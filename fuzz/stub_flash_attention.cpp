// Fuzz builds only: clang does not compile flash_attention.cpp's AVX-512 lambdas, so the fuzz engine library links
// this instead. The fuzzed parsers never run attention; the dispatcher falls back to oneDNN when it is "unavailable".
#include "backends/cpu/flash_attention.h"

#include "core/error.h"

namespace nuance::cpu {

bool flash_attention_available(bool) { return false; }

void set_flash_attention_enabled(bool) {}

void flash_attention(bool, const AttnOperand&, const AttnOperand&, const AttnOperand&, float*, int64_t, int64_t,
                     int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, float, bool) {
    fail(ErrorCode::Unsupported, "flash attention is not built into the fuzz targets");
}

}  // namespace nuance::cpu
