#include "worker/optimizer.h"

#include <cassert>
#include <cmath>
#include <cstdint>

#include "worker/kernels/vector_path.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define TRELLIS_ADAM_X86 1
#endif

namespace trellis::worker {
namespace {

// One Adam(W) step over n floats in a single pass: per element
//   g = clip * grad + l2 * p            (or g = grad when `scaled` is false)
//   m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) (g g)
//   p = p * keep - (lr (m c1)) / (sqrt(v c2) + eps)   (keep == 1: p - ...)
// Every operation is an IEEE single-precision add, multiply, divide or sqrt (all correctly
// rounded) in this order, with no fused multiply-add, so the scalar, SSE and AVX paths give
// the same bits, and the same bits as the earlier Eigen-expression version of this step: ranks
// on different CPUs stay identical. No temporaries: 4 streams read, 3 written, once.
struct AdamScalars {
  float clip, l2, b1, omb1, b2, omb2, c1, c2, lr, eps, keep;
};

template <bool kScaled, bool kKeep>
inline void adam_scalar(float* p, const float* grad, float* m, float* v, std::int64_t i,
                        std::int64_t n, const AdamScalars& s) {
  for (; i < n; ++i) {
    float g = grad[i];
    if constexpr (kScaled) g = s.clip * g + s.l2 * p[i];
    const float mi = s.b1 * m[i] + s.omb1 * g;
    const float vi = s.b2 * v[i] + s.omb2 * (g * g);
    m[i] = mi;
    v[i] = vi;
    const float u = (s.lr * (mi * s.c1)) / (std::sqrt(vi * s.c2) + s.eps);
    p[i] = kKeep ? p[i] * s.keep - u : p[i] - u;
  }
}

#ifdef TRELLIS_ADAM_X86
template <bool kScaled, bool kKeep>
void adam_sse2(float* p, const float* grad, float* m, float* v, std::int64_t n,
               const AdamScalars& s) {
  const __m128 clip = _mm_set1_ps(s.clip), l2 = _mm_set1_ps(s.l2), b1 = _mm_set1_ps(s.b1),
               omb1 = _mm_set1_ps(s.omb1), b2 = _mm_set1_ps(s.b2), omb2 = _mm_set1_ps(s.omb2),
               c1 = _mm_set1_ps(s.c1), c2 = _mm_set1_ps(s.c2), lr = _mm_set1_ps(s.lr),
               eps = _mm_set1_ps(s.eps), keep = _mm_set1_ps(s.keep);
  std::int64_t i = 0;
  for (; i + 4 <= n; i += 4) {
    __m128 g = _mm_loadu_ps(grad + i);
    const __m128 pi = _mm_loadu_ps(p + i);
    if constexpr (kScaled) g = _mm_add_ps(_mm_mul_ps(clip, g), _mm_mul_ps(l2, pi));
    const __m128 mi = _mm_add_ps(_mm_mul_ps(b1, _mm_loadu_ps(m + i)), _mm_mul_ps(omb1, g));
    const __m128 vi =
        _mm_add_ps(_mm_mul_ps(b2, _mm_loadu_ps(v + i)), _mm_mul_ps(omb2, _mm_mul_ps(g, g)));
    _mm_storeu_ps(m + i, mi);
    _mm_storeu_ps(v + i, vi);
    const __m128 u = _mm_div_ps(_mm_mul_ps(lr, _mm_mul_ps(mi, c1)),
                                _mm_add_ps(_mm_sqrt_ps(_mm_mul_ps(vi, c2)), eps));
    _mm_storeu_ps(p + i, _mm_sub_ps(kKeep ? _mm_mul_ps(pi, keep) : pi, u));
  }
  adam_scalar<kScaled, kKeep>(p, grad, m, v, i, n, s);
}

// AVX only (not FMA): 8 lanes, the same operations, so the same bits as the SSE2 path.
template <bool kScaled, bool kKeep>
__attribute__((target("avx"))) void adam_avx(float* p, const float* grad, float* m, float* v,
                                             std::int64_t n, const AdamScalars& s) {
  const __m256 clip = _mm256_set1_ps(s.clip), l2 = _mm256_set1_ps(s.l2),
               b1 = _mm256_set1_ps(s.b1), omb1 = _mm256_set1_ps(s.omb1),
               b2 = _mm256_set1_ps(s.b2), omb2 = _mm256_set1_ps(s.omb2),
               c1 = _mm256_set1_ps(s.c1), c2 = _mm256_set1_ps(s.c2), lr = _mm256_set1_ps(s.lr),
               eps = _mm256_set1_ps(s.eps), keep = _mm256_set1_ps(s.keep);
  std::int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    __m256 g = _mm256_loadu_ps(grad + i);
    const __m256 pi = _mm256_loadu_ps(p + i);
    if constexpr (kScaled) g = _mm256_add_ps(_mm256_mul_ps(clip, g), _mm256_mul_ps(l2, pi));
    const __m256 mi =
        _mm256_add_ps(_mm256_mul_ps(b1, _mm256_loadu_ps(m + i)), _mm256_mul_ps(omb1, g));
    const __m256 vi = _mm256_add_ps(_mm256_mul_ps(b2, _mm256_loadu_ps(v + i)),
                                    _mm256_mul_ps(omb2, _mm256_mul_ps(g, g)));
    _mm256_storeu_ps(m + i, mi);
    _mm256_storeu_ps(v + i, vi);
    const __m256 u = _mm256_div_ps(_mm256_mul_ps(lr, _mm256_mul_ps(mi, c1)),
                                   _mm256_add_ps(_mm256_sqrt_ps(_mm256_mul_ps(vi, c2)), eps));
    _mm256_storeu_ps(p + i, _mm256_sub_ps(kKeep ? _mm256_mul_ps(pi, keep) : pi, u));
  }
  // The tail in scalar code compiled for the baseline, same operations.
  adam_scalar<kScaled, kKeep>(p, grad, m, v, i, n, s);
}

// AVX-512: 16 lanes, the same operations again (no FMA), so the same bits. The square root is
// the all-lanes masked form: GCC 12's _mm512_sqrt_ps trips -Wmaybe-uninitialized on its own
// undefined pass-through operand.
template <bool kScaled, bool kKeep>
__attribute__((target("avx512f"))) void adam_avx512(float* p, const float* grad, float* m,
                                                    float* v, std::int64_t n,
                                                    const AdamScalars& s) {
  const __m512 clip = _mm512_set1_ps(s.clip), l2 = _mm512_set1_ps(s.l2),
               b1 = _mm512_set1_ps(s.b1), omb1 = _mm512_set1_ps(s.omb1),
               b2 = _mm512_set1_ps(s.b2), omb2 = _mm512_set1_ps(s.omb2),
               c1 = _mm512_set1_ps(s.c1), c2 = _mm512_set1_ps(s.c2), lr = _mm512_set1_ps(s.lr),
               eps = _mm512_set1_ps(s.eps), keep = _mm512_set1_ps(s.keep);
  constexpr __mmask16 kAll = 0xffff;
  std::int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    __m512 g = _mm512_loadu_ps(grad + i);
    const __m512 pi = _mm512_loadu_ps(p + i);
    if constexpr (kScaled) g = _mm512_add_ps(_mm512_mul_ps(clip, g), _mm512_mul_ps(l2, pi));
    const __m512 mi =
        _mm512_add_ps(_mm512_mul_ps(b1, _mm512_loadu_ps(m + i)), _mm512_mul_ps(omb1, g));
    const __m512 vi = _mm512_add_ps(_mm512_mul_ps(b2, _mm512_loadu_ps(v + i)),
                                    _mm512_mul_ps(omb2, _mm512_mul_ps(g, g)));
    _mm512_storeu_ps(m + i, mi);
    _mm512_storeu_ps(v + i, vi);
    const __m512 root = _mm512_maskz_sqrt_ps(kAll, _mm512_mul_ps(vi, c2));
    const __m512 u = _mm512_div_ps(_mm512_mul_ps(lr, _mm512_mul_ps(mi, c1)),
                                   _mm512_add_ps(root, eps));
    _mm512_storeu_ps(p + i, _mm512_sub_ps(kKeep ? _mm512_mul_ps(pi, keep) : pi, u));
  }
  adam_scalar<kScaled, kKeep>(p, grad, m, v, i, n, s);
}
#endif

