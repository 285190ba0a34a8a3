#include "worker/models/mlp.h"

#include <algorithm>
#include <cassert>
#include <cmath>
#include <cstddef>
#include <random>

#include "common/seed.h"
#include "worker/kernels/elementwise.h"
#include "worker/kernels/gemm.h"
#include "worker/models/normal_source.h"

namespace trellis::worker {
namespace {

// Mixed into the init seed so the dropout stream is independent of the weights.
constexpr std::uint64_t kDropoutSeedTag = 0x64726f70;  // "drop"
// gelu, tanh form: 0.5 x (1 + tanh(kGeluC (x + kGeluK x^3))).
constexpr float kGeluC = 0.7978845608028654f;  // sqrt(2 / pi)
constexpr float kGeluK = 0.044715f;

// gelu in the tanh form, as array expressions so each use fuses into one pass:
// t = tanh(c (z + k z^3)), gelu(z) = 0.5 z (1 + t), gelu'(z) = 0.5 (1 + t) + 0.5 z (1 - t^2) c
// (1 + 3 k z^2).
template <typename Z>
auto gelu_t(const Z& z) {
  return (kGeluC * (z + kGeluK * z.cube())).tanh();
}
template <typename Z, typename T>
auto gelu_value(const Z& z, const T& t) {
  return 0.5f * z * (1.0f + t);
}
template <typename Z, typename T>
auto gelu_grad(const Z& z, const T& t) {
  return 0.5f * (1.0f + t) +
         0.5f * z * (1.0f - t.square()) * kGeluC * (1.0f + 3.0f * kGeluK * z.square());
}

// Stable log(1 + exp(z)).
double softplus(double z) { return std::max(z, 0.0) + std::log1p(std::exp(-std::abs(z))); }

// Stable 1 / (1 + exp(-z)).
float sigmoid(float z) {
  if (z >= 0) return 1.0f / (1.0f + std::exp(-z));
  const float e = std::exp(z);
  return e / (1.0f + e);
}

// The GEMM library and kernel are chosen at run time (worker/kernels/gemm.h).
using kernels::gemm;

// Leading dimension of a column-major block for BLAS (>= 1 even when empty).
template <typename M>
int ld(const M& m) {
  return static_cast<int>(std::max<Eigen::Index>(1, m.outerStride()));
}

}  // namespace

void dropout_mask(std::uint64_t seed, std::int64_t step, std::int64_t row, int layer, float p,
                  Eigen::Ref<Eigen::VectorXf> out) {
  const std::uint64_t key =
      derive_seed(seed, {static_cast<std::uint64_t>(step), static_cast<std::uint64_t>(row),
                         static_cast<std::uint64_t>(layer)});
  // Keep a unit when its 32-bit uniform is >= p * 2^32; one 64-bit hash serves two units.
  const auto threshold = static_cast<std::uint64_t>(std::ldexp(static_cast<double>(p), 32));
  const float kept = 1.0f / (1.0f - p);
  const Eigen::Index n = out.size();
  for (Eigen::Index i = 0; i < n; i += 2) {
    const std::uint64_t h = mix64(key + static_cast<std::uint64_t>(i));
    out[i] = (h & 0xffffffffu) >= threshold ? kept : 0.0f;
    if (i + 1 < n) out[i + 1] = (h >> 32) >= threshold ? kept : 0.0f;
  }
}

Status mlp_shape_from_config(const TrainConfig& config, int inputs, int classes, MlpShape* out) {
  MlpShape shape;
  if (config.model == "linear") {
    shape.head = Head::kSquaredError;
    shape.outputs = 1;
  } else if (config.model == "logistic") {
    if (classes != 2)
      return Status::Error("model logistic needs 2 classes (targets 0/1), the data has " +
                           std::to_string(classes));
    shape.head = Head::kSigmoidBce;
    shape.outputs = 1;
  } else if (config.model == "softmax" || config.model == "mlp") {
    if (classes < 2)
      return Status::Error("model " + config.model + " needs >= 2 classes, the data has " +
                           std::to_string(classes));
    shape.head = Head::kSoftmaxCe;
    shape.outputs = classes;
  } else {
    return Status::Error("unknown model '" + config.model + "' (linear|logistic|softmax|mlp)");
  }
  if (config.activation == "relu") {
    shape.activation = Activation::kRelu;
  } else if (config.activation == "tanh") {
    shape.activation = Activation::kTanh;
  } else if (config.activation == "gelu") {
    shape.activation = Activation::kGelu;
  } else {
    return Status::Error("unknown activation '" + config.activation + "' (relu|tanh|gelu)");
  }
  if (config.model == "mlp" && !config.has_hidden) {
    if (config.hidden_layers < 0) return Status::Error("hidden_layers must be >= 0");
    if (config.hidden_layers > 0 && config.hidden_units < 1)
      return Status::Error("hidden_units must be >= 1");
  }
  shape.hidden = hidden_sizes(config);
  for (int units : shape.hidden)
    if (units < 1) return Status::Error("hidden layer sizes must be >= 1");
  if (!(config.dropout >= 0 && config.dropout < 1))
    return Status::Error("dropout must be in [0, 1), got " + std::to_string(config.dropout));
  if (inputs < 1) return Status::Error("model needs >= 1 input feature");
  shape.inputs = inputs;
  shape.dropout = static_cast<float>(config.dropout);
  *out = shape;
  return Status::Ok();
}

Mlp::Mlp(const MlpShape& shape, int max_batch, int grad_tail)
    : shape_(shape), max_batch_(max_batch), grad_tail_(grad_tail) {
  assert(max_batch >= 1 && grad_tail >= 0 && shape.outputs >= 1);
  assert(shape.head == Head::kSoftmaxCe || shape.outputs == 1);
  const int hidden = static_cast<int>(shape.hidden.size());
  const bool need_derivs = shape.dropout > 0 || shape.activation == Activation::kGelu;
  int in = shape.inputs;
  int widest = 0;
  for (int l = 0; l <= hidden; ++l) {
    Layer layer;
    layer.in = in;
    layer.out = l < hidden ? shape.hidden[static_cast<std::size_t>(l)] : shape.outputs;
    layer.w_offset = num_params_;
    layer.b_offset = num_params_ + static_cast<std::int64_t>(layer.in) * layer.out;
    num_params_ = layer.b_offset + layer.out;
    layers_.push_back(layer);
    activations_.emplace_back(layer.out, max_batch);
    deltas_.emplace_back(layer.out, max_batch);
    if (l < hidden && need_derivs) derivs_.emplace_back(layer.out, max_batch);
    if (l < hidden) widest = std::max(widest, layer.out);
    in = layer.out;
  }
  if (shape.dropout > 0) mask_.resize(widest, max_batch);
  colsum_.resize(std::max(widest, shape.outputs));
  colmax_.resize(max_batch);
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
    // The output layer feeds the head, not the activation, so it gets Glorot like tanh layers.
    const bool he = shape_.activation != Activation::kTanh && l + 1 < layers();
    const double stddev = he ? std::sqrt(2.0 / y.in) : std::sqrt(2.0 / (y.in + y.out));
    auto w = weights(l);
    // Column-major fill order is part of the seed -> weights contract; keep it stable.
    for (Eigen::Index i = 0; i < w.size(); ++i)
      w.data()[i] = static_cast<float>(stddev * normal.next());
  }
  dropout_seed_ = derive_seed(seed, {kDropoutSeedTag});
}

