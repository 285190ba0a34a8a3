#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <xmmintrin.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "worker/kernels/float_mode.h"
#include "worker/kernels/gemm.h"

namespace trellis::worker::kernels {
namespace {

// op(A) op(B) in double, column-major, for comparison.
std::vector<double> reference(bool ta, bool tb, int m, int n, int k, const std::vector<float>& a,
                              int lda, const std::vector<float>& b, int ldb) {
  std::vector<double> c(static_cast<std::size_t>(m) * n, 0.0);
  for (int j = 0; j < n; ++j)
    for (int i = 0; i < m; ++i) {
      double s = 0;
      for (int p = 0; p < k; ++p) {
        const float av = ta ? a[static_cast<std::size_t>(i) * lda + p] : a[static_cast<std::size_t>(p) * lda + i];
        const float bv = tb ? b[static_cast<std::size_t>(p) * ldb + j] : b[static_cast<std::size_t>(j) * ldb + p];
        s += static_cast<double>(av) * bv;
      }
      c[static_cast<std::size_t>(j) * m + i] = s;
    }
  return c;
}

// Every transpose pair, beta 0 over a C full of NaN (it must not be read) and beta 1, with
// leading dimensions larger than the rows (a sub-block, as the Mlp passes).
TEST(GemmKernels, MatchesADoubleReferenceInEveryTransposeAndBeta) {
  std::mt19937 rng(9);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  const int m = 37, n = 19, k = 53, pad = 3;
  for (const bool ta : {false, true})
    for (const bool tb : {false, true})
      for (const float beta : {0.0f, 1.0f}) {
        const int lda = (ta ? k : m) + pad, ldb = (tb ? n : k) + pad, ldc = m + pad;
        std::vector<float> a(static_cast<std::size_t>(lda) * (ta ? m : k));
        std::vector<float> b(static_cast<std::size_t>(ldb) * (tb ? k : n));
        for (float& x : a) x = u(rng);
        for (float& x : b) x = u(rng);
        std::vector<float> c(static_cast<std::size_t>(ldc) * n,
                             beta == 0.0f ? std::numeric_limits<float>::quiet_NaN() : 0.25f);
        gemm(ta, tb, m, n, k, a.data(), lda, b.data(), ldb, beta, c.data(), ldc);
        const std::vector<double> want = reference(ta, tb, m, n, k, a, lda, b, ldb);
        for (int j = 0; j < n; ++j)
          for (int i = 0; i < m; ++i) {
            const double expect = want[static_cast<std::size_t>(j) * m + i] + (beta == 1.0f ? 0.25 : 0.0);
            ASSERT_NEAR(c[static_cast<std::size_t>(j) * ldc + i], expect, 1e-4)
                << gemm_choice().summary() << " ta " << ta << " tb " << tb << " beta " << beta
                << " at " << i << "," << j;
          }
      }
}

TEST(GemmKernels, ChoiceIsRecordedAndFollowsTheIsaCap) {
  const GemmChoice& g = gemm_choice();
  EXPECT_FALSE(g.library.empty());
  EXPECT_FALSE(g.version.empty());
  EXPECT_FALSE(g.kernel.empty());
  EXPECT_GE(g.threads, 1);
  if (g.library != "onednn") GTEST_SKIP() << "GEMM is " << g.summary() << ", not oneDNN";
  const char* cap = std::getenv("ONEDNN_MAX_CPU_ISA");
  EXPECT_EQ(g.isa_cap, cap != nullptr ? cap : "");
  if (cap != nullptr && std::string(cap) == "AVX2") {
    EXPECT_EQ(g.kernel, "avx2") << "a node without AVX-512 (ONEDNN_MAX_CPU_ISA=AVX2) runs AVX2";
  } else if (cap == nullptr && __builtin_cpu_supports("avx512f")) {
    EXPECT_EQ(g.kernel.rfind("avx512", 0), 0u) << g.summary() << " on a CPU with AVX-512";
  }
}

// Runs one of the probes beside the tests (gemm_probe, preemption_probe) as its own process.
nlohmann::json probe(const std::string& env, const std::string& name = "gemm_probe") {
  const std::string cmd = env + " " TRELLIS_BIN_DIR "/" + name;
  FILE* p = popen(cmd.c_str(), "r");
  if (p == nullptr) return {};
  std::string out;
  char buf[512];
  while (std::fgets(buf, sizeof buf, p) != nullptr) out += buf;
  if (pclose(p) != 0) return {};
  return nlohmann::json::parse(out, nullptr, false);
}

// Two processes on this node choose the same kernel and compute the same bits; a process capped
// to AVX2 (standing in for a node without AVX-512) runs the AVX2 kernel, its bits its own.
TEST(GemmKernels, SameNodeSameKernelSameBitsAcrossRuns) {
  const nlohmann::json a = probe("env -u ONEDNN_MAX_CPU_ISA");
  const nlohmann::json b = probe("env -u ONEDNN_MAX_CPU_ISA");
  ASSERT_TRUE(a.is_object() && b.is_object()) << a << b;
  EXPECT_EQ(a["library"], b["library"]);
  EXPECT_EQ(a["kernel"], b["kernel"]);
  EXPECT_EQ(a["bits"], b["bits"]) << "the same node must compute the same bits";
  if (a["library"] != "onednn") GTEST_SKIP() << "GEMM is " << a << ", not oneDNN";
  const nlohmann::json c = probe("ONEDNN_MAX_CPU_ISA=AVX2");
  const nlohmann::json d = probe("ONEDNN_MAX_CPU_ISA=AVX2");
  ASSERT_TRUE(c.is_object() && d.is_object()) << c << d;
  EXPECT_EQ(c["kernel"], "avx2") << c;
  EXPECT_EQ(c["bits"], d["bits"]);
}

// A preempting scheduler signals a rank in the middle of a product. A signal handler's frame
// lands on whichever thread the signal interrupts, and oneDNN 2.6's JIT GEMM keeps data below
// its stack pointer past the red zone: with a handler and a storm of signals, dnnl_sgemm
// aborted with glibc's "corrupted size vs. prev_size" within seconds, on its AVX-512 and its
// AVX2 kernels, where OpenBLAS survived 200,000 signals. The preemption watch takes the signals
// on a thread of its own: every product stays exact and the flag still rises.
TEST(GemmKernels, PreemptionSignalsNeverLandOnTheComputingThread) {
  for (const char* env : {"env -u ONEDNN_MAX_CPU_ISA", "ONEDNN_MAX_CPU_ISA=AVX2"}) {
    const nlohmann::json r = probe(env, "preemption_probe");
    ASSERT_TRUE(r.is_object()) << env << ": preemption_probe crashed or printed no result";
    EXPECT_EQ(r["mismatches"], 0) << env << " " << r;
    EXPECT_GT(r["rounds"].get<long>(), 0) << r;
    EXPECT_EQ(r["preempted"], true) << r;
    EXPECT_EQ(r["blocked_in_new_thread"], true) << r;
  }
}

constexpr unsigned kFtzDaz = (1u << 15) | (1u << 6);

// Real arithmetic in this thread: a product below FLT_MIN is subnormal by default and 0 once
// flushed, and a subnormal operand reads as 0.
TEST(FloatMode, FlushesSubnormalResultsAndOperandsInThisThread) {
  const unsigned saved = _mm_getcsr();
  _mm_setcsr(saved & ~kFtzDaz);
  volatile float tiny = 1e-37f, scale = 1e-3f, sub = 1e-40f, one = 1.0f;
  EXPECT_FALSE(denormals_flushed_in_this_thread());
  EXPECT_NE(tiny * scale, 0.0f) << "without FTZ the product is subnormal";
  EXPECT_NE(sub * one, 0.0f);
  flush_denormals_in_this_thread();
  EXPECT_TRUE(denormals_flushed_in_this_thread());
  EXPECT_EQ(tiny * scale, 0.0f);
  EXPECT_EQ(sub * one, 0.0f) << "with DAZ a subnormal operand is 0";
  _mm_setcsr(saved);
}

}  // namespace
}  // namespace trellis::worker::kernels
