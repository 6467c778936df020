// The one definition of the CLIP text encoder's forward (design.md "One definition per forward"; the overload set
// is nn/apply.h): templates over V = Tensor (inference: the blocks' operator() and ClipTextModel::forward call them)
// or Var (training: train/model_graph.h's clip_encode), instantiated for both in clip_text.cpp. Shapes as
// clip_text.h.
#pragma once
#include <vector>

#include "models/clip/clip_text.h"
#include "nn/apply.h"

namespace nuance {

template <class V>
V run(const ClipAttention& a, const V& x);
template <class V>
V run(const ClipMlp& m, const V& x);
template <class V>
V run(const ClipEncoderLayer& l, V x);

// ids [B, L] -> the token (or, when defined, `token_embeds` [B, L, D]) plus position embeddings through the first
// n layers [B, L, D] (no final LayerNorm); `hidden` (when given) receives the embeddings and each layer's output.
template <class V>
V run_layers(const ClipTextModel& m, const Tensor& ids, int64_t n, const Tensor& token_embeds,
             std::vector<V>* hidden);

}  // namespace nuance