void Mlp::activate(int l, int n, bool train, const BatchKey* key) {
  auto a = activations_[l].leftCols(n);
  const auto b = bias(l);
  const bool masked = key != nullptr && shape_.dropout > 0;
  use_derivs_ = train && (masked || shape_.activation == Activation::kGelu);
  if (!use_derivs_) {
    // One fused pass: bias and activation together (kernels/elementwise.h, on the CPU's
    // vector path; gelu stays an Eigen expression compiled for the baseline).
    switch (shape_.activation) {
      case Activation::kRelu:
        kernels::bias_relu(a.data(), ld(activations_[l]), b.data(), layers_[l].out, n);
        break;
      case Activation::kTanh:
        kernels::bias_tanh(a.data(), ld(activations_[l]), b.data(), layers_[l].out, n);
        break;
      case Activation::kGelu:
        for (int j = 0; j < n; ++j) {
          auto z = a.col(j).array();
          z += b.array();
          z = gelu_value(z, gelu_t(z));
        }
        break;
    }
    return;
  }

  a.colwise() += b;
  auto d = derivs_[l].leftCols(n).array();
  auto z = a.array();
  if (masked) {
    auto m = mask_.topLeftCorner(a.rows(), n);
    for (int j = 0; j < n; ++j)
      dropout_mask(dropout_seed_, key->step, key->rows[static_cast<std::size_t>(j)], l,
                   shape_.dropout, m.col(j));
    const auto ma = m.array();
    switch (shape_.activation) {
      case Activation::kRelu:
        d = (z > 0.0f).select(ma, 0.0f);
        z = z.cwiseMax(0.0f) * ma;
        break;
      case Activation::kTanh:
        z = z.tanh();
        d = (1.0f - z.square()) * ma;
        z *= ma;
        break;
      case Activation::kGelu: {
        // f'(z) first (it needs z), then f(z) in place; tanh is evaluated twice, which costs
        // less than a third buffer pass.
        const auto t = gelu_t(z);
        d = ma * gelu_grad(z, t);
        z = ma * gelu_value(z, t);
        break;
      }
    }
    return;
  }
  // Unmasked gelu in training: f'(z) first (it needs z), then f(z) in place.
  const auto t = gelu_t(z);
  d = gelu_grad(z, t);
  z = gelu_value(z, t);
}

