// torch zip checkpoints (src/io/ckpt.cpp): zip container + safe unpickler + tensor rebuilding (storages, offsets,
// sizes, strides). Every tensor it returns is touched at both ends of its view.
#include "fuzz_util.h"
#include "io/ckpt.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    nuance::fuzz::expect_ok_or_error([&] {
        const nuance::WeightFile wf = nuance::load_ckpt(nuance::fuzz::exact_storage(data, size), "<fuzz>");
        for (const auto& [name, t] : wf.tensors) (void)nuance::fuzz::touch(t);
    });
    return 0;
}
