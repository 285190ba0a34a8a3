#pragma once
// Mlp: a float32 multilayer perceptron with a softmax cross-entropy head.
//
// Samples are columns (features x batch); layer l maps in_l -> out_l with W_l (out_l x in_l)
// and b_l. All parameters live in ONE contiguous buffer (W_0, b_0, W_1, b_1, ...; each W
// column-major) and the gradient in another of the same layout, so a data-parallel trainer
// reduces the whole gradient with one collective and an optimizer updates one flat vector.
// Every buffer a step needs is allocated in the constructor for batches up to `max_batch`;
// forward_backward and evaluate never allocate.

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include <Eigen/Core>

#include "common/status.h"
#include "common/train_config.h"

namespace trellis::worker {

enum class Activation { kRelu, kTanh };

struct MlpShape {
  int inputs = 0;
  int hidden_layers = 0;  // 0: softmax regression
  int hidden_units = 0;
  int classes = 0;
  Activation activation = Activation::kRelu;
};

// Checks the model part of `config` and fills in the shape for data of `inputs` features and
// `classes` classes.
[[nodiscard]] Status mlp_shape_from_config(const TrainConfig& config, int inputs, int classes,
                                           MlpShape* out);

// Loss and accuracy sums of a batch, for evaluation; callers reduce them over ranks.
struct EvalSums {
  double loss_sum = 0;
  std::int64_t correct = 0;
};

class Mlp {
 public:
  // `shape` must be valid (see mlp_shape_from_config); `max_batch` >= 1. `grad_tail` extra
  // floats follow the gradient in its buffer, so callers can reduce side values (the loss) in
  // the same collective as the gradient.
  Mlp(const MlpShape& shape, int max_batch, int grad_tail = 0);
  Mlp(const Mlp&) = delete;
  Mlp& operator=(const Mlp&) = delete;

  const MlpShape& shape() const { return shape_; }
  int max_batch() const { return max_batch_; }
  int layers() const { return static_cast<int>(layers_.size()); }
  std::int64_t num_params() const { return num_params_; }

  // He-normal weights for relu layers, Glorot-normal for tanh layers and the softmax layer,
  // zero biases. Normals come from our own Box-Muller over std::mt19937_64, so the same seed
  // gives the same weights with any standard library.
  void init(std::uint64_t seed);

  Eigen::VectorXf& params() { return params_; }
  const Eigen::VectorXf& params() const { return params_; }
  // num_params() gradient floats, then grad_tail() floats the model never touches.
  Eigen::VectorXf& grad_buffer() { return grads_; }
  int grad_tail() const { return grad_tail_; }
  // The gradient part of grad_buffer().
  Eigen::Map<Eigen::VectorXf> grads() { return {grads_.data(), num_params_}; }

  // Views of layer l's parameters and gradients inside the flat buffers.
  Eigen::Map<Eigen::MatrixXf> weights(int l);
  Eigen::Map<Eigen::VectorXf> bias(int l);
  Eigen::Map<Eigen::MatrixXf> weight_grads(int l);
  Eigen::Map<Eigen::VectorXf> bias_grads(int l);

  // Forward and backward over a batch of x.cols() <= max_batch() samples with labels in
  // [0, classes). Adds `scale` times the SUM over samples of the per-sample cross-entropy
  // gradient to grads() (callers zero it first; a trainer passes 1/global_batch so the reduced
  // sum is the mean gradient of the global batch). Returns the unscaled loss sum.
  double forward_backward(const Eigen::Ref<const Eigen::MatrixXf>& x,
                          std::span<const std::int32_t> labels, float scale);

  // Forward only: loss sum and number of correct argmax predictions.
  EvalSums evaluate(const Eigen::Ref<const Eigen::MatrixXf>& x,
                    std::span<const std::int32_t> labels);

 private:
  struct Layer {
    int in = 0;
    int out = 0;
    std::int64_t w_offset = 0;  // into params_/grads_; b follows W
    std::int64_t b_offset = 0;
  };

  // Fills activations_ for the first n columns; returns nothing, logits end in activations_.back().
  void forward(const Eigen::Ref<const Eigen::MatrixXf>& x, int n);

  MlpShape shape_;
  int max_batch_;
  int grad_tail_;
  std::vector<Layer> layers_;
  std::int64_t num_params_ = 0;
  Eigen::VectorXf params_;
  Eigen::VectorXf grads_;
  // activations_[l]: output of layer l (post-activation; logits for the last), out_l x max_batch.
  std::vector<Eigen::MatrixXf> activations_;
  // deltas_[l]: d(loss)/d(pre-activation of layer l), scaled, out_l x max_batch.
  std::vector<Eigen::MatrixXf> deltas_;
};

}  // namespace trellis::worker
