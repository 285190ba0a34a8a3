// bench_gemm: single-core fp32 GEMM of every library Debian ships that is installed here
// (Eigen's own kernels, OpenBLAS, oneDNN's dnnl_sgemm, BLIS), at the shapes one training step
// of the 784-256-128-10 MLP runs (batch 128) and at n=1024 square.
//
// Why: worker/kernels/gemm.cc's selection rule is chosen OFFLINE from these numbers (the table
// is in docs/ARCHITECTURE.md). All backends run in this one process, interleaved trial by
// trial, on the same pinned core, so background load hits all alike. This file is compiled
// WITHOUT EIGEN_USE_BLAS so Eigen's products are Eigen's own; each library is called on the same
// operands with the transposes the Mlp passes. Each library detects the CPU itself at run time
// (OpenBLAS: OPENBLAS_CORETYPE overrides; oneDNN: ONEDNN_MAX_CPU_ISA caps), which the header
// lines print.
//
//   bench_gemm [--core N] [--trials N] [--batch N]
//
// Prints a table (best and median GFLOP/s of each backend per shape) and, last, one JSON line.

#include <sched.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include <Eigen/Core>

#ifdef TRELLIS_GEMM_OPENBLAS
#include <cblas.h>
#endif
#ifdef TRELLIS_GEMM_DNNL
#include <omp.h>
#include <oneapi/dnnl/dnnl.h>
#endif
#ifdef TRELLIS_GEMM_BLIS
#include <blis-openmp/blis.h>  // not the directory: its cblas.h would hide OpenBLAS's
#endif

namespace {

using Eigen::MatrixXf;

// One GEMM: C(m x n) (+)= op(A) * op(B) with inner dimension k.
struct Shape {
  const char* name;
  int m, n, k;
  bool trans_a, trans_b, accumulate;
};

// The products Mlp::forward_backward runs for 784-256-128-10 at batch `b` (samples are
// columns): forward W*X, weight gradients delta*A^T (accumulated), input gradients W^T*delta.
// No input gradient for the first layer.
std::vector<Shape> mlp_shapes(int b) {
  return {
      {"fwd1  W1*X      256x784 . 784xB", 256, b, 784, false, false, false},
      {"fwd2  W2*A1     128x256 . 256xB", 128, b, 256, false, false, false},
      {"fwd3  W3*A2      10x128 . 128xB", 10, b, 128, false, false, false},
      {"dW3   D3*A2^T    10xB . Bx128", 10, 128, b, false, true, true},
      {"dX3   W3^T*D3   128x10 . 10xB", 128, b, 10, true, false, false},
      {"dW2   D2*A1^T   128xB . Bx256", 128, 256, b, false, true, true},
      {"dX2   W2^T*D2   256x128 . 128xB", 256, b, 128, true, false, false},
      {"dW1   D1*X^T    256xB . Bx784", 256, 784, b, false, true, true},
  };
}

struct Operands {
  MatrixXf a, b, c;
  explicit Operands(const Shape& s)
      : a(s.trans_a ? MatrixXf::Random(s.k, s.m) : MatrixXf::Random(s.m, s.k)),
        b(s.trans_b ? MatrixXf::Random(s.n, s.k) : MatrixXf::Random(s.k, s.n)),
        c(MatrixXf::Zero(s.m, s.n)) {}
};

// Eigen's own product, written the way worker/models/mlp.cc writes it.
void eigen_gemm(const Shape& s, Operands& o) {
  if (s.trans_b) {
    o.c.noalias() += o.a * o.b.transpose();
  } else if (s.trans_a) {
    o.c.noalias() = o.a.transpose() * o.b;
  } else if (s.accumulate) {
    o.c.noalias() += o.a * o.b;
  } else {
    o.c.noalias() = o.a * o.b;
  }
}

#ifdef TRELLIS_GEMM_OPENBLAS
void openblas_gemm(const Shape& s, Operands& o) {
  cblas_sgemm(CblasColMajor, s.trans_a ? CblasTrans : CblasNoTrans,
              s.trans_b ? CblasTrans : CblasNoTrans, s.m, s.n, s.k, 1.0f, o.a.data(),
              static_cast<int>(o.a.rows()), o.b.data(), static_cast<int>(o.b.rows()),
              s.accumulate ? 1.0f : 0.0f, o.c.data(), static_cast<int>(o.c.rows()));
}
#endif

#ifdef TRELLIS_GEMM_DNNL
// dnnl_sgemm is row-major: the column-major C = op(A) op(B) is the row-major C^T = op(B)^T op(A)^T.
void onednn_gemm(const Shape& s, Operands& o) {
  dnnl_sgemm(s.trans_b ? 'T' : 'N', s.trans_a ? 'T' : 'N', s.n, s.m, s.k, 1.0f, o.b.data(),
             o.b.rows(), o.a.data(), o.a.rows(), s.accumulate ? 1.0f : 0.0f, o.c.data(),
             o.c.rows());
}
#endif

#ifdef TRELLIS_GEMM_BLIS
void blis_gemm(const Shape& s, Operands& o) {
  float one = 1.0f, beta = s.accumulate ? 1.0f : 0.0f;
  bli_sgemm(s.trans_a ? BLIS_TRANSPOSE : BLIS_NO_TRANSPOSE,
            s.trans_b ? BLIS_TRANSPOSE : BLIS_NO_TRANSPOSE, s.m, s.n, s.k, &one, o.a.data(), 1,
            o.a.rows(), o.b.data(), 1, o.b.rows(), &beta, o.c.data(), 1, o.c.rows());
}
#endif

// Seconds per call: runs `f` in a loop for about `budget` seconds (at least 3 calls).
double seconds_per_call(const std::function<void()>& f, double budget) {
  using clock = std::chrono::steady_clock;
  f();  // touch the operands, let the library set itself up
  long calls = 0;
  const auto start = clock::now();
  double elapsed = 0;
  do {
    for (int i = 0; i < 4; ++i) f();
    calls += 4;
    elapsed = std::chrono::duration<double>(clock::now() - start).count();
  } while (elapsed < budget || calls < 3);
  return elapsed / static_cast<double>(calls);
}

struct Backend {
  const char* name;
  void (*run)(const Shape&, Operands&);
};

struct Stats {
  double best = 0, median = 0;  // GFLOP/s
};
Stats summarize(std::vector<double> gflops) {
  std::sort(gflops.begin(), gflops.end());
  return {gflops.back(), gflops[gflops.size() / 2]};
}

bool pin_to_core(int core) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(core, &set);
  return sched_setaffinity(0, sizeof(set), &set) == 0;
}

}  // namespace

