#include "worker/optimizer.h"

#include <cmath>

namespace trellis::worker {
namespace {

// p -= lr * g, or with momentum: v = momentum * v + g; p -= lr * v (the PyTorch convention,
// where lr scales the velocity rather than the gradient folded into it).
class Sgd final : public Optimizer {
 public:
  Sgd(const OptimizerOptions& o, std::int64_t n) : o_(o) {
    if (o_.momentum > 0) velocity_ = Eigen::VectorXf::Zero(n);
  }

  void step(Eigen::Ref<Eigen::VectorXf> params,
            const Eigen::Ref<const Eigen::VectorXf>& grads) override {
    const auto g = grads.array() + o_.weight_decay * params.array();
    if (o_.momentum > 0) {
      velocity_.array() = o_.momentum * velocity_.array() + g;
      params -= o_.lr * velocity_;
    } else {
      params.array() -= o_.lr * g;
    }
    ++steps_;
  }
  std::int64_t steps() const override { return steps_; }

 private:
  OptimizerOptions o_;
  Eigen::VectorXf velocity_;
  std::int64_t steps_ = 0;
};

class Adam final : public Optimizer {
 public:
  Adam(const OptimizerOptions& o, std::int64_t n)
      : o_(o), m_(Eigen::VectorXf::Zero(n)), v_(Eigen::VectorXf::Zero(n)) {}

  void step(Eigen::Ref<Eigen::VectorXf> params,
            const Eigen::Ref<const Eigen::VectorXf>& grads) override {
    ++steps_;
    const auto g = grads.array() + o_.weight_decay * params.array();
    m_.array() = o_.beta1 * m_.array() + (1.0f - o_.beta1) * g;
    v_.array() = o_.beta2 * v_.array() + (1.0f - o_.beta2) * g.square();
    // Bias corrections in double: beta^t underflows gracefully and 1 - beta2^t is tiny early on.
    const auto t = static_cast<double>(steps_);
    const float c1 = static_cast<float>(1.0 / (1.0 - std::pow(double{o_.beta1}, t)));
    const float c2 = static_cast<float>(1.0 / (1.0 - std::pow(double{o_.beta2}, t)));
    params.array() -= o_.lr * (m_.array() * c1) / ((v_.array() * c2).sqrt() + o_.epsilon);
  }
  std::int64_t steps() const override { return steps_; }

 private:
  OptimizerOptions o_;
  Eigen::VectorXf m_;
  Eigen::VectorXf v_;
  std::int64_t steps_ = 0;
};

}  // namespace

Status optimizer_options_from_config(const TrainConfig& config, OptimizerOptions* out) {
  OptimizerOptions o;
  if (config.optimizer == "sgd") {
    o.kind = OptimizerKind::kSgd;
  } else if (config.optimizer == "adam") {
    o.kind = OptimizerKind::kAdam;
  } else {
    return Status::Error("unknown optimizer '" + config.optimizer + "' (adam|sgd)");
  }
  if (!(config.lr > 0) || !std::isfinite(config.lr))
    return Status::Error("lr must be a positive number, got " + std::to_string(config.lr));
  if (!(config.momentum >= 0 && config.momentum < 1))
    return Status::Error("momentum must be in [0, 1), got " + std::to_string(config.momentum));
  if (!(config.weight_decay >= 0) || !std::isfinite(config.weight_decay))
    return Status::Error("weight_decay must be >= 0, got " + std::to_string(config.weight_decay));
  o.lr = static_cast<float>(config.lr);
  o.momentum = static_cast<float>(config.momentum);
  o.weight_decay = static_cast<float>(config.weight_decay);
  *out = o;
  return Status::Ok();
}

Status make_optimizer(const OptimizerOptions& options, std::int64_t num_params,
                      std::unique_ptr<Optimizer>* out) {
  if (num_params < 0) return Status::Error("optimizer: negative parameter count");
  if (options.kind == OptimizerKind::kSgd) {
    *out = std::make_unique<Sgd>(options, num_params);
  } else {
    *out = std::make_unique<Adam>(options, num_params);
  }
  return Status::Ok();
}

}  // namespace trellis::worker
