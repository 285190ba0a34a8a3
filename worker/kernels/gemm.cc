#include "worker/kernels/gemm.h"

// Measured by bench/gemm on one pinned core of an AMD EPYC with AVX-512 (Zen 4), the machine
// otherwise idle (GFLOP/s, best of 7 interleaved trials, 2026-12-06):
//
//   shape (batch 128)          Eigen(SSE2)  OpenBLAS 0.3.21 (Cooperlake)  oneDNN 2.6.3  BLIS 0.9 (zen3)
//   fwd1 256x784 . 784x128         38.1       105.6                       111.7        105.1
//   fwd2 128x256 . 256x128         38.0       107.6                       114.1        105.2
//   fwd3  10x128 . 128x128         29.7        45.2                        47.9         45.4
//   dW3   10x128 . 128x128^T       26.1        39.1                        44.8         39.5
//   dX3  128x10^T . 10x128         29.1        15.3                        80.5         14.6
//   dW2  128x128 . 128x256^T       36.1        96.5                       113.8         94.3
//   dX2  256x128^T . 128x128       34.1        81.8                       104.4         80.8
//   dW1  256x128 . 128x784^T       35.0        93.9                       108.1        104.2
//   whole MLP step                 36.3        96.3                       109.1         99.7
//   1024^3                         34.7        98.9                       102.5         93.2
//
// oneDNN wins at every shape, tiny ones included, so the rule ignores shapes; on an Intel Xeon
// the same OpenBLAS misdetects the CPU and runs its SSE3 kernel (~31 GFLOP/s at 1024^3), which
// oneDNN's own cpuid dispatch never does. BLIS is not offered: its BLAS symbols would clash with
// OpenBLAS's.

#include <cassert>
#include <cstdlib>
#include <mutex>

#include <Eigen/Core>

#ifdef TRELLIS_GEMM_ONEDNN
#include <omp.h>
#include <oneapi/dnnl/dnnl.h>
#endif

// Weak, as in topology.cc: present when OpenBLAS is linked, null otherwise.
extern "C" char* openblas_get_config(void) __attribute__((weak));
extern "C" char* openblas_get_corename(void) __attribute__((weak));
extern "C" void openblas_set_num_threads(int threads) __attribute__((weak));
extern "C" int openblas_get_num_threads(void) __attribute__((weak));

