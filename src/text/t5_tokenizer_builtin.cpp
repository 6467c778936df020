// Google's T5 SentencePiece vocabulary (assets/t5/spiece.model: cc_all.32000 from
// google-research/text-to-text-transfer-transformer, Apache License 2.0; see assets/t5/NOTICE and README.md)
// embedded in the library with the assembler's .incbin, so an installed binary needs no data file.
// NUANCE_ASSET_DIR is the absolute assets/ path, a compile definition set by CMakeLists.txt (which also makes this
// file depend on the model file).
#include <string_view>

#include "text/t5_tokenizer.h"

#ifndef NUANCE_ASSET_DIR
#error "NUANCE_ASSET_DIR (absolute path of assets/) must be defined"
#endif

#if defined(__APPLE__)
#define NUANCE_T5_SYM(name) "_" #name
#define NUANCE_T5_SECTION ".const_data\n"
#define NUANCE_T5_END ".text\n"
#define NUANCE_T5_HIDE(name) ".private_extern " NUANCE_T5_SYM(name) "\n"
#else
#define NUANCE_T5_SYM(name) #name
#define NUANCE_T5_SECTION ".pushsection .rodata.nuance_t5_assets, \"a\"\n"
#define NUANCE_T5_END ".popsection\n"
#define NUANCE_T5_HIDE(name) ".hidden " NUANCE_T5_SYM(name) "\n"
#endif

__asm__(NUANCE_T5_SECTION
        ".global " NUANCE_T5_SYM(nuance_t5_spiece_begin) "\n"
        NUANCE_T5_HIDE(nuance_t5_spiece_begin)
        ".global " NUANCE_T5_SYM(nuance_t5_spiece_end) "\n"
        NUANCE_T5_HIDE(nuance_t5_spiece_end)
        ".balign 16\n"
        NUANCE_T5_SYM(nuance_t5_spiece_begin) ":\n"
        ".incbin \"" NUANCE_ASSET_DIR "/t5/spiece.model\"\n"
        NUANCE_T5_SYM(nuance_t5_spiece_end) ":\n"
        ".byte 0\n"
        NUANCE_T5_END);

extern "C" {
extern const char nuance_t5_spiece_begin[];
extern const char nuance_t5_spiece_end[];
}

namespace nuance {

const T5Tokenizer& T5Tokenizer::builtin() {
    // Function-local static: parsed on first use, thread-safe (C++11 magic statics).
    static const T5Tokenizer tok = from_bytes(
        std::string_view(nuance_t5_spiece_begin, static_cast<size_t>(nuance_t5_spiece_end - nuance_t5_spiece_begin)),
        "<builtin>/t5/spiece.model");
    return tok;
}

}  // namespace nuance