template <bool kScaled, bool kKeep>
void adam_run(float* p, const float* grad, float* m, float* v, std::int64_t n,
              const AdamScalars& s) {
#ifdef TRELLIS_ADAM_X86
  // The avx2 path runs the AVX (8-lane) variant: Adam needs no AVX2 integer instructions.
  switch (vector_path()) {
    case VectorPath::kAvx512:
      return adam_avx512<kScaled, kKeep>(p, grad, m, v, n, s);
    case VectorPath::kAvx2:
      return adam_avx<kScaled, kKeep>(p, grad, m, v, n, s);
    case VectorPath::kGeneric:
      break;
  }
  adam_sse2<kScaled, kKeep>(p, grad, m, v, n, s);
#else
  adam_scalar<kScaled, kKeep>(p, grad, m, v, 0, n, s);
#endif
}

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
    // Bias corrections in double: beta^t underflows gracefully and 1 - beta2^t is tiny early on.
    const auto t = static_cast<double>(steps_);
    AdamScalars s;
    s.clip = clip;
    s.l2 = l2;
    s.b1 = o.beta1;
    s.omb1 = 1.0f - o.beta1;
    s.b2 = o.beta2;
    s.omb2 = 1.0f - o.beta2;
    s.c1 = static_cast<float>(1.0 / (1.0 - std::pow(double{o.beta1}, t)));
    s.c2 = static_cast<float>(1.0 / (1.0 - std::pow(double{o.beta2}, t)));
    s.lr = lr;
    s.eps = o.epsilon;
    s.keep = decoupled_ && o.weight_decay > 0 ? 1.0f - lr * o.weight_decay : 1.0f;
    assert(params.size() == num_params_ && grads.size() == num_params_);
    float* p = params.data();
    const float* g = grads.data();
    const std::int64_t n = num_params_;
    // The common case (no clipping, no L2) skips two multiplies per element.
    const bool scaled = !(clip == 1.0f && l2 == 0.0f);
    const bool keep = s.keep != 1.0f;
    if (scaled) {
      if (keep) adam_run<true, true>(p, g, m_.data(), v_.data(), n, s);
      else adam_run<true, false>(p, g, m_.data(), v_.data(), n, s);
    } else {
      if (keep) adam_run<false, true>(p, g, m_.data(), v_.data(), n, s);
      else adam_run<false, false>(p, g, m_.data(), v_.data(), n, s);
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
