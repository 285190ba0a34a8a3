#include "worker/models/mlp.h"

#include <cassert>
#include <cmath>
#include <random>

namespace trellis::worker {
namespace {

constexpr double kTwoPi = 6.283185307179586476925286766559;

// Standard normals by Box-Muller over our own uniforms: std::normal_distribution's algorithm
// is unspecified and differs between standard libraries.
class NormalSource {
 public:
  explicit NormalSource(std::uint64_t seed) : rng_(seed) {}
  double next() {
    if (has_spare_) {
      has_spare_ = false;
      return spare_;
    }
    const double u1 = uniform_open(), u2 = uniform_open();
    const double r = std::sqrt(-2.0 * std::log(u1));
    spare_ = r * std::sin(kTwoPi * u2);
    has_spare_ = true;
    return r * std::cos(kTwoPi * u2);
  }

 private:
  // Uniform in (0, 1): the top 53 bits, shifted half a step so log(u) is always finite.
  double uniform_open() { return (static_cast<double>(rng_() >> 11) + 0.5) * 0x1.0p-53; }

  std::mt19937_64 rng_;
  bool has_spare_ = false;
  double spare_ = 0;
};

}  // namespace

Status mlp_shape_from_config(const TrainConfig& config, int inputs, int classes, MlpShape* out) {
  if (config.model != "mlp") return Status::Error("unknown model '" + config.model + "'");
  MlpShape shape;
  if (config.activation == "relu") {
    shape.activation = Activation::kRelu;
  } else if (config.activation == "tanh") {
    shape.activation = Activation::kTanh;
  } else {
    return Status::Error("unknown activation '" + config.activation + "' (relu|tanh)");
  }
  if (config.hidden_layers < 0) return Status::Error("hidden_layers must be >= 0");
  if (config.hidden_layers > 0 && config.hidden_units < 1)
    return Status::Error("hidden_units must be >= 1");
  if (inputs < 1 || classes < 2) return Status::Error("model needs >= 1 input and >= 2 classes");
  shape.inputs = inputs;
  shape.hidden_layers = config.hidden_layers;
  shape.hidden_units = config.hidden_units;
  shape.classes = classes;
  *out = shape;
  return Status::Ok();
}

Mlp::Mlp(const MlpShape& shape, int max_batch, int grad_tail)
    : shape_(shape), max_batch_(max_batch), grad_tail_(grad_tail) {
  assert(max_batch >= 1 && grad_tail >= 0);
  int in = shape.inputs;
  for (int l = 0; l <= shape.hidden_layers; ++l) {
    Layer layer;
    layer.in = in;
    layer.out = l < shape.hidden_layers ? shape.hidden_units : shape.classes;
    layer.w_offset = num_params_;
    layer.b_offset = num_params_ + static_cast<std::int64_t>(layer.in) * layer.out;
    num_params_ = layer.b_offset + layer.out;
    layers_.push_back(layer);
    activations_.emplace_back(layer.out, max_batch);
    deltas_.emplace_back(layer.out, max_batch);
    in = layer.out;
  }
  params_ = Eigen::VectorXf::Zero(num_params_);
  grads_ = Eigen::VectorXf::Zero(num_params_ + grad_tail);
}

Eigen::Map<Eigen::MatrixXf> Mlp::weights(int l) {
  const Layer& y = layers_[l];
  return {params_.data() + y.w_offset, y.out, y.in};
}
Eigen::Map<Eigen::VectorXf> Mlp::bias(int l) {
  const Layer& y = layers_[l];
  return {params_.data() + y.b_offset, y.out};
}
Eigen::Map<Eigen::MatrixXf> Mlp::weight_grads(int l) {
  const Layer& y = layers_[l];
  return {grads_.data() + y.w_offset, y.out, y.in};
}
Eigen::Map<Eigen::VectorXf> Mlp::bias_grads(int l) {
  const Layer& y = layers_[l];
  return {grads_.data() + y.b_offset, y.out};
}

void Mlp::init(std::uint64_t seed) {
  NormalSource normal(seed);
  params_.setZero();
  for (int l = 0; l < layers(); ++l) {
    const Layer& y = layers_[l];
    // The last layer feeds softmax, not the activation, so it gets Glorot like tanh layers.
    const bool he = shape_.activation == Activation::kRelu && l + 1 < layers();
    const double stddev = he ? std::sqrt(2.0 / y.in) : std::sqrt(2.0 / (y.in + y.out));
    auto w = weights(l);
    // Column-major fill order is part of the seed -> weights contract; keep it stable.
    for (Eigen::Index i = 0; i < w.size(); ++i) w.data()[i] = static_cast<float>(stddev * normal.next());
  }
}

void Mlp::forward(const Eigen::Ref<const Eigen::MatrixXf>& x, int n) {
  assert(n <= max_batch_ && x.rows() == shape_.inputs);
  for (int l = 0; l < layers(); ++l) {
    auto a = activations_[l].leftCols(n);
    if (l == 0) {
      a.noalias() = weights(l) * x.leftCols(n);
    } else {
      a.noalias() = weights(l) * activations_[l - 1].leftCols(n);
    }
    a.colwise() += bias(l);
    if (l + 1 == layers()) break;  // logits stay linear
    if (shape_.activation == Activation::kRelu) {
      a = a.cwiseMax(0.0f);
    } else {
      a = a.array().tanh();
    }
  }
}

double Mlp::forward_backward(const Eigen::Ref<const Eigen::MatrixXf>& x,
                             std::span<const std::int32_t> labels, float scale) {
  const int n = static_cast<int>(x.cols());
  assert(static_cast<std::size_t>(n) == labels.size());
  forward(x, n);
  const int last = layers() - 1;

  // Softmax cross-entropy per column, shifted by the column max so exp never overflows.
  double loss_sum = 0;
  auto logits = activations_[last].leftCols(n);
  auto dz = deltas_[last].leftCols(n);
  for (int j = 0; j < n; ++j) {
    const auto z = logits.col(j);
    const float m = z.maxCoeff();
    auto d = dz.col(j);
    d = (z.array() - m).exp();
    const float sum = d.sum();
    const int y = labels[j];
    loss_sum += static_cast<double>(std::log(sum) + m - z(y));
    d *= scale / sum;
    d(y) -= scale;
  }

  for (int l = last; l >= 0; --l) {
    auto d = deltas_[l].leftCols(n);
    if (l == 0) {
      weight_grads(l).noalias() += d * x.leftCols(n).transpose();
    } else {
      weight_grads(l).noalias() += d * activations_[l - 1].leftCols(n).transpose();
    }
    bias_grads(l) += d.rowwise().sum();
    if (l == 0) break;  // no gradient w.r.t. the input
    auto prev = deltas_[l - 1].leftCols(n);
    prev.noalias() = weights(l).transpose() * d;
    const auto a = activations_[l - 1].leftCols(n).array();
    if (shape_.activation == Activation::kRelu) {
      prev.array() *= (a > 0.0f).cast<float>();
    } else {
      prev.array() *= 1.0f - a.square();
    }
  }
  return loss_sum;
}

EvalSums Mlp::evaluate(const Eigen::Ref<const Eigen::MatrixXf>& x,
                       std::span<const std::int32_t> labels) {
  const int n = static_cast<int>(x.cols());
  assert(static_cast<std::size_t>(n) == labels.size());
  forward(x, n);
  EvalSums sums;
  const auto logits = activations_.back().leftCols(n);
  for (int j = 0; j < n; ++j) {
    const auto z = logits.col(j);
    Eigen::Index argmax = 0;
    const float m = z.maxCoeff(&argmax);
    const int y = labels[j];
    sums.loss_sum += static_cast<double>(std::log((z.array() - m).exp().sum()) + m - z(y));
    if (argmax == y) ++sums.correct;
  }
  return sums;
}

}  // namespace trellis::worker
