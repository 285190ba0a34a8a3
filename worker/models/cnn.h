#pragma once
// Cnn: a float32 convolutional network for images (`model: cnn`), with the Model contract
// (model.h): one flat parameter buffer, one flat gradient buffer of the same layout plus a
// tail, samples as columns, every buffer allocated in the constructor.
//
// A sample is a column of C*H*W floats, channel-major then row-major (index c*H*W + y*W + x),
// which is how an IDX image file's H x W pixels already lie for C = 1. The layers come from
// the `layers` list (common/cnn_layers.h): conv (im2col + the project's gemm; stride 1, zero
// padding K/2), relu (fused into the layer before it), max/avg pooling (stride = window),
// dense; then a dense output layer over the classes and the softmax cross-entropy head.
// Parameters per layer, in list order: conv W (Cout x Cin*K*K, column-major; column
// (ci*K + dy)*K + dx) then b (Cout); dense W (out x in) then b (out).
//
// No dropout and nothing else random in training: a sample's gradient depends on the sample
// and the weights only, so any rank count sums the same per-sample gradients.

#include <cstdint>
#include <vector>

#include <Eigen/Core>

#include "common/cnn_layers.h"
#include "common/status.h"
#include "common/train_config.h"
#include "worker/models/model.h"

namespace trellis::worker {

struct CnnShape {
  int channels = 1;
  int height = 0;
  int width = 0;
  std::vector<CnnLayerSpec> layers;  // the hidden layers; the output layer is implied
  int classes = 0;
};

// Checks the cnn part of `config` (layers, no dropout) against data of `inputs` features,
// which must be a square single-channel image when `image_side` is 0 (else image_side^2 ==
// inputs), and `classes` >= 2. The error names the layer whose input it cannot take.
[[nodiscard]] Status cnn_shape_from_config(const TrainConfig& config, int inputs, int classes,
                                           int image_side, CnnShape* out);

class Cnn final : public Model {
 public:
  // `shape` must be valid (see cnn_shape_from_config); `max_batch` >= 1.
  Cnn(const CnnShape& shape, int max_batch, int grad_tail = 0);
  Cnn(const Cnn&) = delete;
  Cnn& operator=(const Cnn&) = delete;

  const CnnShape& shape() const { return shape_; }
  std::int64_t num_params() const override { return num_params_; }
  int max_batch() const override { return max_batch_; }
  int outputs() const override { return shape_.classes; }
  int inputs() const override { return shape_.channels * shape_.height * shape_.width; }
  bool takes_labels() const override { return true; }

  // He-normal weights (fan-in) for the hidden layers, Glorot-normal for the output layer, zero
  // biases; same NormalSource as the Mlp, filled in buffer order.
  void init(std::uint64_t seed) override;

  Eigen::VectorXf& params() override { return params_; }
  Eigen::VectorXf& grad_buffer() override { return grads_; }
  int grad_tail() const override { return grad_tail_; }

  double forward_backward(const Eigen::Ref<const Eigen::MatrixXf>& x, Targets targets,
                          const BatchKey& key, float scale,
                          GradMode mode = GradMode::kAccumulate,
                          const GradReady& on_grad_ready = {}) override;
  // {0}: the gradient is final only at the end (its layers accumulate per sample).
  std::vector<std::size_t> grad_ready_offsets() const override { return {0}; }
  EvalSums evaluate(const Eigen::Ref<const Eigen::MatrixXf>& x, Targets targets) override;
  Eigen::Ref<const Eigen::MatrixXf> logits(const Eigen::Ref<const Eigen::MatrixXf>& x) override;

  // The built layers, for export: the hidden ones in list order (relu folded in), then the
  // output dense layer.
  struct Layer {
    CnnLayerKind kind = CnnLayerKind::kDense;
    int cin = 0, hin = 0, win = 0;     // input dims (dense: cin = in features, hin = win = 1)
    int cout = 0, hout = 0, wout = 0;  // output dims
    int k = 0;                         // conv kernel or pool window side
    int pad = 0;                       // conv zero padding
    bool relu = false;                 // relu applied to this layer's output
    std::int64_t w_offset = 0;         // into params_/grads_ (conv, dense)
    std::int64_t b_offset = 0;
    int in_size() const { return cin * hin * win; }
    int out_size() const { return cout * hout * wout; }
  };
  const std::vector<Layer>& layers() const { return layers_; }

 private:
  void forward(const Eigen::Ref<const Eigen::MatrixXf>& x, int n);
  // Input of layer l for sample j, and its column stride.
  const float* input(const Eigen::Ref<const Eigen::MatrixXf>& x, int l, int j) const;
  // Fills p_ (out pixels x Cin*K*K) from one sample's input of conv layer `y`.
  void im2col(const Layer& y, const float* in);
  // Adds dp_ back into one sample's input gradient `din` (zeroed by the caller).
  void col2im(const Layer& y, float* din) const;
  void conv_forward(const Layer& y, const float* in, float* out);
  void pool_forward(int l, const Layer& y, const float* in, float* out, int j);
  // Softmax cross-entropy over the logits of n samples; with `grad`, writes grad_scale *
  // d(loss)/d(logits) into delta_[0]. Counts correct argmaxes into `correct`.
  double head(int n, const Targets& targets, bool grad, float grad_scale, std::int64_t* correct);

  CnnShape shape_;
  int max_batch_;
  int grad_tail_;
  std::vector<Layer> layers_;
  std::int64_t num_params_ = 0;
  Eigen::VectorXf params_;
  Eigen::VectorXf grads_;
  std::vector<Eigen::MatrixXf> acts_;  // acts_[l]: output of layer l, out_size x max_batch
  // Max pooling: the input index of each output's maximum, per pooling layer (else empty).
  std::vector<Eigen::Matrix<std::int32_t, Eigen::Dynamic, Eigen::Dynamic>> argmax_;
  Eigen::MatrixXf delta_[2];  // ping-pong d(loss)/d(layer output), widest x max_batch
  Eigen::MatrixXf p_;         // im2col of one sample, widest conv
  Eigen::MatrixXf dp_;        // its gradient
};

}  // namespace trellis::worker