int main(int argc, char** argv) {
  int core = 0, trials = 7, batch = 128;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    const int value = std::atoi(argv[i + 1]);
    if (flag == "--core") core = value;
    else if (flag == "--trials") trials = std::max(1, value);
    else if (flag == "--batch") batch = std::max(1, value);
    else {
      std::fprintf(stderr, "usage: bench_gemm [--core N] [--trials N] [--batch N]\n");
      return 2;
    }
  }
  if (!pin_to_core(core)) std::fprintf(stderr, "bench_gemm: could not pin to core %d\n", core);
  // Every library gets one thread, as a rank that owns one core runs it; each is measured in
  // this one process, interleaved trial by trial, so the machine's load hits all alike.
  std::vector<Backend> backends = {{"eigen", eigen_gemm}};
  std::printf("eigen %d.%d.%d, SIMD: %s\n", EIGEN_WORLD_VERSION, EIGEN_MAJOR_VERSION,
              EIGEN_MINOR_VERSION, Eigen::SimdInstructionSetsInUse());
#ifdef TRELLIS_GEMM_OPENBLAS
  openblas_set_num_threads(1);
  std::printf("openblas: %s, core %s, threads %d\n", openblas_get_config(),
              openblas_get_corename(), openblas_get_num_threads());
  backends.push_back({"openblas", openblas_gemm});
#endif
#ifdef TRELLIS_GEMM_DNNL
  omp_set_num_threads(1);
  {
    const dnnl_version_t* v = dnnl_version();
    std::printf("onednn: %d.%d.%d, effective ISA 0x%x (ONEDNN_MAX_CPU_ISA=%s)\n", v->major,
                v->minor, v->patch, static_cast<unsigned>(dnnl_get_effective_cpu_isa()),
                std::getenv("ONEDNN_MAX_CPU_ISA") ? std::getenv("ONEDNN_MAX_CPU_ISA") : "unset");
  }
  backends.push_back({"onednn", onednn_gemm});
#endif
#ifdef TRELLIS_GEMM_BLIS
  bli_thread_set_num_threads(1);
  std::printf("blis: %s, arch %s\n", bli_info_get_version_str(),
              bli_arch_string(bli_arch_query_id()));
  backends.push_back({"blis", blis_gemm});
#endif
  std::printf("pinned to core %d, %d trials, GFLOP/s best/median\n", core, trials);

  std::vector<Shape> shapes = mlp_shapes(batch);
  shapes.push_back({"peak  1024^3", 1024, 1024, 1024, false, false, false});

  std::printf("%-34s %8s", "shape", "MFLOP");
  for (const Backend& b : backends) std::printf(" %17s", b.name);
  std::printf("\n");
  std::vector<double> step_seconds(backends.size(), 0.0);  // sums over the MLP shapes (best)
  double step_flop = 0;
  std::string json = "{\"bench\": \"gemm\", \"batch\": " + std::to_string(batch) + ", \"shapes\": [";
  for (std::size_t i = 0; i < shapes.size(); ++i) {
    const Shape& s = shapes[i];
    const double flop = 2.0 * s.m * s.n * s.k;
    const double budget = 0.08;
    Operands o(s);
    std::vector<std::vector<double>> g(backends.size());
    for (int t = 0; t < trials; ++t) {
      for (std::size_t b = 0; b < backends.size(); ++b) {
        g[b].push_back(flop / seconds_per_call([&] { backends[b].run(s, o); }, budget) * 1e-9);
      }
    }
    std::printf("%-34s %8.2f", s.name, flop * 1e-6);
    char item[128];
    std::snprintf(item, sizeof item, "%s{\"m\": %d, \"n\": %d, \"k\": %d", i ? ", " : "", s.m, s.n,
                  s.k);
    json += item;
    for (std::size_t b = 0; b < backends.size(); ++b) {
      const Stats st = summarize(g[b]);
      std::printf(" %8.1f/%8.1f", st.best, st.median);
      std::snprintf(item, sizeof item, ", \"%s_gflops\": %.2f", backends[b].name, st.best);
      json += item;
      if (i + 1 < shapes.size()) step_seconds[b] += flop / (st.best * 1e9);
    }
    json += "}";
    std::printf("\n");
    if (i + 1 < shapes.size()) step_flop += flop;
  }
  std::printf("%-34s %8.2f", "MLP step (all 8, best)", step_flop * 1e-6);
  json += "]";
  for (std::size_t b = 0; b < backends.size(); ++b) {
    const double gf = step_flop / step_seconds[b] * 1e-9;
    std::printf(" %17.1f", gf);
    char item[96];
    std::snprintf(item, sizeof item, ", \"mlp_step_%s_gflops\": %.2f", backends[b].name, gf);
    json += item;
  }
  std::printf("\n%s}\n", json.c_str());
  return 0;
}
