#pragma once
// LrSchedule: the learning rate of every optimizer step, as a pure function of the step number.
//
// A resumed run must take exactly the steps an uninterrupted one would, so the rate depends
// only on (step, steps_per_epoch, total_epochs, config), never on state. `step` is the 0-based
// index of the optimizer step about to be taken (global across epochs).
//
//   warmup   for step < W = round(warmup_epochs * steps_per_epoch) (at least 1 when
//            warmup_epochs > 0), the rate is base(step) * (step + 1) / W: a linear ramp whose
//            last warmup step reaches the full rate.
//   constant base = lr.
//   step     base = lr * lr_gamma ^ floor(step / (lr_step_epochs * steps_per_epoch)).
//   cosine   base = lr_min + (lr - lr_min) * (1 + cos(pi * p)) / 2, p = (step - W) / (T - W)
//            clamped to [0, 1], T = total_epochs * steps_per_epoch: lr when the decay starts,
//            lr_min at step T (one past the last step taken, as PyTorch's CosineAnnealingLR,
//            so the last real step still moves).
//
// Header-only: small, and the trainer calls it once per step.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>

#include "common/status.h"
#include "common/train_config.h"

namespace trellis::worker {

enum class LrScheduleKind { kConstant, kStep, kCosine };

struct LrSchedule {
  LrScheduleKind kind = LrScheduleKind::kConstant;
  double lr = 1e-3;
  double lr_min = 0.0;
  double warmup_epochs = 0.0;
  int step_epochs = 10;
  double gamma = 0.1;
};

// Takes lr, lr_schedule, warmup_epochs, lr_step_epochs, lr_gamma and lr_min from `config`.
[[nodiscard]] inline Status lr_schedule_from_config(const TrainConfig& config, LrSchedule* out) {
  LrSchedule s;
  if (config.lr_schedule == "constant") {
    s.kind = LrScheduleKind::kConstant;
  } else if (config.lr_schedule == "step") {
    s.kind = LrScheduleKind::kStep;
  } else if (config.lr_schedule == "cosine") {
    s.kind = LrScheduleKind::kCosine;
  } else {
    return Status::Error("unknown lr_schedule '" + config.lr_schedule + "' (constant|step|cosine)");
  }
  if (!(config.lr > 0) || !std::isfinite(config.lr))
    return Status::Error("lr must be a positive number, got " + std::to_string(config.lr));
  if (!(config.lr_min >= 0) || config.lr_min > config.lr)
    return Status::Error("lr_min must be in [0, lr], got " + std::to_string(config.lr_min));
  if (!(config.warmup_epochs >= 0) || !std::isfinite(config.warmup_epochs))
    return Status::Error("warmup_epochs must be >= 0, got " + std::to_string(config.warmup_epochs));
  if (config.lr_step_epochs < 1)
    return Status::Error("lr_step_epochs must be >= 1, got " + std::to_string(config.lr_step_epochs));
  if (!(config.lr_gamma > 0 && config.lr_gamma <= 1))
    return Status::Error("lr_gamma must be in (0, 1], got " + std::to_string(config.lr_gamma));
  s.lr = config.lr;
  s.lr_min = config.lr_min;
  s.warmup_epochs = config.warmup_epochs;
  s.step_epochs = config.lr_step_epochs;
  s.gamma = config.lr_gamma;
  *out = s;
  return Status::Ok();
}

// Steps of linear warmup for `steps_per_epoch`.
inline std::int64_t warmup_steps(const LrSchedule& s, std::int64_t steps_per_epoch) {
  if (!(s.warmup_epochs > 0)) return 0;
  const auto w = std::llround(s.warmup_epochs * static_cast<double>(steps_per_epoch));
  return std::max<std::int64_t>(w, 1);
}

// The rate of step `step` (0-based) of a run of `total_epochs` epochs of `steps_per_epoch`.
inline double learning_rate(const LrSchedule& s, std::int64_t step, std::int64_t steps_per_epoch,
                            int total_epochs) {
  constexpr double kPi = 3.14159265358979323846;
  const std::int64_t warmup = warmup_steps(s, steps_per_epoch);
  double base = s.lr;
  switch (s.kind) {
    case LrScheduleKind::kConstant:
      break;
    case LrScheduleKind::kStep: {
      const std::int64_t period = std::max<std::int64_t>(
          1, static_cast<std::int64_t>(s.step_epochs) * steps_per_epoch);
      base = s.lr * std::pow(s.gamma, static_cast<double>(step / period));
      break;
    }
    case LrScheduleKind::kCosine: {
      const std::int64_t total = static_cast<std::int64_t>(total_epochs) * steps_per_epoch;
      const std::int64_t span = total - warmup;
      double p = span > 0 ? static_cast<double>(step - warmup) / static_cast<double>(span) : 0.0;
      p = std::clamp(p, 0.0, 1.0);
      base = s.lr_min + (s.lr - s.lr_min) * 0.5 * (1.0 + std::cos(kPi * p));
      break;
    }
  }
  if (step < warmup)
    base *= static_cast<double>(step + 1) / static_cast<double>(warmup);
  return base;
}

}  // namespace trellis::worker
