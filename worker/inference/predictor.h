#pragma once
// Predictions of a TrainedModel on raw rows: the trainer's own forward pass (Mlp::logits, no
// dropout) after the trainer's input scaling, then the head: softmax probabilities and their
// argmax (logistic: sigmoid, class 1 when p > 0.5), or the value, un-standardised when the
// model carries a target scaling.

#include <cstdint>
#include <ostream>
#include <vector>

#include <Eigen/Core>

#include "worker/inference/trained_model.h"

namespace trellis::worker {

struct Predictions {
  // Classification: class per row, and probabilities classes x rows. Regression: values.
  std::vector<std::int32_t> classes;
  Eigen::MatrixXf probabilities;
  std::vector<float> values;
};

// `x` is features x rows, as read (not yet scaled); x.rows() must be the model's inputs.
Predictions predict(const TrainedModel& model, const Eigen::MatrixXf& x);

// CSV, a header then one line per row in input order: `row,class,p0,...,pK-1` for
// classification, `row,value` for regression; row counts input rows from 0. Floats printed
// with 9 significant digits, enough to read back the float exactly.
void write_predictions_csv(const TrainedModel& model, const Predictions& p, std::ostream& out);

}  // namespace trellis::worker
