#pragma once
// Optimizers over one flat parameter vector and its same-layout gradient (see models/mlp.h).
//
// Every rank of a group applies the same step to the same all-reduced gradient, so the update
// must be a pure function of (state, params, grads, lr): no randomness, no rank-dependent input.
// One step, in this order:
//   1. clip:  g = grads * min(1, grad_clip / ||grads||_2) when grad_clip > 0 (the norm of the
//             whole reduced gradient, computed in double);
//   2. decay: sgd and adam add L2 to the gradient, g += weight_decay * p (classic SGD, the
//             original Adam); adamw decays the weights directly, p *= 1 - lr * weight_decay,
//             so the decay is not rescaled by Adam's second moment (Loshchilov & Hutter);
//   3. update (PyTorch conventions, so published hyperparameters transfer):
//        sgd       v = momentum * v + g; p -= lr * (nesterov ? g + momentum * v : v)
//                  (momentum 0: p -= lr * g)
//        adam(w)   m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2;
//                  p -= lr * (m / (1-b1^t)) / (sqrt(v / (1-b2^t)) + eps), t = steps taken
// Steps never allocate. The state (step count + buffers) can be saved and restored exactly, so
// a resumed run continues bit for bit.

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <Eigen/Core>

#include "common/status.h"
#include "common/train_config.h"

namespace trellis::worker {

enum class OptimizerKind { kSgd, kAdam, kAdamW };

struct OptimizerOptions {
  OptimizerKind kind = OptimizerKind::kAdam;
  float lr = 1e-3f;  // used by step() without an lr; a schedule passes its own
  float momentum = 0.0f;  // sgd: heavy-ball momentum when > 0
  bool nesterov = false;  // sgd
  float weight_decay = 0.0f;
  float beta1 = 0.9f;  // adam, adamw
  float beta2 = 0.999f;
  float epsilon = 1e-8f;
  float grad_clip = 0.0f;  // 0 = off
};

// Takes optimizer, lr, momentum, nesterov, weight_decay, beta1, beta2 and grad_clip from
// `config`; fails on an unknown optimizer or a value out of range.
[[nodiscard]] Status optimizer_options_from_config(const TrainConfig& config,
                                                   OptimizerOptions* out);

// Everything a checkpoint needs to resume an optimizer: its kind (checked on restore), the
// steps taken, and its buffers in a fixed order (sgd: velocity, empty without momentum;
// adam/adamw: first moment, second moment), each num_params floats.
struct OptimizerState {
  std::string kind;  // "sgd" | "adam" | "adamw"
  std::int64_t steps = 0;
  std::vector<Eigen::VectorXf> buffers;
};

class Optimizer {
 public:
  virtual ~Optimizer() = default;

  // Updates `params` in place from `grads` (both num_params long) with learning rate `lr`
  // (the schedule's value for this step). `grads` is left untouched, clipping included.
  virtual void step(Eigen::Ref<Eigen::VectorXf> params,
                    const Eigen::Ref<const Eigen::VectorXf>& grads, float lr) = 0;
  // The same with the options' constant lr.
  void step(Eigen::Ref<Eigen::VectorXf> params, const Eigen::Ref<const Eigen::VectorXf>& grads) {
    step(params, grads, options_.lr);
  }

  // Steps taken so far.
  std::int64_t steps() const { return steps_; }
  const OptimizerOptions& options() const { return options_; }
  // L2 norm of the last step's gradient before clipping (0 before the first step, and when
  // clipping is off, since it is then never computed).
  double last_grad_norm() const { return last_grad_norm_; }

  // A copy of the full state; restore_state() of it on an optimizer made with the same options
  // and size continues exactly where this one is.
  virtual void save_state(OptimizerState* out) const = 0;
  // Fails (leaving this optimizer unchanged) if the kind, buffer count or sizes differ.
  [[nodiscard]] virtual Status restore_state(const OptimizerState& state) = 0;

 protected:
  Optimizer(const OptimizerOptions& options, std::int64_t num_params)
      : options_(options), num_params_(num_params) {}
  // The factor clipping multiplies the gradient by (1 when off or under the threshold).
  float clip_factor(const Eigen::Ref<const Eigen::VectorXf>& grads);
  // Shared part of restore_state: checks and copies.
  [[nodiscard]] Status restore_buffers(const OptimizerState& state, const char* kind,
                                       std::vector<Eigen::VectorXf*> into);

  OptimizerOptions options_;
  std::int64_t num_params_;
  std::int64_t steps_ = 0;
  double last_grad_norm_ = 0;
};

// An optimizer for `num_params` parameters, its state (momentum, moments) zeroed.
[[nodiscard]] Status make_optimizer(const OptimizerOptions& options, std::int64_t num_params,
                                    std::unique_ptr<Optimizer>* out);

}  // namespace trellis::worker
