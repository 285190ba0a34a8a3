#include "worker/optimizer.h"

#include <cmath>

namespace trellis::worker {
namespace {

class Sgd final : public Optimizer {
 public:
  Sgd(const OptimizerOptions& o, std::int64_t n) : Optimizer(o, n) {
    if (o.momentum > 0) velocity_ = Eigen::VectorXf::Zero(n);
  }
  using Optimizer::step;

  void step(Eigen::Ref<Eigen::VectorXf> params, const Eigen::Ref<const Eigen::VectorXf>& grads,
            float lr) override {
    const float clip = clip_factor(grads);
    const OptimizerOptions& o = options_;
    const auto g = clip * grads.array() + o.weight_decay * params.array();
    if (o.momentum > 0) {
      velocity_.array() = o.momentum * velocity_.array() + g;
      if (o.nesterov) {
        params.array() -= lr * (g + o.momentum * velocity_.array());
      } else {
        params -= lr * velocity_;
      }
    } else {
      params.array() -= lr * g;
    }
    ++steps_;
  }

  void save_state(OptimizerState* out) const override {
    out->kind = "sgd";
    out->steps = steps_;
    out->buffers.clear();
    if (velocity_.size() > 0) out->buffers.push_back(velocity_);
  }
  Status restore_state(const OptimizerState& state) override {
    std::vector<Eigen::VectorXf*> into;
    if (velocity_.size() > 0) into.push_back(&velocity_);
    return restore_buffers(state, "sgd", std::move(into));
  }

 private:
  Eigen::VectorXf velocity_;
};

// Adam, and AdamW when `decoupled`.
class Adam final : public Optimizer {
 public:
  Adam(const OptimizerOptions& o, std::int64_t n, bool decoupled)
      : Optimizer(o, n),
        decoupled_(decoupled),
        m_(Eigen::VectorXf::Zero(n)),
        v_(Eigen::VectorXf::Zero(n)) {}
  using Optimizer::step;

  void step(Eigen::Ref<Eigen::VectorXf> params, const Eigen::Ref<const Eigen::VectorXf>& grads,
            float lr) override {
    ++steps_;
    const float clip = clip_factor(grads);
    const OptimizerOptions& o = options_;
    const float l2 = decoupled_ ? 0.0f : o.weight_decay;
    auto moments = [&](const auto& g) {
      m_.array() = o.beta1 * m_.array() + (1.0f - o.beta1) * g;
      v_.array() = o.beta2 * v_.array() + (1.0f - o.beta2) * g.square();
    };
    // The common case skips two multiplies per element of a memory-bound pass.
    if (clip == 1.0f && l2 == 0.0f) {
      moments(grads.array());
    } else {
      moments(clip * grads.array() + l2 * params.array());
    }
    // Bias corrections in double: beta^t underflows gracefully and 1 - beta2^t is tiny early on.
    const auto t = static_cast<double>(steps_);
    const float c1 = static_cast<float>(1.0 / (1.0 - std::pow(double{o.beta1}, t)));
    const float c2 = static_cast<float>(1.0 / (1.0 - std::pow(double{o.beta2}, t)));
    const auto update = lr * (m_.array() * c1) / ((v_.array() * c2).sqrt() + o.epsilon);
    if (decoupled_ && o.weight_decay > 0) {
      const float keep = 1.0f - lr * o.weight_decay;
      params.array() = params.array() * keep - update;
    } else {
      params.array() -= update;
    }
  }

  void save_state(OptimizerState* out) const override {
    out->kind = kind();
    out->steps = steps_;
    out->buffers = {m_, v_};
  }
  Status restore_state(const OptimizerState& state) override {
    return restore_buffers(state, kind(), {&m_, &v_});
  }

 private:
  const char* kind() const { return decoupled_ ? "adamw" : "adam"; }