namespace trellis::worker::kernels {

namespace {

enum class Library { kOneDnn, kOpenBlas, kEigen };

struct Selected {
  Library library = Library::kEigen;
  GemmChoice choice;
};

std::string env_or_empty(const char* name) {
  const char* v = std::getenv(name);
  return v != nullptr ? v : "";
}

std::string cpu_features() {
  __builtin_cpu_init();
  std::string f;
  const auto add = [&](bool has, const char* name) {
    if (has) f += f.empty() ? name : std::string(" ") + name;
  };
  add(__builtin_cpu_supports("avx512f"), "avx512f");
  add(__builtin_cpu_supports("avx2"), "avx2");
  add(__builtin_cpu_supports("fma"), "fma");
  add(__builtin_cpu_supports("sse4.1"), "sse4.1");
  return f;
}

#ifdef TRELLIS_GEMM_ONEDNN
const char* onednn_isa_name(dnnl_cpu_isa_t isa) {
  switch (isa) {
    case dnnl_cpu_isa_sse41: return "sse41";
    case dnnl_cpu_isa_avx: return "avx";
    case dnnl_cpu_isa_avx2: return "avx2";
    case dnnl_cpu_isa_avx2_vnni: return "avx2_vnni";
    case dnnl_cpu_isa_avx512_core: return "avx512_core";
    case dnnl_cpu_isa_avx512_core_vnni: return "avx512_core_vnni";
    case dnnl_cpu_isa_avx512_core_bf16: return "avx512_core_bf16";
    case dnnl_cpu_isa_avx512_core_amx: return "avx512_core_amx";
    default: return "other";
  }
}
#endif

Selected select() {
  Selected s;
  GemmChoice& c = s.choice;
  c.cpu = cpu_features();
  const bool avx2_fma = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#ifdef TRELLIS_GEMM_ONEDNN
  if (avx2_fma) {
    s.library = Library::kOneDnn;
    const dnnl_version_t* v = dnnl_version();
    c.library = "onednn";
    c.version = std::to_string(v->major) + "." + std::to_string(v->minor) + "." +
                std::to_string(v->patch);
    c.kernel = onednn_isa_name(dnnl_get_effective_cpu_isa());
    c.isa_cap = env_or_empty("ONEDNN_MAX_CPU_ISA");
    c.threads = omp_get_max_threads();
    return s;
  }
#else
  (void)avx2_fma;
#endif
#ifdef EIGEN_USE_BLAS
  s.library = Library::kOpenBlas;
  c.library = "openblas";
  c.version = openblas_get_config != nullptr ? openblas_get_config() : "";
  const char* core = openblas_get_corename != nullptr ? openblas_get_corename() : nullptr;
  c.kernel = core != nullptr ? core : "";
  c.isa_cap = env_or_empty("OPENBLAS_CORETYPE");
  c.threads = openblas_get_num_threads != nullptr ? openblas_get_num_threads() : 1;
#else
  s.library = Library::kEigen;
  c.library = "eigen";
  c.version = std::to_string(EIGEN_WORLD_VERSION) + "." + std::to_string(EIGEN_MAJOR_VERSION) +
              "." + std::to_string(EIGEN_MINOR_VERSION);
  c.kernel = Eigen::SimdInstructionSetsInUse();
  c.threads = Eigen::nbThreads();
#endif
  return s;
}

Selected& selected() {
  static Selected s = select();
  return s;
}

using Map = Eigen::Map<Eigen::MatrixXf, 0, Eigen::OuterStride<>>;
using CMap = Eigen::Map<const Eigen::MatrixXf, 0, Eigen::OuterStride<>>;

void eigen_gemm(bool trans_a, bool trans_b, int m, int n, int k, const float* a, int lda,
                const float* b, int ldb, float beta, float* c, int ldc) {
  const CMap ma(a, trans_a ? k : m, trans_a ? m : k, Eigen::OuterStride<>(lda));
  const CMap mb(b, trans_b ? n : k, trans_b ? k : n, Eigen::OuterStride<>(ldb));
  Map mc(c, m, n, Eigen::OuterStride<>(ldc));
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
}

}  // namespace

std::string GemmChoice::summary() const { return library + " " + version + " " + kernel; }

const GemmChoice& gemm_choice() {
  Selected& s = selected();
  // Threads can change after selection (set_gemm_threads); report the current count.
#ifdef TRELLIS_GEMM_ONEDNN
  if (s.library == Library::kOneDnn) s.choice.threads = omp_get_max_threads();
#endif
  if (s.library == Library::kOpenBlas && openblas_get_num_threads != nullptr)
    s.choice.threads = openblas_get_num_threads();
  return s.choice;
}

void set_gemm_threads(int threads) {
  threads = threads < 1 ? 1 : threads;
#ifdef TRELLIS_GEMM_ONEDNN
  omp_set_num_threads(threads);
#endif
  if (openblas_set_num_threads != nullptr) openblas_set_num_threads(threads);
}

void gemm(bool trans_a, bool trans_b, int m, int n, int k, const float* a, int lda,
          const float* b, int ldb, float beta, float* c, int ldc) {
  assert(beta == 0.0f || beta == 1.0f);
  if (m == 0 || n == 0) return;
  if (k == 0) {
    if (beta == 0.0f) Map(c, m, n, Eigen::OuterStride<>(ldc)).setZero();
    return;
  }
  switch (selected().library) {
    case Library::kOneDnn: {
#ifdef TRELLIS_GEMM_ONEDNN
      // dnnl_sgemm is row-major: column-major C = op(A) op(B) is row-major C^T = op(B)^T op(A)^T.
      dnnl_sgemm(trans_b ? 'T' : 'N', trans_a ? 'T' : 'N', n, m, k, 1.0f, b, ldb, a, lda, beta,
                 c, ldc);
#endif
      return;
    }
    case Library::kOpenBlas: {
#ifdef EIGEN_USE_BLAS
      // Eigen's `C.noalias() = A * B` zeroes C and then calls sgemm with beta 1, a wasted pass
      // over C; this calls sgemm with the beta we mean.
      const char ta = trans_a ? 'T' : 'N', tb = trans_b ? 'T' : 'N';
      const float one = 1.0f;
      sgemm_(&ta, &tb, &m, &n, &k, &one, a, &lda, b, &ldb, &beta, c, &ldc);
#endif
      return;
    }
    case Library::kEigen:
      eigen_gemm(trans_a, trans_b, m, n, k, a, lda, b, ldb, beta, c, ldc);
      return;
  }
}

}  // namespace trellis::worker::kernels
