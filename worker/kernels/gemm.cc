#include "worker/kernels/gemm.h"

#include <cassert>

#include <Eigen/Core>

namespace trellis::worker {

void gemm(bool trans_a, bool trans_b, int m, int n, int k, const float* a, int lda,
          const float* b, int ldb, float beta, float* c, int ldc) {
  assert(beta == 0.0f || beta == 1.0f);
  if (m == 0 || n == 0) return;
  if (k == 0) {
    if (beta == 0.0f)
      Eigen::Map<Eigen::MatrixXf, 0, Eigen::OuterStride<>>(c, m, n, Eigen::OuterStride<>(ldc))
          .setZero();
    return;
  }
#ifdef EIGEN_USE_BLAS
  const char ta = trans_a ? 'T' : 'N', tb = trans_b ? 'T' : 'N';
  const float one = 1.0f;
  sgemm_(&ta, &tb, &m, &n, &k, &one, a, &lda, b, &ldb, &beta, c, &ldc);
#else
  using CMap = Eigen::Map<const Eigen::MatrixXf, 0, Eigen::OuterStride<>>;
  const CMap ma(a, trans_a ? k : m, trans_a ? m : k, Eigen::OuterStride<>(lda));
  const CMap mb(b, trans_b ? n : k, trans_b ? k : n, Eigen::OuterStride<>(ldb));
  Eigen::Map<Eigen::MatrixXf, 0, Eigen::OuterStride<>> mc(c, m, n, Eigen::OuterStride<>(ldc));
  auto run = [&](const auto& lhs, const auto& rhs) {
    if (beta == 0.0f) {
      mc.noalias() = lhs * rhs;
    } else {
      mc.noalias() += lhs * rhs;
    }
  };
  if (trans_a && trans_b) run(ma.transpose(), mb.transpose());
  else if (trans_a) run(ma.transpose(), mb);
  else if (trans_b) run(ma, mb.transpose());
  else run(ma, mb);
#endif
}

}  // namespace trellis::worker
