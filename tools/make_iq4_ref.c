// Reference bytes for nuance's IQ4_NL / IQ4_XS quantizers (tests/data/gguf_quant/iq4_ref.bin): quantizes the 12 rows
// of kquant_q23_ref.bin with ggml's quantize_iq4_nl / quantize_iq4_xs (ggml/src/ggml-quants.c, the functions
// llama-quantize calls through ggml_quantize_chunk; no importance matrix) and writes
//   u32 rows | f32 src[rows][512] | IQ4_NL bytes | IQ4_XS bytes   (little-endian).
// Built without FMA contraction (-ffp-contract=off), as nuance's quantizers are, so the comparison is of the algorithms.
//
//   G=.../ggml   (github.com/ggml-org/ggml, or llama.cpp's ggml/)
//   gcc -O2 -std=gnu11 -ffp-contract=off tools/make_iq4_ref.c $G/src/ggml-quants.c -I$G/include -I$G/src \
//       -I$G/src/ggml-cpu -lm -o /tmp/make_iq4_ref && /tmp/make_iq4_ref tests/data/gguf_quant/kquant_q23_ref.bin \
//       tests/data/gguf_quant/iq4_ref.bin
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "ggml-common.h"
#include "ggml-quants.h"

// What ggml-quants.c needs from the rest of ggml (unused by these quantizers).
void ggml_abort(const char* file, int line, const char* fmt, ...) { fprintf(stderr, "abort %s:%d %s\n", file, line, fmt); abort(); }
size_t ggml_row_size(enum ggml_type t, int64_t n) { (void)t; (void)n; abort(); }
const char* ggml_type_name(enum ggml_type t) { (void)t; return "?"; }
size_t ggml_type_size(enum ggml_type t) { (void)t; abort(); }

enum { N = 512, MAXROWS = 64 };

int main(int argc, char** argv) {
    if (argc != 3) return 2;
    FILE* in = fopen(argv[1], "rb");
    if (!in) return 1;
    uint32_t rows = 0;
    static float x[MAXROWS][N];
    if (fread(&rows, 4, 1, in) != 1 || rows > MAXROWS || fread(x, 4 * N, rows, in) != rows) return 1;
    fclose(in);
    static block_iq4_nl nl[MAXROWS * N / QK4_NL];
    static block_iq4_xs xs[MAXROWS * N / QK_K];
    quantize_iq4_nl(&x[0][0], nl, rows, N, NULL);
    quantize_iq4_xs(&x[0][0], xs, rows, N, NULL);
    FILE* f = fopen(argv[2], "wb");
    if (!f) return 1;
    fwrite(&rows, 4, 1, f);
    fwrite(x, 4 * N, rows, f);
    fwrite(nl, sizeof(block_iq4_nl), rows * N / QK4_NL, f);
    fwrite(xs, sizeof(block_iq4_xs), rows * N / QK_K, f);
    fclose(f);
    printf("wrote %s: %u rows, %zu + %zu bytes of blocks\n", argv[2], rows, sizeof(block_iq4_nl) * rows * N / QK4_NL,
           sizeof(block_iq4_xs) * rows * N / QK_K);
    return 0;
}
