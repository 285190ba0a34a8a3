#pragma once
// Optimizers over one flat parameter vector and its same-layout gradient (see models/mlp.h).
//
// Every rank of a group applies the same step to the same all-reduced gradient, so the update
// must be a pure function of (state, params, grads): no randomness, no rank-dependent input.
// L2 weight decay is added to the gradient before the update (g + weight_decay * p), as in
// classic SGD and the original Adam (not decoupled AdamW).

#include <cstdint>
#include <memory>

#include <Eigen/Core>

#include "common/status.h"
#include "common/train_config.h"

namespace trellis::worker {

enum class OptimizerKind { kSgd, kAdam };

struct OptimizerOptions {
  OptimizerKind kind = OptimizerKind::kAdam;
  float lr = 1e-3f;
  float momentum = 0.0f;  // sgd: heavy-ball momentum when > 0
  float weight_decay = 0.0f;
  float beta1 = 0.9f;  // adam
  float beta2 = 0.999f;
  float epsilon = 1e-8f;
};

// Takes optimizer, lr, momentum and weight_decay from `config`; fails on an unknown optimizer
// or a value out of range.
[[nodiscard]] Status optimizer_options_from_config(const TrainConfig& config,
                                                   OptimizerOptions* out);

class Optimizer {
 public:
  virtual ~Optimizer() = default;
  // Updates `params` in place from `grads` (same size as at construction).
  virtual void step(Eigen::Ref<Eigen::VectorXf> params,
                    const Eigen::Ref<const Eigen::VectorXf>& grads) = 0;
  // Steps taken so far.
  virtual std::int64_t steps() const = 0;
};

// An optimizer for `num_params` parameters, its state (momentum, moments) zeroed.
[[nodiscard]] Status make_optimizer(const OptimizerOptions& options, std::int64_t num_params,
                                    std::unique_ptr<Optimizer>* out);

}  // namespace trellis::worker
