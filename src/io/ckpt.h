// torch.save() zip checkpoints (.ckpt / .pt / .pth, torch >= 1.6): a zip holding `<archive>/data.pkl`
// (a pickled state dict) and one `<archive>/data/<key>` entry per storage. The pickle is read with the
// safe unpickler (io/pickle.h): only tensor-rebuilding globals are allowed and nothing is ever called.
#pragma once
#include <memory>
#include <set>
#include <string>

#include "io/weight_file.h"

namespace nuance {

// Loads every tensor of the state dict. A top-level {"state_dict": {...}} (Lightning / CompVis SD
// checkpoints) is flattened to the inner dict; non-tensor entries are ignored. Tensors are zero-copy
// views into the mapped file when their layout allows (contiguous or a permutation of it), copies
// otherwise. metadata gets "format" = "torch_zip" and, when present as ints, "epoch"/"global_step".
WeightFile load_ckpt(const std::string& path);
// Same, from bytes already in memory; `name` is used in error messages and as WeightFile::path. `nested`: see
// load_ckpt_nested.
WeightFile load_ckpt(std::shared_ptr<Storage> file, const std::string& name, bool nested = false);
// Every tensor of the pickled object wherever it sits, named by its '.'-joined dict keys (A1111 textual-inversion
// files: "string_to_param.*"; a torch.nn.ParameterDict counts as the dict of its parameters); the top level's
// string and int entries go to metadata ("name", "step", "sd_checkpoint_name" ...). Nesting depth <= 16.
WeightFile load_ckpt_nested(const std::string& path);

// The "module.name" globals a checkpoint pickle may reference.
const std::set<std::string>& ckpt_allowed_globals();

}  // namespace nuance
