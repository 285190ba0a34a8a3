// bench_gemm: single-core fp32 GEMM, Eigen's own kernels against OpenBLAS's sgemm, at the
// shapes one training step of the 784-256-128-10 MLP runs (batch 128) and at n=1024 square.
//
// Why: the training engine's GEMM backend (cmake/Blas.cmake, TRELLIS_BLAS) is chosen from these
// numbers. Both backends run in this one process, interleaved trial by trial, on the same pinned
// core, so background load hits both alike. This file is compiled WITHOUT EIGEN_USE_BLAS so
// Eigen's products are Eigen's own; OpenBLAS is called through cblas with the same operands
// and transposes Eigen would pass it under EIGEN_USE_BLAS.
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
#ifdef TRELLIS_GEMM_OPENBLAS
  openblas_set_num_threads(1);  // one core, as a rank that owns one core runs it
  std::printf("openblas: %s, core %s, threads %d\n", openblas_get_config(),
              openblas_get_corename(), openblas_get_num_threads());
#else
  std::printf("openblas: not built in (no libopenblas-dev); Eigen only\n");
#endif
  std::printf("eigen %d.%d.%d, SIMD: %s; pinned to core %d, %d trials, best/median\n",
              EIGEN_WORLD_VERSION, EIGEN_MAJOR_VERSION, EIGEN_MINOR_VERSION,
              Eigen::SimdInstructionSetsInUse(), core, trials);

  std::vector<Shape> shapes = mlp_shapes(batch);
  shapes.push_back({"peak  1024^3", 1024, 1024, 1024, false, false, false});

  std::printf("%-34s %8s %17s %17s %7s\n", "shape", "MFLOP", "eigen GF/s", "openblas GF/s",
              "ob/eig");
  double step_eigen = 0, step_openblas = 0, step_flop = 0;  // sums over the MLP shapes
  std::string json = "{\"bench\": \"gemm\", \"batch\": " + std::to_string(batch) + ", \"shapes\": [";
  for (std::size_t i = 0; i < shapes.size(); ++i) {
    const Shape& s = shapes[i];
    const double flop = 2.0 * s.m * s.n * s.k;
    const double budget = 0.08;
    Operands eo(s);
    std::vector<double> eg, og;
    for (int t = 0; t < trials; ++t) {
      eg.push_back(flop / seconds_per_call([&] { eigen_gemm(s, eo); }, budget) * 1e-9);
#ifdef TRELLIS_GEMM_OPENBLAS
      og.push_back(flop / seconds_per_call([&] { openblas_gemm(s, eo); }, budget) * 1e-9);
#endif
    }
    const Stats e = summarize(eg);
    const Stats o = og.empty() ? Stats{} : summarize(og);
    std::printf("%-34s %8.2f %8.1f/%8.1f %8.1f/%8.1f %7.2f\n", s.name, flop * 1e-6, e.best,
                e.median, o.best, o.median, o.best > 0 ? o.best / e.best : 0.0);
    if (i + 1 < shapes.size()) {
      step_flop += flop;
      step_eigen += flop / (e.best * 1e9);
      if (o.best > 0) step_openblas += flop / (o.best * 1e9);
    }
    char item[256];
    std::snprintf(item, sizeof item,
                  "%s{\"m\": %d, \"n\": %d, \"k\": %d, \"eigen_gflops\": %.2f, "
                  "\"openblas_gflops\": %.2f}",
                  i ? ", " : "", s.m, s.n, s.k, e.best, o.best);
    json += item;
  }
  const double step_e = step_flop / step_eigen * 1e-9;
  const double step_o = step_openblas > 0 ? step_flop / step_openblas * 1e-9 : 0.0;
  std::printf("%-34s %8.2f %8.1f          %8.1f          %7.2f\n", "MLP step (all 8, best)",
              step_flop * 1e-6, step_e, step_o, step_o > 0 ? step_o / step_e : 0.0);
  char tail[160];
  std::snprintf(tail, sizeof tail,
                "], \"mlp_step_eigen_gflops\": %.2f, \"mlp_step_openblas_gflops\": %.2f}", step_e,
                step_o);
  std::printf("%s%s\n", json.c_str(), tail);
  return 0;
}
