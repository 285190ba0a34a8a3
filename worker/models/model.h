#pragma once
// Model: what the trainer, checkpoints and inference need of a network, so they take any
// model family (Mlp, Cnn) through one abstract class instead of templates.
//
// The contract every model keeps: all parameters in ONE flat buffer, the gradient in another
// of the same layout followed by grad_tail() floats the model never touches (so a data-parallel
// trainer reduces the gradient and side values in one collective, and an optimizer updates one
// flat vector); samples are columns; every buffer a step needs is allocated in the constructor
// for batches up to max_batch(), so forward_backward, evaluate and logits never allocate.
// Anything random in training (dropout) is a pure function of the BatchKey, never of the rank
// or the column, so any rank count computes the same.

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <vector>

#include <Eigen/Core>

#include "common/status.h"
#include "common/train_config.h"

namespace trellis::worker {

// The targets of a batch, one per column: class labels (softmax, mlp; 0/1 for logistic), or
// float values (linear; 0/1 for logistic). Linear also takes labels, as values. Implicit from
// either span so call sites read `model.evaluate(x, labels)`.
struct Targets {
  Targets(std::span<const std::int32_t> l) : labels(l) {}  // NOLINT(google-explicit-constructor)
  Targets(std::span<const float> v) : values(v) {}          // NOLINT(google-explicit-constructor)
  std::size_t size() const { return values.empty() ? labels.size() : values.size(); }
  std::span<const std::int32_t> labels;
  std::span<const float> values;
};

// Which samples a training batch holds, so dropout masks follow the sample, not the rank.
struct BatchKey {
  std::int64_t step = 0;               // global 0-based optimizer step the batch belongs to
  std::span<const std::int64_t> rows;  // global row id of each column (may be empty if dropout 0)
};

// How forward_backward writes grads(): kAccumulate adds to what is there (callers zero it first;
// lets a test sum the gradients of split batches), kAssign overwrites it (no zeroing pass, no
// read of the old values; the grad_tail() floats are left alone either way).
enum class GradMode { kAccumulate, kAssign };

// Loss and accuracy sums of a batch, for evaluation; callers reduce them over ranks. A sample
// is correct when: softmax, the argmax is the label; logistic, (p > 0.5) == target; linear,
// |prediction - target| < 0.5 (the prediction rounds to an integer target). Linear also sums
// the absolute errors (the squared ones are its loss).
struct EvalSums {
  double loss_sum = 0;
  std::int64_t correct = 0;
  double abs_error_sum = 0;
};

class Model {
 public:
  virtual ~Model() = default;

  virtual std::int64_t num_params() const = 0;
  virtual int max_batch() const = 0;
  // Width of logits(): classes for softmax heads, 1 otherwise.
  virtual int outputs() const = 0;
  // Input features per sample (a column of x).
  virtual int inputs() const = 0;
  // Whether Targets are class ids (a softmax head) rather than values.
  virtual bool takes_labels() const = 0;

  // Initial weights from `seed`, the same on any machine and standard library; also seeds
  // whatever training draws (dropout), so a resumed run calls init then loads params.
  virtual void init(std::uint64_t seed) = 0;

  virtual Eigen::VectorXf& params() = 0;
  // num_params() gradient floats, then grad_tail() floats the model never touches.
  virtual Eigen::VectorXf& grad_buffer() = 0;
  virtual int grad_tail() const = 0;
  // The gradient part of grad_buffer().
  Eigen::Map<Eigen::VectorXf> grads() { return {grad_buffer().data(), num_params()}; }

  // Called by forward_backward with an offset from which grads() is final up to num_params()
  // (backward fills the buffer from its end), so a trainer can reduce that part while backward
  // still computes the front. Offsets come from grad_ready_offsets(), in descending order.
  using GradReady = std::function<void(std::int64_t final_from)>;

  // Forward and backward over x.cols() <= max_batch() samples: adds (kAccumulate) or writes
  // (kAssign) `scale` times the SUM over samples of the per-sample loss gradient into grads();
  // returns the unscaled loss sum. `on_grad_ready`, if set, is called at least once, last with 0.
  virtual double forward_backward(const Eigen::Ref<const Eigen::MatrixXf>& x, Targets targets,
                                  const BatchKey& key, float scale,
                                  GradMode mode = GradMode::kAccumulate,
                                  const GradReady& on_grad_ready = {}) = 0;
  // Every offset forward_backward may pass to on_grad_ready, ascending; the first is 0. Where
  // gradient buckets may begin (collectives.h: plan_gradient_buckets).
  virtual std::vector<std::size_t> grad_ready_offsets() const = 0;
  // Forward only, no dropout: loss sum and number of correct predictions.
  virtual EvalSums evaluate(const Eigen::Ref<const Eigen::MatrixXf>& x, Targets targets) = 0;
  // Forward only, as evaluate computes it: the logits (outputs() x x.cols()), before the head.
  // Valid until the next call.
  virtual Eigen::Ref<const Eigen::MatrixXf> logits(const Eigen::Ref<const Eigen::MatrixXf>& x) = 0;
};

// Builds the model `config` names (model: linear | logistic | softmax | mlp | cnn) for data of
// `inputs` features and `classes` classes (0 for regression); `image_side`, when > 0, is the
// side of a square single-channel image those features are (Cnn needs it; 0 lets the Cnn take
// sqrt(inputs)). Not initialised: call init.
[[nodiscard]] Status make_model(const TrainConfig& config, int inputs, int classes,
                                int max_batch, int grad_tail, std::unique_ptr<Model>* out);

}  // namespace trellis::worker