void Mlp::forward(const Eigen::Ref<const Eigen::MatrixXf>& x, int n, bool train,
                  const BatchKey* key) {
  assert(n <= max_batch_ && x.rows() == shape_.inputs);
  use_derivs_ = false;
  for (int l = 0; l < layers(); ++l) {
    const Layer& y = layers_[l];
    auto a = activations_[l].leftCols(n);
    const float* in = l == 0 ? x.data() : activations_[l - 1].data();
    const int ld_in = l == 0 ? ld(x) : ld(activations_[l - 1]);
    gemm(false, false, y.out, n, y.in, params_.data() + y.w_offset, std::max(1, y.out), in,
         ld_in, 0.0f, a.data(), ld(activations_[l]));
    if (l + 1 == layers()) {
      kernels::bias_add(a.data(), ld(activations_[l]), bias(l).data(), y.out, n);  // linear
    } else {
      activate(l, n, train, key);
    }
  }
}

float Mlp::target_value(const Targets& t, int j) const {
  const auto i = static_cast<std::size_t>(j);
  return t.values.empty() ? static_cast<float>(t.labels[i]) : t.values[i];
}

double Mlp::head_loss(int n, const Targets& targets, bool grad, float grad_scale,
                      EvalSums* eval) {
  const auto logits = activations_.back().leftCols(n);
  auto dz = deltas_.back().leftCols(n);
  double loss_sum = 0;
  double abs_error_sum = 0;
  std::int64_t right = 0;
  const int k = shape_.outputs;
  auto db = colsum_.head(k);
  if (grad) db.setZero();
  switch (shape_.head) {
    case Head::kSoftmaxCe: {
      assert(targets.labels.size() == static_cast<std::size_t>(n));
      // Over the whole k x n block at once (a column is only k floats, too short for a loop of
      // its own to vectorise): column max (and argmax), z - max, exp of the block, then per
      // column sum, loss and scaling. Shifted by the max so exp never overflows. Training and
      // evaluation share this path, so they report the same loss.
      const float* z = logits.data();
      float* e = dz.data();
      for (int j = 0; j < n; ++j) {
        const float* zj = z + static_cast<std::ptrdiff_t>(j) * k;
        float m = zj[0];
        int argmax = 0;
        for (int i = 1; i < k; ++i)
          if (zj[i] > m) {
            m = zj[i];
            argmax = i;
          }
        colmax_[j] = m;
        float* ej = e + static_cast<std::ptrdiff_t>(j) * k;
        for (int i = 0; i < k; ++i) ej[i] = zj[i] - m;
        if (argmax == targets.labels[static_cast<std::size_t>(j)]) ++right;
      }
      auto block = Eigen::Map<Eigen::ArrayXf>(e, static_cast<Eigen::Index>(k) * n);
      block = block.exp();
      for (int j = 0; j < n; ++j) {
        const int y = targets.labels[static_cast<std::size_t>(j)];
        assert(y >= 0 && y < shape_.outputs);
        auto d = dz.col(j);
        const float sum = d.sum();
        loss_sum += static_cast<double>(std::log(sum) + colmax_[j] - logits(y, j));
        if (grad) {
          d *= grad_scale / sum;
          d(y) -= grad_scale;
          db += d;
        }
      }
      break;
    }
    case Head::kSigmoidBce:
      // loss = log(1 + e^z) - y z, d/dz = sigmoid(z) - y.
      for (int j = 0; j < n; ++j) {
        const float z = logits(0, j);
        const float y = target_value(targets, j);
        assert(y == 0.0f || y == 1.0f);
        loss_sum += softplus(z) - static_cast<double>(y) * z;
        if ((z > 0.0f) == (y == 1.0f)) ++right;
        if (grad) {
          dz(0, j) = grad_scale * (sigmoid(z) - y);
          db[0] += dz(0, j);
        }
      }
      break;
    case Head::kSquaredError:
      for (int j = 0; j < n; ++j) {
        const float r = logits(0, j) - target_value(targets, j);
        loss_sum += static_cast<double>(r) * r;
        abs_error_sum += std::abs(static_cast<double>(r));
        if (std::abs(r) < 0.5f) ++right;
        if (grad) {
          dz(0, j) = grad_scale * 2.0f * r;
          db[0] += dz(0, j);
        }
      }
      break;
  }
  if (eval != nullptr) {
    eval->correct = right;
    eval->abs_error_sum = abs_error_sum;
  }
  return loss_sum;
}