  bool decoupled_;
  Eigen::VectorXf m_;
  Eigen::VectorXf v_;
};

}  // namespace

float Optimizer::clip_factor(const Eigen::Ref<const Eigen::VectorXf>& grads) {
  if (!(options_.grad_clip > 0)) return 1.0f;
  // Double accumulation: a float sum of ~1e6 squares drifts in the low bits, and the norm
  // must be the same on every rank anyway (it is: same input, same order).
  last_grad_norm_ = std::sqrt(grads.cast<double>().squaredNorm());
  if (!(last_grad_norm_ > options_.grad_clip)) return 1.0f;
  return static_cast<float>(double{options_.grad_clip} / last_grad_norm_);
}

Status Optimizer::restore_buffers(const OptimizerState& state, const char* kind,
                                  std::vector<Eigen::VectorXf*> into) {
  if (state.kind != kind)
    return Status::Error("optimizer state is for '" + state.kind + "', this optimizer is '" +
                         kind + "'");
  if (state.steps < 0) return Status::Error("optimizer state has a negative step count");
  if (state.buffers.size() != into.size())
    return Status::Error("optimizer state has " + std::to_string(state.buffers.size()) +
                         " buffers, expected " + std::to_string(into.size()));
  for (const auto& b : state.buffers)
    if (b.size() != num_params_)
      return Status::Error("optimizer state buffer has " + std::to_string(b.size()) +
                           " floats, expected " + std::to_string(num_params_));
  for (std::size_t i = 0; i < into.size(); ++i) *into[i] = state.buffers[i];
  steps_ = state.steps;
  return Status::Ok();
}

Status optimizer_options_from_config(const TrainConfig& config, OptimizerOptions* out) {
  OptimizerOptions o;
  if (config.optimizer == "sgd") {
    o.kind = OptimizerKind::kSgd;
  } else if (config.optimizer == "adam") {
    o.kind = OptimizerKind::kAdam;
  } else if (config.optimizer == "adamw") {
    o.kind = OptimizerKind::kAdamW;
  } else {
    return Status::Error("unknown optimizer '" + config.optimizer + "' (sgd|adam|adamw)");
  }
  if (!(config.lr > 0) || !std::isfinite(config.lr))
    return Status::Error("lr must be a positive number, got " + std::to_string(config.lr));
  if (!(config.momentum >= 0 && config.momentum < 1))
    return Status::Error("momentum must be in [0, 1), got " + std::to_string(config.momentum));
  if (!(config.weight_decay >= 0) || !std::isfinite(config.weight_decay))
    return Status::Error("weight_decay must be >= 0, got " + std::to_string(config.weight_decay));
  if (!(config.beta1 >= 0 && config.beta1 < 1))
    return Status::Error("beta1 must be in [0, 1), got " + std::to_string(config.beta1));
  if (!(config.beta2 >= 0 && config.beta2 < 1))
    return Status::Error("beta2 must be in [0, 1), got " + std::to_string(config.beta2));
  if (!(config.grad_clip >= 0) || !std::isfinite(config.grad_clip))
    return Status::Error("grad_clip must be >= 0, got " + std::to_string(config.grad_clip));
  o.lr = static_cast<float>(config.lr);
  o.momentum = static_cast<float>(config.momentum);
  o.nesterov = config.nesterov;
  o.weight_decay = static_cast<float>(config.weight_decay);
  o.beta1 = static_cast<float>(config.beta1);
  o.beta2 = static_cast<float>(config.beta2);
  o.grad_clip = static_cast<float>(config.grad_clip);
  *out = o;
  return Status::Ok();
}

Status make_optimizer(const OptimizerOptions& options, std::int64_t num_params,
                      std::unique_ptr<Optimizer>* out) {
  if (num_params < 0) return Status::Error("optimizer: negative parameter count");
  switch (options.kind) {
    case OptimizerKind::kSgd:
      *out = std::make_unique<Sgd>(options, num_params);
      break;
    case OptimizerKind::kAdam:
      *out = std::make_unique<Adam>(options, num_params, /*decoupled=*/false);
      break;
    case OptimizerKind::kAdamW:
      *out = std::make_unique<Adam>(options, num_params, /*decoupled=*/true);
      break;
  }
  return Status::Ok();
}

}  // namespace trellis::worker
