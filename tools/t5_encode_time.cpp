// Times a T5 encode from a weight file (bench/README.md, "T5-XXL"): load (mmap), the first forward (which also packs
// every weight matrix once) and two more forwards of one prompt padded to L tokens. Not part of the build:
//   cd build && g++ -O3 -DNDEBUG -std=c++20 -fopenmp -mavx2 -mf16c -mfma -I../src -I../include \
//     ../tools/t5_encode_time.cpp -o t5_encode_time libnuance_lib.a -ldnnl -lpng -ljpeg -lz -lcrypto -lgomp -lpthread
//   ./t5_encode_time /tmp/t5xxl_random_f16.safetensors bf16 256
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "core/dtype.h"
#include "models/t5/t5_loader.h"
using namespace nuance;
int main(int argc, char** argv) {
    if (argc < 3) {
        std::fprintf(stderr, "usage: t5_encode_time WEIGHTS fp32|bf16 [L]\n");
        return 2;
    }
    const Precision p = parse_precision(argv[2]);
    const int L = argc > 3 ? atoi(argv[3]) : 256;
    auto now = [] { return std::chrono::steady_clock::now(); };
    auto sec = [](auto a, auto b) { return std::chrono::duration<double>(b - a).count(); };
    auto t0 = now();
    auto m = load_t5_encoder(std::string(argv[1]), p);
    auto t1 = now();
    std::string prompt;
    for (int i = 0; i < 400; ++i) prompt += "a photograph of an astronaut riding a horse ";
    const auto ids = T5Tokenizer::builtin().encode_padded(prompt, L);
    const Tensor t = Tensor::from_ids(ids, {1, L});
    auto t2 = now();
    Tensor y = m->forward(t).last_hidden_state;
    auto t3 = now();
    Tensor y2 = m->forward(t).last_hidden_state;
    auto t4 = now();
    Tensor y3 = m->forward(t).last_hidden_state;
    auto t5 = now();
    std::printf("layers=%lld precision=%s L=%d load=%.2fs tokenize=%.3fs first_forward=%.2fs forward=%.2fs,%.2fs\n",
                (long long)m->config().layers, argv[2], L, sec(t0, t1), sec(t1, t2), sec(t2, t3), sec(t3, t4), sec(t4, t5));
}
