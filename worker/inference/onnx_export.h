#pragma once
// A TrainedModel as an ONNX model (opset 13, IR version 7), built with Debian's ONNX library
// (its generated protobuf classes), so any ONNX runtime computes what `trellis predict` does.
//
// Graph (N, the batch, is a dynamic dimension "batch"; F the features, K the classes):
//   input   "features"       float [N, F], rows as read (pixels / 255 for idx)
//   scaling Sub(mean), Mul(inv_std): kept as two nodes, not folded into the first Gemm, so the
//           floats the first layer sees are the very ones the trainer computed ((x - mean) *
//           inv_std); folding would round differently and buys nothing at this size.
//   layers  Gemm(W, b) per layer, then Relu | Tanh | gelu on hidden layers; gelu is the tanh
//           approximation composed from Mul/Add/Tanh (opset <= 17 has no Gelu), in the
//           trainer's order: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))).
//   outputs classification: "probabilities" float [N, K] (Softmax over the logits; logistic:
//           [1 - p, p] with p = Sigmoid) and "class" int64 [N] (ArgMax, the first of equal
//           maxima, as the trainer; logistic: logit > 0). Regression: "value" float [N, 1],
//           times target.std plus target.mean when the model carries a target scaling.
// A cnn (model: cnn) is refused with a message saying so; `trellis predict` serves it.

#include <string>

#include "common/status.h"
#include "worker/inference/trained_model.h"

namespace trellis::worker {

// Writes the model to `path` atomically; `name` goes into the graph's name (the experiment and
// trial, for whoever opens the file).
[[nodiscard]] Status export_onnx(const TrainedModel& model, const std::string& name,
                                 const std::string& path);

}  // namespace trellis::worker
