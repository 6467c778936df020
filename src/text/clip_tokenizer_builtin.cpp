// The openai CLIP vocabulary (assets/clip/vocab.json and merges.txt, MIT license) embedded in the
// library with the assembler's .incbin, so an installed binary needs no data files.
// NUANCE_ASSET_DIR is the absolute assets/ path, a compile definition set by CMakeLists.txt.
// (The build does not track the asset files: touch this file after changing them.)
#include <string_view>

#include "text/clip_tokenizer.h"

#ifndef NUANCE_ASSET_DIR
#error "NUANCE_ASSET_DIR (absolute path of assets/) must be defined"
#endif

#if defined(__APPLE__)
#define NUANCE_ASM_SYM(name) "_" #name
#define NUANCE_ASM_SECTION ".const_data\n"
#define NUANCE_ASM_END ".text\n"
#define NUANCE_ASM_HIDE(name) ".private_extern " NUANCE_ASM_SYM(name) "\n"
#else
#define NUANCE_ASM_SYM(name) #name
#define NUANCE_ASM_SECTION ".pushsection .rodata.nuance_clip_assets, \"a\"\n"
#define NUANCE_ASM_END ".popsection\n"
#define NUANCE_ASM_HIDE(name) ".hidden " NUANCE_ASM_SYM(name) "\n"
#endif

#define NUANCE_ASM_BLOB(name, path)                        \
    ".global " NUANCE_ASM_SYM(name##_begin) "\n"           \
    NUANCE_ASM_HIDE(name##_begin)                          \
    ".global " NUANCE_ASM_SYM(name##_end) "\n"             \
    NUANCE_ASM_HIDE(name##_end)                            \
    ".balign 16\n"                                         \
    NUANCE_ASM_SYM(name##_begin) ":\n"                     \
    ".incbin \"" path "\"\n"                               \
    NUANCE_ASM_SYM(name##_end) ":\n"                       \
    ".byte 0\n"

__asm__(NUANCE_ASM_SECTION
        NUANCE_ASM_BLOB(nuance_clip_vocab_json, NUANCE_ASSET_DIR "/clip/vocab.json")
        NUANCE_ASM_BLOB(nuance_clip_merges_txt, NUANCE_ASSET_DIR "/clip/merges.txt")
        NUANCE_ASM_END);

extern "C" {
extern const char nuance_clip_vocab_json_begin[];
extern const char nuance_clip_vocab_json_end[];
extern const char nuance_clip_merges_txt_begin[];
extern const char nuance_clip_merges_txt_end[];
}

namespace nuance {

const ClipTokenizer& ClipTokenizer::builtin() {
    // Function-local static: parsed on first use, thread-safe (C++11 magic statics).
    static const ClipTokenizer tok = from_strings(
        std::string_view(nuance_clip_vocab_json_begin,
                         static_cast<size_t>(nuance_clip_vocab_json_end - nuance_clip_vocab_json_begin)),
        std::string_view(nuance_clip_merges_txt_begin,
                         static_cast<size_t>(nuance_clip_merges_txt_end - nuance_clip_merges_txt_begin)),
        "<builtin>/clip/vocab.json", "<builtin>/clip/merges.txt");
    return tok;
}

}  // namespace nuance
