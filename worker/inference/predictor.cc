#include "worker/inference/predictor.h"

#include <algorithm>
#include <cassert>
#include <cmath>
#include <cstdio>

namespace trellis::worker {
namespace {

// Columns per forward pass: the model's buffers are sized for this many.
constexpr int kBatch = 1024;

std::string float_text(float v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.9g", static_cast<double>(v));
  return buf;
}

}  // namespace

Predictions predict(const TrainedModel& model, const Eigen::MatrixXf& x) {
  assert(x.rows() == model.shape.inputs);
  const Eigen::Index n = x.cols();
  const std::unique_ptr<Model> net =
      make_network(model, static_cast<int>(std::clamp<Eigen::Index>(n, 1, kBatch)));
  Predictions out;
  const int k = model.shape.outputs;
  if (model.regression()) {
    out.values.resize(static_cast<std::size_t>(n));
  } else {
    out.classes.resize(static_cast<std::size_t>(n));
    out.probabilities.resize(model.classes(), n);
  }
  Eigen::MatrixXf batch;
  for (Eigen::Index begin = 0; begin < n; begin += kBatch) {
    const Eigen::Index m = std::min<Eigen::Index>(kBatch, n - begin);
    batch = x.middleCols(begin, m);
    if (!model.scale_mean.empty()) {
      // As the trainer scales (dataset.cc): (x - mean) * inv_std, in float.
      const Eigen::Map<const Eigen::VectorXf> mean(model.scale_mean.data(), x.rows());
      const Eigen::Map<const Eigen::VectorXf> inv_std(model.scale_inv_std.data(), x.rows());
      batch = (batch.colwise() - mean).array().colwise() * inv_std.array();
    }
    const auto z = net->logits(batch);
    for (Eigen::Index j = 0; j < m; ++j) {
      const auto r = static_cast<std::size_t>(begin + j);
      switch (model.shape.head) {
        case Head::kSquaredError: {
          const float v = z(0, j);
          out.values[r] = model.target_scaled ? v * model.target_std + model.target_mean : v;
          break;
        }
        case Head::kSigmoidBce: {
          // The trainer counts z > 0 as class 1.
          const float p = 1.0f / (1.0f + std::exp(-z(0, j)));
          out.probabilities(0, begin + j) = 1.0f - p;
          out.probabilities(1, begin + j) = p;
          out.classes[r] = z(0, j) > 0.0f ? 1 : 0;
          break;
        }
        case Head::kSoftmaxCe: {
          // Argmax as the trainer takes it (the first of equal maxima), then the probabilities
          // shifted by the max so exp never overflows.
          int best = 0;
          for (int i = 1; i < k; ++i)
            if (z(i, j) > z(best, j)) best = i;
          auto p = out.probabilities.col(begin + j);
          p = (z.col(j).array() - z(best, j)).exp().matrix();
          p /= p.sum();
          out.classes[r] = best;
          break;
        }
      }
    }
  }
  return out;
}

void write_predictions_csv(const TrainedModel& model, const Predictions& p, std::ostream& out) {
  if (model.regression()) {
    out << "row,value\n";
    for (std::size_t r = 0; r < p.values.size(); ++r) out << r << "," << float_text(p.values[r]) << "\n";
    return;
  }
  out << "row,class";
  for (int c = 0; c < model.classes(); ++c) out << ",p" << c;
  out << "\n";
  for (std::size_t r = 0; r < p.classes.size(); ++r) {
    out << r << "," << p.classes[r];
    for (int c = 0; c < model.classes(); ++c)
      out << "," << float_text(p.probabilities(c, static_cast<Eigen::Index>(r)));
    out << "\n";
  }
}

}  // namespace trellis::worker
