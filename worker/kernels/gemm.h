#pragma once
// gemm: C = op(A) op(B) + beta C for column-major float matrices, C m x n, the inner size k;
// beta is 0 (C is only written, never read) or 1. Eigen's `C.noalias() = A * B` zeroes C and
// then calls sgemm with beta 1, a wasted pass over C; this calls sgemm with the beta we mean.
// Shared by every model (Mlp's dense layers, Cnn's im2col convolutions).

namespace trellis::worker {

void gemm(bool trans_a, bool trans_b, int m, int n, int k, const float* a, int lda,
          const float* b, int ldb, float beta, float* c, int ldc);

}  // namespace trellis::worker
