// Text clean-up applied before CLIP BPE, reproducing what transformers' CLIPTokenizer does when
// ftfy is installed: `whitespace_clean(ftfy.fix_text(text)).lower()`.
//
// fix_text implements the ftfy 6.3 default pipeline, per line, repeated until nothing changes:
// HTML entity unescaping (skipped from the first line containing '<' on, as ftfy's "auto" mode),
// mojibake repair, C1 controls -> Windows-1252, Latin ligatures (ﬁ -> fi, ǅ -> Dž), fullwidth and
// halfwidth forms (NFKC of U+FF01..U+FFEF, U+3000 -> space), curly quotes -> ASCII quotes, line
// breaks -> '\n', ANSI terminal escapes removed, control characters removed, NFC.
//
// Mojibake repair is a simplification of ftfy's (which scores text with a large "badness"
// heuristic and tries nine single-byte codecs): text that is entirely Latin-1 or Windows-1252
// and re-encodes to valid UTF-8 is decoded as UTF-8; otherwise embedded Windows-1252-encoded
// UTF-8 sequences ("cafÃ©" inside other text) are decoded one by one.
#pragma once
#include <string_view>
#include <string>

namespace nuance::text {

std::u32string fix_text(std::u32string_view text);

// The text clean-up of transformers' CLIPTokenizer when ftfy is NOT installed, before
// whitespace_clean + lower: BasicTokenizer(strip_accents=False, do_split_on_punc=False) drops
// U+0000, U+FFFD and category C* characters except \t \n \r, maps \t \n \r and Zs to ' ', puts
// spaces around CJK ideographs, and applies NFC.
std::u32string bert_basic_clean(std::u32string_view text);

// re.sub(r"\s+", " ", text).strip()
std::u32string whitespace_clean(std::u32string_view text);

}  // namespace nuance::text
