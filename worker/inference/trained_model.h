#pragma once
// TrainedModel: a trial's final model (the file ModelShelf keeps, in the checkpoint format of
// worker/checkpoint.h) made whole again: the network's shape, its weights, the input scaling
// it was trained on and, for a standardised regression target, how to undo it.
//
// The file holds buffers, not the architecture. The architecture comes from the trial's
// parameters (model, hidden sizes, activation: mlp_shape_from_config, as the trainer builds
// it; for a cnn its layers: cnn_shape_from_config), the input count from the file's fingerprint ("features=N", written by the trainer) or
// its scaling buffers, and the output count from what is left of the params buffer; a buffer
// whose length does not fit that shape exactly is an error naming the file.
//
// Buffers: "params" (required), "scale.mean" and "scale.inv_std" (both or neither; applied as
// (x - mean) * inv_std, the trainer's own float arithmetic), "target.mean" and "target.std"
// (both or neither, one float each: the network predicts (y - mean) / std, so a reported value
// is output * std + mean).

#include <memory>
#include <string>
#include <vector>

#include "common/param_value.h"
#include "common/status.h"
#include "common/train_config.h"
#include "worker/models/cnn.h"
#include "worker/models/mlp.h"

namespace trellis::worker {

struct TrainedModel {
  std::string path;  // the file it came from, for messages
  TrainConfig config;
  MlpShape shape;    // dropout 0: a trained model only infers. For a cnn: inputs, outputs
                     // and the softmax head only; the layers are in `cnn`.
  CnnShape cnn;      // model: cnn only
  std::vector<float> params;
  std::vector<float> scale_mean;     // empty: inputs are used as they are
  std::vector<float> scale_inv_std;
  bool target_scaled = false;
  float target_mean = 0.0f;
  float target_std = 1.0f;

  bool is_cnn() const { return config.model == "cnn"; }
  bool regression() const { return shape.head == Head::kSquaredError; }
  // Classification: the class count (2 for logistic).
  int classes() const { return shape.head == Head::kSoftmaxCe ? shape.outputs : 2; }
};

// Reads `path` and builds the model of a trial with `params`. Every failure names the file.
// The network with its trained weights, for up to `max_batch` columns at a time.
std::unique_ptr<Model> make_network(const TrainedModel& model, int max_batch);

[[nodiscard]] Status load_trained_model(const std::string& path, const ParamMap& params,
                                        TrainedModel* out);

}  // namespace trellis::worker
