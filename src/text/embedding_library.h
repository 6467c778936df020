// Textual-inversion embeddings (Gal et al. 2022, "An Image is Worth One Word") as A1111 reads and uses them
// (modules/textual_inversion/textual_inversion.py): a file holds N learned token vectors; a prompt that contains
// the file's name gets the name's tokens replaced by those N vectors before the text encoder runs.
//
// File layouts (by content, not extension):
//   A1111 / original .pt (torch zip or legacy pickle, read with the safe unpickler): {"string_to_token": {"*": id},
//       "string_to_param": {"*": [N, D]}, "name", "step", "sd_checkpoint_name"}; string_to_param may be a
//       torch.nn.ParameterDict (the original implementation's files)
//   .safetensors: "emb_params" [N, D] (A1111's own safetensors export)
//   SDXL .safetensors: "clip_l" [N, 768] and "clip_g" [N, 1280] (one set of vectors per text encoder)
//   diffusers .bin / .pt: {"<token>": [D] or [N, D]} (one tensor)
#pragma once
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace nuance {

struct TextualInversion {
    std::string name, path;  // name: the file stem, the word the prompt uses
    // F32 [N, D] by text encoder: "" (one encoder, SD1.x / SD2.x) or "clip_l" and "clip_g" (SDXL).
    std::map<std::string, Tensor> vectors;
    int64_t count = 0;  // N
    int64_t step = -1;  // training step, when the file says
    std::string checkpoint_name;  // "sd_checkpoint_name", when the file says

    // The vectors for an encoder of width `width`: `key` ("clip_l" / "clip_g") for a two-encoder model, "" for one.
    // Errors name the file, its widths and the encoder's (an SD1.5 embedding on SD2.x or SDXL says so).
    const Tensor& for_encoder(const std::string& key, int64_t width, const std::string& model) const;
};

constexpr int64_t kMaxEmbeddingVectors = 75;  // one 77-token window (BOS + 75 + EOS)

// Reads one embedding file. Hostile files: tensors must be float, [D] or [N, D] with 1 <= N <= 75 and D <= 8192,
// finite; a pickle may reference nothing but tensor-rebuilding globals. Errors name the file and the tensor.
TextualInversion load_textual_inversion(const std::string& path);

// The embeddings of a folder (A1111's --embeddings-dir): *.pt, *.bin, *.safetensors, searched recursively (at most
// 10000 files, 8 levels), named by file stem (the first in path order wins a clash). Files are read when a prompt
// first names them and kept. Thread-safe (the server shares one library between jobs).
class EmbeddingLibrary {
public:
    static std::shared_ptr<EmbeddingLibrary> scan(const std::string& dir);  // Error (NotFound) unless a folder
    const std::string& dir() const { return dir_; }
    std::vector<std::string> names() const;
    std::string path_of(const std::string& name) const;  // "" when not in the folder
    // The embedding called `name` (exact file stem), loaded on first use. Error (NotFound) when absent.
    std::shared_ptr<const TextualInversion> get(const std::string& name) const;
    // Candidates for a prompt: the embeddings whose names occur in `text`, ignoring ASCII case (the tokenizer
    // lower-cases; the token match in tokenize_weighted decides), loaded. Errors of those files propagate.
    std::vector<std::shared_ptr<const TextualInversion>> mentioned(const std::string& text) const;

private:
    std::string dir_;
    std::map<std::string, std::string> files_;  // name -> path
    mutable std::mutex mu_;
    mutable std::map<std::string, std::shared_ptr<const TextualInversion>> loaded_;
};

}  // namespace nuance
