// Reference bytes for nuance's K-quant quantizers (tests/data/gguf_quant/kquant_ref.bin): quantizes 8 rows of 512
// test values with llama.cpp's own quantize_row_q{4,5,6}_K_ref (ggml/src/ggml-quants.c, e.g. from the llama-cpp-python
// sdist's vendor/llama.cpp) and writes   f32 src[8][512] | Q4_K bytes | Q5_K bytes | Q6_K bytes   (little-endian).
// Both sides are built without FMA contraction (-ffp-contract=off), so the comparison is of the algorithms.
//
//   G=.../vendor/llama.cpp/ggml
//   gcc -O2 -std=gnu11 -ffp-contract=off tools/make_kquant_ref.c $G/src/ggml-quants.c -I$G/include -I$G/src \
//       -I$G/src/ggml-cpu -lm -o /tmp/make_kquant_ref && /tmp/make_kquant_ref tests/data/gguf_quant/kquant_ref.bin
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "ggml-common.h"
#include "ggml-quants.h"

// What ggml-quants.c needs from the rest of ggml (unused by the reference quantizers).
void ggml_abort(const char* file, int line, const char* fmt, ...) { fprintf(stderr, "abort %s:%d %s\n", file, line, fmt); abort(); }
size_t ggml_row_size(enum ggml_type t, int64_t n) { (void)t; (void)n; abort(); }
const char* ggml_type_name(enum ggml_type t) { (void)t; return "?"; }
size_t ggml_type_size(enum ggml_type t) { (void)t; abort(); }

enum { ROWS = 8, N = 512 };

static uint64_t state = 0x9E3779B97F4A7C15ull;
static double uniform(void) {  // xorshift64*, (0, 1)
    state ^= state >> 12; state ^= state << 25; state ^= state >> 27;
    return ((state * 2685821657736338717ull) >> 11) * (1.0 / 9007199254740992.0) + 1e-18;
}
static float normal(void) { return (float)(sqrt(-2.0 * log(uniform())) * cos(6.283185307179586 * uniform())); }

int main(int argc, char** argv) {
    if (argc != 2) return 2;
    static float x[ROWS][N];
    for (int i = 0; i < N; ++i) {
        x[0][i] = normal();                                       // N(0, 1)
        x[1][i] = 1e-3f * normal();                               // tiny
        x[2][i] = 30.0f * normal();                               // large
        x[3][i] = i < 256 ? 0.0f : normal();                      // a zero super-block
        x[4][i] = i == 77 ? -3.0f : 0.5f;                         // constant with one outlier
        x[5][i] = normal() / (float)(0.05 + uniform());           // heavy tail
        x[6][i] = fabsf(normal()) + 0.25f;                        // all positive (min > 0)
        x[7][i] = (float)((i % 37) - 18) * 0.01f + (i % 64 == 0 ? 5.0f : 0.0f);  // ramps and spikes
    }
    static block_q4_K q4[ROWS * N / 256];
    static block_q5_K q5[ROWS * N / 256];
    static block_q6_K q6[ROWS * N / 256];
    for (int r = 0; r < ROWS; ++r) {
        quantize_row_q4_K_ref(x[r], q4 + r * (N / 256), N);
        quantize_row_q5_K_ref(x[r], q5 + r * (N / 256), N);
        quantize_row_q6_K_ref(x[r], q6 + r * (N / 256), N);
    }
    FILE* f = fopen(argv[1], "wb");
    if (!f) return 1;
    fwrite(x, sizeof x, 1, f);
    fwrite(q4, sizeof q4, 1, f);
    fwrite(q5, sizeof q5, 1, f);
    fwrite(q6, sizeof q6, 1, f);
    fclose(f);
    printf("wrote %s: %zu + %zu + %zu + %zu bytes\n", argv[1], sizeof x, sizeof q4, sizeof q5, sizeof q6);
    return 0;
}
