#pragma once
// Mlp: a float32 feed-forward network, the one model family of every `model` setting:
//
//   model     hidden layers    head (1 output unless noted)
//   linear    none             identity, squared error (z - y)^2 against a float target
//   logistic  none             sigmoid + binary cross-entropy, target 0/1
//   softmax   none             softmax cross-entropy over `classes` outputs
//   mlp       hidden sizes     softmax cross-entropy over `classes` outputs
//
// Samples are columns (features x batch); layer l maps in_l -> out_l with W_l (out_l x in_l)
// and b_l. All parameters live in ONE contiguous buffer (W_0, b_0, W_1, b_1, ...; each W
// column-major) and the gradient in another of the same layout, so a data-parallel trainer
// reduces the whole gradient with one collective and an optimizer updates one flat vector.
// Every buffer a step needs is allocated in the constructor for batches up to `max_batch`;
// forward_backward and evaluate never allocate.
//
// Activations: relu, tanh, gelu (the tanh approximation 0.5 x (1 + tanh(sqrt(2/pi)(x +
// 0.044715 x^3))), as GPT-2/BERT and PyTorch's approximate="tanh": Eigen vectorises tanh, not
// erf).
//
// Dropout (inverted: kept units are scaled by 1/(1-p), so evaluation needs no rescaling) acts
// on hidden activations during forward_backward only. The mask of a sample is a pure function
// of (dropout seed, step, the sample's global row id, layer), never of its rank or its column
// in the batch: a group of any size draws the same masks, and a resumed run draws the masks an
// uninterrupted one would.

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include <Eigen/Core>

#include "common/status.h"
#include "common/train_config.h"
#include "worker/models/model.h"

namespace trellis::worker {

enum class Activation { kRelu, kTanh, kGelu };
enum class Head { kSquaredError, kSigmoidBce, kSoftmaxCe };

struct MlpShape {
  int inputs = 0;
  std::vector<int> hidden;  // hidden layer sizes, input side first; empty: no hidden layer
  int outputs = 0;          // 1 for kSquaredError and kSigmoidBce, classes for kSoftmaxCe
  Head head = Head::kSoftmaxCe;
  Activation activation = Activation::kRelu;
  float dropout = 0.0f;  // [0, 1)
};

// Checks the model part of `config` (model, hidden / hidden_layers x hidden_units, activation,
// dropout) and fills in the shape for data of `inputs` features and `classes` classes.
// `classes` must be >= 2 for softmax and mlp and exactly 2 for logistic; linear ignores it.
[[nodiscard]] Status mlp_shape_from_config(const TrainConfig& config, int inputs, int classes,
                                           MlpShape* out);

// The inverted-dropout multipliers (0 or 1/(1-p)) of `out.size()` units of hidden layer
// `layer` for the sample of global row `row` at step `step`. Pure: the model draws exactly
// these, whatever batch the sample is in.
void dropout_mask(std::uint64_t seed, std::int64_t step, std::int64_t row, int layer, float p,
                  Eigen::Ref<Eigen::VectorXf> out);

class Mlp final : public Model {
 public:
  // `shape` must be valid (see mlp_shape_from_config); `max_batch` >= 1. `grad_tail` extra
  // floats follow the gradient in its buffer, so callers can reduce side values (the loss) in
  // the same collective as the gradient.
  Mlp(const MlpShape& shape, int max_batch, int grad_tail = 0);
  Mlp(const Mlp&) = delete;
  Mlp& operator=(const Mlp&) = delete;

  const MlpShape& shape() const { return shape_; }
  int max_batch() const override { return max_batch_; }
  int outputs() const override { return shape_.outputs; }
  int inputs() const override { return shape_.inputs; }
  bool takes_labels() const override { return shape_.head == Head::kSoftmaxCe; }
  int layers() const { return static_cast<int>(layers_.size()); }
  std::int64_t num_params() const override { return num_params_; }

  // He-normal weights for relu and gelu hidden layers, Glorot-normal for tanh hidden layers and
  // the output layer, zero biases. Normals come from our own Box-Muller over std::mt19937_64,
  // so the same seed gives the same weights with any standard library. Also sets the dropout
  // seed from `seed` (a resumed run calls init with the trial's seed, then loads params).
  void init(std::uint64_t seed) override;
  // Overrides the dropout seed init() chose.
  void set_dropout_seed(std::uint64_t seed) { dropout_seed_ = seed; }
  std::uint64_t dropout_seed() const { return dropout_seed_; }

  Eigen::VectorXf& params() override { return params_; }
  const Eigen::VectorXf& params() const { return params_; }
  // num_params() gradient floats, then grad_tail() floats the model never touches.
  Eigen::VectorXf& grad_buffer() override { return grads_; }
  int grad_tail() const override { return grad_tail_; }
  // The gradient part of grad_buffer().
  Eigen::Map<Eigen::VectorXf> grads() { return {grads_.data(), num_params_}; }

