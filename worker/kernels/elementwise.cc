#include "worker/kernels/elementwise.h"

#include <cstddef>

#include "worker/kernels/vector_path.h"

// Each kernel's loop is written once (an always-inline body over raw pointers, which GCC
// vectorises over the rows) and instantiated three times: for the baseline, for AVX2 and for
// AVX-512, through `target` attributes, so no -march is needed. The file is built with
// -ffp-contract=off: GCC's C++ default (fast, even with -std=c++20) would contract the tanh
// derivative's 1 - a * a and the tanh polynomial into FMAs under the wider targets, and those
// paths would then differ in the last bit from the baseline. These passes are memory-bound, so
// FMA would buy nothing here.

#if defined(__x86_64__) || defined(__i386__)
#define TRELLIS_KERNELS_X86 1
#define TRELLIS_TARGET_AVX2 __attribute__((target("avx2,fma")))
#define TRELLIS_TARGET_AVX512 __attribute__((target("avx512f,avx512vl,avx512bw,avx512dq")))
#endif

namespace trellis::worker::kernels {
namespace {

#define TRELLIS_BODY static inline __attribute__((always_inline))

TRELLIS_BODY void bias_add_body(float* a, int lda, const float* b, int m, int n) {
  for (int j = 0; j < n; ++j) {
    float* __restrict c = a + static_cast<std::ptrdiff_t>(j) * lda;
    for (int i = 0; i < m; ++i) c[i] = c[i] + b[i];
  }
}

TRELLIS_BODY void bias_relu_body(float* a, int lda, const float* b, int m, int n) {
  for (int j = 0; j < n; ++j) {
    float* __restrict c = a + static_cast<std::ptrdiff_t>(j) * lda;
    for (int i = 0; i < m; ++i) {
      const float z = c[i] + b[i];
      c[i] = z > 0.0f ? z : 0.0f;
    }
  }
}

TRELLIS_BODY void relu_body(float* a, int lda, int m, int n) {
  for (int j = 0; j < n; ++j) {
    float* __restrict c = a + static_cast<std::ptrdiff_t>(j) * lda;
    for (int i = 0; i < m; ++i) c[i] = c[i] > 0.0f ? c[i] : 0.0f;
  }
}

TRELLIS_BODY void relu_mask_body(float* d, int ldd, const float* a, int lda, int m, int n) {
  for (int j = 0; j < n; ++j) {
    float* __restrict c = d + static_cast<std::ptrdiff_t>(j) * ldd;
    const float* __restrict y = a + static_cast<std::ptrdiff_t>(j) * lda;
    for (int i = 0; i < m; ++i) c[i] = y[i] > 0.0f ? c[i] : 0.0f;
  }
}

// tanh as Eigen 3.4 computes it for SSE packets (generic_fast_tanh_float without FMA): a 13/6
// rational function on the input clamped to +-7.9053111, the input itself below 0.0004.
// Plain multiplies and adds, so the vectoriser widens it and every path rounds alike.
TRELLIS_BODY float tanh_body(float a) {
  constexpr float kClamp = 7.90531110763549805f, kTiny = 0.0004f;
  float x = a < kClamp ? a : kClamp;
  x = x > -kClamp ? x : -kClamp;
  const float x2 = x * x;
  float p = x2 * -2.76076847742355e-16f + 2.00018790482477e-13f;
  p = x2 * p + -8.60467152213735e-11f;
  p = x2 * p + 5.12229709037114e-08f;
  p = x2 * p + 1.48572235717979e-05f;
  p = x2 * p + 6.37261928875436e-04f;
  p = x2 * p + 4.89352455891786e-03f;
  p = x * p;
  float q = x2 * 1.19825839466702e-06f + 1.18534705686654e-04f;
  q = x2 * q + 2.26843463243900e-03f;
  q = x2 * q + 4.89352518554385e-03f;
  const float abs_a = a < 0.0f ? -a : a;
  return abs_a < kTiny ? a : p / q;
}

TRELLIS_BODY void bias_tanh_body(float* a, int lda, const float* b, int m, int n) {
  for (int j = 0; j < n; ++j) {
    float* __restrict c = a + static_cast<std::ptrdiff_t>(j) * lda;
    for (int i = 0; i < m; ++i) c[i] = tanh_body(c[i] + b[i]);
  }
}

// The backward passes: d = op(d, x) and db = sum over columns, in column order at every width
// (the vectors run along the rows), so the sum's rounding is the same on every path.
template <typename Op>
TRELLIS_BODY void backward_body(float* d, int ldd, const float* x, int ldx, int m, int n,
                                float* __restrict db, Op op) {
  for (int i = 0; i < m; ++i) db[i] = 0.0f;
  for (int j = 0; j < n; ++j) {
    float* __restrict c = d + static_cast<std::ptrdiff_t>(j) * ldd;
    const float* __restrict f = x + static_cast<std::ptrdiff_t>(j) * ldx;
    for (int i = 0; i < m; ++i) {
      const float v = op(c[i], f[i]);
      c[i] = v;
      db[i] = db[i] + v;
    }
  }
}

TRELLIS_BODY void relu_backward_body(float* d, int ldd, const float* a, int lda, int m, int n,
                                     float* db) {
  backward_body(d, ldd, a, lda, m, n, db, [](float v, float y) { return y > 0.0f ? v : 0.0f; });
}

TRELLIS_BODY void tanh_backward_body(float* d, int ldd, const float* a, int lda, int m, int n,
                                     float* db) {
  backward_body(d, ldd, a, lda, m, n, db, [](float v, float y) { return v * (1.0f - y * y); });
}

TRELLIS_BODY void mul_backward_body(float* d, int ldd, const float* f, int ldf, int m, int n,
                                    float* db) {
  backward_body(d, ldd, f, ldf, m, n, db, [](float v, float g) { return v * g; });
}

// One kernel's three instances and the dispatch on the current path.
#ifdef TRELLIS_KERNELS_X86
#define TRELLIS_VARIANTS(name, params, args)                                    \
  void name##_generic params { name##_body args; }                              \
  TRELLIS_TARGET_AVX2 void name##_avx2 params { name##_body args; }             \
  TRELLIS_TARGET_AVX512 void name##_avx512 params { name##_body args; }         \
  void name##_run params {                                                      \
    switch (vector_path()) {                                                    \
      case VectorPath::kAvx512:                                                 \
        return name##_avx512 args;                                              \
      case VectorPath::kAvx2:                                                   \
        return name##_avx2 args;                                                \
      case VectorPath::kGeneric:                                                \
        break;                                                                  \
    }                                                                           \
    name##_generic args;                                                        \
  }
#else
#define TRELLIS_VARIANTS(name, params, args) \
  void name##_run params { name##_body args; }
#endif

TRELLIS_VARIANTS(bias_add, (float* a, int lda, const float* b, int m, int n), (a, lda, b, m, n))
TRELLIS_VARIANTS(bias_relu, (float* a, int lda, const float* b, int m, int n), (a, lda, b, m, n))
TRELLIS_VARIANTS(bias_tanh, (float* a, int lda, const float* b, int m, int n), (a, lda, b, m, n))
TRELLIS_VARIANTS(relu, (float* a, int lda, int m, int n), (a, lda, m, n))
TRELLIS_VARIANTS(relu_mask, (float* d, int ldd, const float* a, int lda, int m, int n),
                 (d, ldd, a, lda, m, n))
TRELLIS_VARIANTS(relu_backward,
                 (float* d, int ldd, const float* a, int lda, int m, int n, float* db),
                 (d, ldd, a, lda, m, n, db))
TRELLIS_VARIANTS(tanh_backward,
                 (float* d, int ldd, const float* a, int lda, int m, int n, float* db),
                 (d, ldd, a, lda, m, n, db))
TRELLIS_VARIANTS(mul_backward,
                 (float* d, int ldd, const float* f, int ldf, int m, int n, float* db),
                 (d, ldd, f, ldf, m, n, db))

}  // namespace

void bias_add(float* a, int lda, const float* b, int m, int n) { bias_add_run(a, lda, b, m, n); }
void bias_relu(float* a, int lda, const float* b, int m, int n) {
  bias_relu_run(a, lda, b, m, n);
}
void bias_tanh(float* a, int lda, const float* b, int m, int n) {
  bias_tanh_run(a, lda, b, m, n);
}
void relu(float* a, int lda, int m, int n) { relu_run(a, lda, m, n); }
void relu_mask(float* d, int ldd, const float* a, int lda, int m, int n) {
  relu_mask_run(d, ldd, a, lda, m, n);
}
void relu_backward(float* d, int ldd, const float* a, int lda, int m, int n, float* db) {
  relu_backward_run(d, ldd, a, lda, m, n, db);
}
void tanh_backward(float* d, int ldd, const float* a, int lda, int m, int n, float* db) {
  tanh_backward_run(d, ldd, a, lda, m, n, db);
}
void mul_backward(float* d, int ldd, const float* f, int ldf, int m, int n, float* db) {
  mul_backward_run(d, ldd, f, ldf, m, n, db);
}

}  // namespace trellis::worker::kernels
