// Fused attention for AVX-512 CPUs (issue 5): o = softmax(scale · q kᵀ [+ causal mask]) v in one pass over the keys
// per query tile, with an online softmax, so neither the L×L score matrix nor a full score row is ever held.
// Shape letters: B batch, H heads, Lq/Lk query/key tokens, d head dim, dv value head dim.
// Operands are bf16 (products on vdpbf16ps: bf16 pairs, f32 accumulation; the softmax weights are rounded to bf16
// for the second product) or f32 (f32 FMAs throughout). The output and all softmax state are f32.
// Callers check flash_attention_available() first; on CPUs without AVX-512 (or AVX512_BF16 for bf16 operands) the
// oneDNN tiled path in ops/attention.cpp runs instead.
#pragma once
#include <cstdint>

namespace nuance::cpu {

// One operand: element pointer and element strides of the batch, head and token dimensions (inner stride 1).
struct AttnOperand {
    const void* data;
    int64_t sb, sh, sl;
};

// Whether this CPU runs the fused kernel for bf16 (true) or f32 (false) operands and it is enabled.
bool flash_attention_available(bool bf16);
// Enabled unless NUANCE_FLASH_ATTENTION=0 in the environment; tests and A/B measurements switch it here (process-wide).
void set_flash_attention_enabled(bool on);

// out[b, h, i, :dv] (f32, element strides ob/oh/ol) = attention of q [B, H, Lq, d], k [B, H, Lk, d], v [B, H, Lk, dv].
// causal: query i sees keys j <= i. Runs on the OpenMP threads. Requires flash_attention_available(bf16).
void flash_attention(bool bf16, const AttnOperand& q, const AttnOperand& k, const AttnOperand& v, float* out,
                     int64_t ob, int64_t oh, int64_t ol, int64_t B, int64_t H, int64_t Lq, int64_t Lk, int64_t d,
                     int64_t dv, float scale, bool causal);

}  // namespace nuance::cpu