  // Views of layer l's parameters and gradients inside the flat buffers.
  Eigen::Map<Eigen::MatrixXf> weights(int l);
  Eigen::Map<Eigen::VectorXf> bias(int l);
  Eigen::Map<Eigen::MatrixXf> weight_grads(int l);
  Eigen::Map<Eigen::VectorXf> bias_grads(int l);
  // Where layer l's gradient starts in grad_buffer() (its W_l, then b_l, up to layer l+1's).

  // Forward and backward over a batch of x.cols() <= max_batch() samples, dropout drawn for
  // `key` (key.rows must hold x.cols() ids when dropout > 0). Adds `scale` times the SUM over
  // samples of the per-sample loss gradient to grads() (callers zero it first; a trainer passes
  // 1/global_batch so the reduced sum is the mean gradient of the global batch), or with
  // GradMode::kAssign writes it there (no zeroing needed; an empty batch writes zeros). Returns
  // the unscaled loss sum (with dropout applied, as trained). `on_grad_ready` gets each layer's
  // W_l offset as soon as its gradient (W_l and b_l) is final, the last layer first.
  double forward_backward(const Eigen::Ref<const Eigen::MatrixXf>& x, Targets targets,
                          const BatchKey& key, float scale,
                          GradMode mode = GradMode::kAccumulate,
                          const GradReady& on_grad_ready = {}) override;
  // Each layer's W offset.
  std::vector<std::size_t> grad_ready_offsets() const override;
  // Without a key: no dropout. Kept for callers that predate dropout.
  double forward_backward(const Eigen::Ref<const Eigen::MatrixXf>& x, Targets targets,
                          float scale);

  // Forward only, no dropout: loss sum and number of correct predictions.
  EvalSums evaluate(const Eigen::Ref<const Eigen::MatrixXf>& x, Targets targets) override;

  // Forward only, no dropout, exactly as evaluate computes it: the logits (outputs x
  // x.cols(), x.cols() <= max_batch()), before the head. Valid until the next call.
  Eigen::Ref<const Eigen::MatrixXf> logits(const Eigen::Ref<const Eigen::MatrixXf>& x) override;

 private:
  struct Layer {
    int in = 0;
    int out = 0;
    std::int64_t w_offset = 0;  // into params_/grads_; b follows W
    std::int64_t b_offset = 0;
  };

  // Fills activations_ for the first n columns; logits end in activations_.back(). With
  // `train`, also leaves in derivs_ what backward needs (see use_derivs_); `key` non-null
  // turns dropout on.
  void forward(const Eigen::Ref<const Eigen::MatrixXf>& x, int n, bool train,
               const BatchKey* key);
  // Bias + activation (+ dropout) of hidden layer l, in place on activations_[l] (which holds
  // W_l times the layer's input).
  void activate(int l, int n, bool train, const BatchKey* key);
  // Loss sum of the head over the logits; with `grad` also writes grad_scale * d(loss)/d(logits)
  // into deltas_.back() and its row sums (the output bias gradient) into colsum_. deltas_.back()
  // is scratch either way. Fills `eval`'s counts (correct, absolute errors) when non-null.
  double head_loss(int n, const Targets& targets, bool grad, float grad_scale, EvalSums* eval);
  float target_value(const Targets& t, int j) const;

  MlpShape shape_;
  int max_batch_;
  int grad_tail_;
  std::uint64_t dropout_seed_ = 0;
  std::vector<Layer> layers_;
  std::int64_t num_params_ = 0;
  Eigen::VectorXf params_;
  Eigen::VectorXf grads_;
  // activations_[l]: output of layer l (post-activation and dropout; logits for the last),
  // out_l x max_batch.
  std::vector<Eigen::MatrixXf> activations_;
  // deltas_[l]: d(loss)/d(pre-activation of layer l), scaled, out_l x max_batch.
  std::vector<Eigen::MatrixXf> deltas_;
  // derivs_[l] (hidden layers, allocated only for gelu or dropout): f'(z) times the dropout
  // multiplier, so backward is one product. Relu and tanh without dropout derive f' from the
  // activation instead, one buffer pass fewer.
  std::vector<Eigen::MatrixXf> derivs_;
  bool use_derivs_ = false;  // whether the last forward filled derivs_
  // Dropout multipliers of one layer, widest hidden x max_batch (only with dropout).
  Eigen::MatrixXf mask_;
  // Row sums of the current layer's delta (its bias gradient), widest layer long.
  Eigen::VectorXf colsum_;
  // Column maxima of the logits, max_batch long.
  Eigen::VectorXf colmax_;
};

}  // namespace trellis::worker