std::vector<std::size_t> Mlp::grad_ready_offsets() const {
  std::vector<std::size_t> offsets;
  for (const Layer& y : layers_) offsets.push_back(static_cast<std::size_t>(y.w_offset));
  return offsets;
}

double Mlp::forward_backward(const Eigen::Ref<const Eigen::MatrixXf>& x, Targets targets,
                             float scale) {
  return forward_backward(x, targets, BatchKey{}, scale);
}

double Mlp::forward_backward(const Eigen::Ref<const Eigen::MatrixXf>& x, Targets targets,
                             const BatchKey& key, float scale, GradMode mode,
                             const GradReady& on_grad_ready) {
  const int n = static_cast<int>(x.cols());
  assert(targets.size() == static_cast<std::size_t>(n));
  const bool dropout = shape_.dropout > 0 && !key.rows.empty();
  assert(!dropout || key.rows.size() == static_cast<std::size_t>(n));
  const bool assign = mode == GradMode::kAssign;
  forward(x, n, /*train=*/true, dropout ? &key : nullptr);
  const int last = layers() - 1;
  // Also leaves the output layer's bias gradient in colsum_.
  const double loss_sum = head_loss(n, targets, /*grad=*/true, scale, nullptr);

  // Per layer: dW = delta * input^T straight into grads() (sgemm beta 0 or 1), db from colsum_,
  // then the previous layer's delta = W^T delta (beta 0) and, in one pass a column at a time,
  // times f'(z) and summed into colsum_ (that layer's db).
  for (int l = last; l >= 0; --l) {
    const Layer& y = layers_[l];
    auto d = deltas_[l].leftCols(n);
    const float* in = l == 0 ? x.data() : activations_[l - 1].data();
    const int ld_in = l == 0 ? ld(x) : ld(activations_[l - 1]);
    gemm(false, true, y.out, y.in, n, d.data(), ld(deltas_[l]), in, ld_in, assign ? 0.0f : 1.0f,
         grads_.data() + y.w_offset, std::max(1, y.out));
    if (assign) {
      bias_grads(l) = colsum_.head(y.out);
    } else {
      bias_grads(l) += colsum_.head(y.out);
    }
    if (on_grad_ready) on_grad_ready(y.w_offset);
    if (l == 0) break;  // no gradient w.r.t. the input
    auto prev = deltas_[l - 1].leftCols(n);
    gemm(true, false, y.in, n, y.out, params_.data() + y.w_offset, std::max(1, y.out), d.data(),
         ld(deltas_[l]), 0.0f, prev.data(), ld(deltas_[l - 1]));
    float* db = colsum_.data();
    if (use_derivs_) {
      kernels::mul_backward(prev.data(), ld(deltas_[l - 1]), derivs_[l - 1].data(),
                            ld(derivs_[l - 1]), y.in, n, db);
    } else if (shape_.activation == Activation::kRelu) {
      kernels::relu_backward(prev.data(), ld(deltas_[l - 1]), activations_[l - 1].data(),
                             ld(activations_[l - 1]), y.in, n, db);
    } else {
      kernels::tanh_backward(prev.data(), ld(deltas_[l - 1]), activations_[l - 1].data(),
                             ld(activations_[l - 1]), y.in, n, db);
    }
  }
  return loss_sum;
}

EvalSums Mlp::evaluate(const Eigen::Ref<const Eigen::MatrixXf>& x, Targets targets) {
  const int n = static_cast<int>(x.cols());
  assert(targets.size() == static_cast<std::size_t>(n));
  forward(x, n, /*train=*/false, nullptr);
  EvalSums sums;
  sums.loss_sum = head_loss(n, targets, /*grad=*/false, 0.0f, &sums);
  return sums;
}

Eigen::Ref<const Eigen::MatrixXf> Mlp::logits(const Eigen::Ref<const Eigen::MatrixXf>& x) {
  const int n = static_cast<int>(x.cols());
  forward(x, n, /*train=*/false, nullptr);
  const Eigen::MatrixXf& last = activations_.back();
  return last.leftCols(n);
}

}  // namespace trellis::worker
