#pragma once
// The fp32 GEMM every model runs (the Mlp's layers, a CNN's im2col products): one column-major
// entry point whose library and kernel are chosen once per process, at run time, by a fixed
// rule over this CPU's features (cpuid) and what was linked, never by a timing taken in the run.
// The same node (same features, same ONEDNN_MAX_CPU_ISA / OPENBLAS_CORETYPE) therefore always
// runs the same kernel and computes the same bits; a node with other features may run another
// kernel, whose results differ in the last digits (another summation order), never more.
//
// The rule, from bench/gemm's measurements at the MLP's shapes (figures in gemm.cc):
//   1. oneDNN's dnnl_sgemm when it was linked (libdnnl-dev) and the CPU has AVX2 and FMA;
//      oneDNN then picks its own AVX2 or AVX-512 kernel from cpuid (capped by ONEDNN_MAX_CPU_ISA).
//   2. else OpenBLAS's sgemm when built with TRELLIS_BLAS=openblas (its DYNAMIC_ARCH kernel);
//   3. else Eigen's own kernels (SSE2 without -march).
// The model's shapes do not enter: at every MLP shape measured the same library won.
//
// Threads: gemm() runs in the calling thread when the rank owns one core (set_gemm_threads(1)),
// so the caller's FTZ/DAZ mode (float_mode.h) is the one the kernel computes under.

#include <string>

namespace trellis::worker::kernels {

struct GemmChoice {
  std::string library;   // "onednn", "openblas" or "eigen"
  std::string version;   // the library's own version string
  std::string kernel;    // the ISA/kernel it runs: oneDNN's effective ISA, OpenBLAS's core name
  std::string cpu;       // the cpuid features the rule read, e.g. "avx512f avx2 fma"
  std::string isa_cap;   // ONEDNN_MAX_CPU_ISA or OPENBLAS_CORETYPE as set for this process, or ""
  int threads = 1;       // threads the library may use per call

  // "onednn 2.6.3 avx512_core": what a resumed trial's log line compares.
  std::string summary() const;
};

// The choice for this process; computed on the first call (from any thread), then fixed.
const GemmChoice& gemm_choice();

// Threads the chosen library may use per call (the cores the rank owns); also caps OpenBLAS's
// pool, which Eigen's own products use under EIGEN_USE_BLAS.
void set_gemm_threads(int threads);

// C = op(A) op(B) + beta C for column-major float matrices, C m x n, the inner size k; beta is
// 0 (C is only written, never read: it may hold NaN) or 1. Leading dimensions >= 1.
void gemm(bool trans_a, bool trans_b, int m, int n, int k, const float* a, int lda,
          const float* b, int ldb, float beta, float* c, int ldc);

}  // namespace trellis::worker::kernels
