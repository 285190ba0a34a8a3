// The vector paths (worker/kernels/vector_path.h): each one this CPU has computes the same bits
// as the generic path and as a plain scalar reference, run after run, in the kernels, in the
// optimizer and through a whole forward/backward pass.

#include "worker/kernels/vector_path.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <memory>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "worker/kernels/elementwise.h"
#include "worker/models/mlp.h"
#include "worker/optimizer.h"

namespace trellis::worker {
namespace {

constexpr VectorPath kAllPaths[] = {VectorPath::kGeneric, VectorPath::kAvx2, VectorPath::kAvx512};
// Odd sizes: a partial vector at the end of every column, padding rows between columns.
constexpr int kRows = 37, kCols = 13, kLd = 41;

// Restores the detected path after each test, so the tests do not leak a choice.
class VectorPathTest : public ::testing::Test {
 protected:
  void TearDown() override { ASSERT_TRUE(set_vector_path(detect_vector_path()).ok()); }
};

std::vector<float> random_floats(std::size_t n, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> u(-2.0f, 2.0f);
  std::vector<float> v(n);
  for (float& x : v) x = u(rng);
  return v;
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

// The outputs of all seven kernels on fixed inputs, concatenated, computed on `path`.
// bias_tanh's output is compared on its own: it approximates std::tanh, not bit for bit.
std::vector<float> run_kernels(VectorPath path, std::vector<float>& tanh_out) {
  EXPECT_TRUE(set_vector_path(path).ok());
  const std::size_t block = static_cast<std::size_t>(kLd) * kCols;
  const std::vector<float> bias = random_floats(kRows, 1), x = random_floats(block, 2);
  std::vector<float> out;
  auto append = [&](const std::vector<float>& v) { out.insert(out.end(), v.begin(), v.end()); };
  std::vector<float> a = random_floats(block, 3), db(kRows);
  kernels::bias_add(a.data(), kLd, bias.data(), kRows, kCols);
  append(a);
  a = random_floats(block, 3);
  kernels::bias_relu(a.data(), kLd, bias.data(), kRows, kCols);
  append(a);
  a = random_floats(block, 3);
  kernels::bias_tanh(a.data(), kLd, bias.data(), kRows, kCols);
  tanh_out = a;
  std::vector<float> d = random_floats(block, 4);
  kernels::relu_backward(d.data(), kLd, x.data(), kLd, kRows, kCols, db.data());
  append(d);
  append(db);
  d = random_floats(block, 4);
  kernels::tanh_backward(d.data(), kLd, x.data(), kLd, kRows, kCols, db.data());
  append(d);
  append(db);
  d = random_floats(block, 4);
  kernels::mul_backward(d.data(), kLd, x.data(), kLd, kRows, kCols, db.data());
  append(d);
  append(db);
  a = random_floats(block, 3);
  kernels::relu(a.data(), kLd, kRows, kCols);
  append(a);
  d = random_floats(block, 4);
  kernels::relu_mask(d.data(), kLd, x.data(), kLd, kRows, kCols);
  append(d);
  return out;
}

// The same seven passes as plain scalar code, in the order the kernels promise.
std::vector<float> reference_kernels() {
  const std::size_t block = static_cast<std::size_t>(kLd) * kCols;
  const std::vector<float> bias = random_floats(kRows, 1), x = random_floats(block, 2);
  std::vector<float> out;
  auto append = [&](const std::vector<float>& v) { out.insert(out.end(), v.begin(), v.end()); };
  auto at = [](int i, int j) { return static_cast<std::size_t>(j) * kLd + i; };
  std::vector<float> a = random_floats(block, 3), db(kRows);
  for (int j = 0; j < kCols; ++j)
    for (int i = 0; i < kRows; ++i) a[at(i, j)] += bias[i];
  append(a);
  a = random_floats(block, 3);
  for (int j = 0; j < kCols; ++j)
    for (int i = 0; i < kRows; ++i) {
      const float z = a[at(i, j)] + bias[i];
      a[at(i, j)] = z > 0 ? z : 0;
    }
  append(a);
  for (int kind = 0; kind < 3; ++kind) {
    std::vector<float> d = random_floats(block, 4);
    std::fill(db.begin(), db.end(), 0.0f);
    for (int j = 0; j < kCols; ++j)
      for (int i = 0; i < kRows; ++i) {
        float& v = d[at(i, j)];
        const float f = x[at(i, j)];
        if (kind == 0) v = f > 0 ? v : 0;
        if (kind == 1) v = v * (1.0f - f * f);
        if (kind == 2) v = v * f;
        db[i] += v;
      }
    append(d);
    append(db);
  }
  a = random_floats(block, 3);
  for (int j = 0; j < kCols; ++j)
    for (int i = 0; i < kRows; ++i) a[at(i, j)] = a[at(i, j)] > 0 ? a[at(i, j)] : 0;
  append(a);
  std::vector<float> d = random_floats(block, 4);
  for (int j = 0; j < kCols; ++j)
    for (int i = 0; i < kRows; ++i) d[at(i, j)] = x[at(i, j)] > 0 ? d[at(i, j)] : 0;
  append(d);
  return out;
}

TEST_F(VectorPathTest, DetectionIsAPureFunctionOfTheCpuAndNamed) {
  const VectorPath p = detect_vector_path();
  EXPECT_EQ(detect_vector_path(), p);
  EXPECT_EQ(vector_path(), p);
  EXPECT_TRUE(vector_path_supported(VectorPath::kGeneric));
  EXPECT_STREQ(vector_path_name(VectorPath::kGeneric), "generic");
  EXPECT_STREQ(vector_path_name(VectorPath::kAvx2), "avx2");
  EXPECT_STREQ(vector_path_name(VectorPath::kAvx512), "avx512");
#if defined(__x86_64__)
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
      __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq")) {
    EXPECT_EQ(p, VectorPath::kAvx512);
  } else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
    EXPECT_EQ(p, VectorPath::kAvx2);
  }
#endif
  std::printf("this CPU's vector path: %s\n", vector_path_name(p));
}

TEST_F(VectorPathTest, AnUnsupportedPathIsRefusedAndChangesNothing) {
  ASSERT_TRUE(set_vector_path(VectorPath::kGeneric).ok());
  EXPECT_EQ(vector_path(), VectorPath::kGeneric);
  for (VectorPath p : kAllPaths) {
    if (vector_path_supported(p)) continue;
    const Status s = set_vector_path(p);
    ASSERT_FALSE(s.ok());
    EXPECT_NE(s.message().find(vector_path_name(p)), std::string::npos) << s.message();
    EXPECT_EQ(vector_path(), VectorPath::kGeneric);
  }
}

TEST_F(VectorPathTest, EveryPathGivesTheReferenceBitsRunAfterRun) {
  const std::vector<float> want = reference_kernels();
  std::vector<float> tanh_generic;
  for (VectorPath p : kAllPaths) {
    if (!vector_path_supported(p)) {
      std::printf("skipping %s: not on this CPU\n", vector_path_name(p));
      continue;
    }
    std::vector<float> tanh_first, tanh_again;
    const std::vector<float> first = run_kernels(p, tanh_first);
    EXPECT_TRUE(same_bits(first, want)) << vector_path_name(p);
    EXPECT_TRUE(same_bits(run_kernels(p, tanh_again), first))
        << vector_path_name(p) << " run to run";
    EXPECT_TRUE(same_bits(tanh_again, tanh_first)) << vector_path_name(p) << " tanh run to run";
    if (p == VectorPath::kGeneric) tanh_generic = tanh_first;
    EXPECT_TRUE(same_bits(tanh_first, tanh_generic)) << vector_path_name(p) << " tanh";
    // Against std::tanh, element by element (the padding rows are the input, untouched).
    const std::vector<float> bias = random_floats(kRows, 1),
                             in = random_floats(tanh_first.size(), 3);
    for (std::size_t k = 0; k < in.size(); ++k) {
      const int i = static_cast<int>(k % kLd);
      const float want_t = i < kRows ? std::tanh(in[k] + bias[static_cast<std::size_t>(i)]) : in[k];
      ASSERT_NEAR(tanh_first[k], want_t, 2e-6f) << vector_path_name(p) << " element " << k;
    }
  }
}

TEST_F(VectorPathTest, KernelsLeaveThePaddingRowsAlone) {
  for (VectorPath p : kAllPaths) {
    if (!vector_path_supported(p)) continue;
    ASSERT_TRUE(set_vector_path(p).ok());
    std::vector<float> a(static_cast<std::size_t>(kLd) * kCols, 7.0f), db(kRows);
    const std::vector<float> b(kRows, -1.0f);
    kernels::bias_relu(a.data(), kLd, b.data(), kRows, kCols);
    const std::vector<float> out = a;  // the relu's output, as backward reads it
    kernels::relu_backward(a.data(), kLd, out.data(), kLd, kRows, kCols, db.data());
    for (int j = 0; j < kCols; ++j)
      for (int i = 0; i < kLd; ++i)
        ASSERT_EQ(a[static_cast<std::size_t>(j) * kLd + i], i < kRows ? 6.0f : 7.0f)
            << vector_path_name(p) << " row " << i << " col " << j;
    for (float s : db) EXPECT_EQ(s, 6.0f * kCols);
  }
}

// Ten optimizer steps from fixed state on `path`: the parameters and both moments.
std::vector<float> run_optimizer(VectorPath path, OptimizerKind kind, float weight_decay,
                                 float clip) {
  EXPECT_TRUE(set_vector_path(path).ok());
  constexpr int kParams = 1000 + 13;  // a partial vector at the end for every width
  OptimizerOptions o;
  o.kind = kind;
  o.weight_decay = weight_decay;
  o.grad_clip = clip;
  std::unique_ptr<Optimizer> opt;
  EXPECT_TRUE(make_optimizer(o, kParams, &opt).ok());
  const std::vector<float> p0 = random_floats(kParams, 5);
  Eigen::VectorXf params = Eigen::Map<const Eigen::VectorXf>(p0.data(), kParams);
  for (int t = 0; t < 10; ++t) {
    const std::vector<float> g = random_floats(kParams, 100 + t);
    opt->step(params, Eigen::Map<const Eigen::VectorXf>(g.data(), kParams), 0.01f);
  }
  OptimizerState state;
  opt->save_state(&state);
  std::vector<float> out(params.data(), params.data() + kParams);
  for (const auto& b : state.buffers) out.insert(out.end(), b.data(), b.data() + b.size());
  return out;
}

TEST_F(VectorPathTest, AdamGivesTheSameBitsOnEveryPath) {
  struct Case {
    OptimizerKind kind;
    float weight_decay, clip;
  };
  // Each of the fused pass's four forms: plain, L2 (scaled), clipped (scaled), decoupled (keep).
  const Case cases[] = {{OptimizerKind::kAdam, 0.0f, 0.0f},
                        {OptimizerKind::kAdam, 0.01f, 0.0f},
                        {OptimizerKind::kAdam, 0.0f, 1.0f},
                        {OptimizerKind::kAdamW, 0.01f, 1.0f}};
  for (const Case& c : cases) {
    const std::vector<float> generic =
        run_optimizer(VectorPath::kGeneric, c.kind, c.weight_decay, c.clip);
    for (VectorPath p : kAllPaths) {
      if (!vector_path_supported(p)) continue;
      const std::vector<float> got = run_optimizer(p, c.kind, c.weight_decay, c.clip);
      EXPECT_TRUE(same_bits(got, generic))
          << vector_path_name(p) << " wd " << c.weight_decay << " clip " << c.clip;
      EXPECT_TRUE(same_bits(run_optimizer(p, c.kind, c.weight_decay, c.clip), got))
          << vector_path_name(p) << " run to run";
    }
  }
}

// One forward/backward pass of a two-hidden-layer MLP on `path`: the loss, then the gradient.
std::vector<float> run_mlp(VectorPath path, Activation activation, float dropout) {
  EXPECT_TRUE(set_vector_path(path).ok());
  constexpr int kInputs = 19, kBatch = 11;
  MlpShape shape;
  shape.inputs = kInputs;
  shape.hidden = {37, 21};
  shape.outputs = 4;
  shape.head = Head::kSoftmaxCe;
  shape.activation = activation;
  shape.dropout = dropout;
  Mlp mlp(shape, kBatch);
  mlp.init(17);
  const std::vector<float> xs = random_floats(static_cast<std::size_t>(kInputs) * kBatch, 6);
  const Eigen::Map<const Eigen::MatrixXf> x(xs.data(), kInputs, kBatch);
  std::vector<std::int32_t> labels;
  std::vector<std::int64_t> rows;
  for (int j = 0; j < kBatch; ++j) {
    labels.push_back(j % 4);
    rows.push_back(500 + 3 * j);
  }
  mlp.grads().setZero();
  const double loss =
      mlp.forward_backward(x, std::span<const std::int32_t>(labels),
                           BatchKey{7, std::span<const std::int64_t>(rows)}, 1.0f / kBatch);
  std::vector<float> out = {static_cast<float>(loss)};
  out.insert(out.end(), mlp.grads().data(), mlp.grads().data() + mlp.num_params());
  return out;
}

TEST_F(VectorPathTest, AForwardBackwardPassGivesTheSameBitsOnEveryPath) {
  const Activation activations[] = {Activation::kRelu, Activation::kTanh, Activation::kGelu};
  for (Activation a : activations)
    for (float dropout : {0.0f, 0.25f}) {
      const std::vector<float> generic = run_mlp(VectorPath::kGeneric, a, dropout);
      for (VectorPath p : kAllPaths) {
        if (!vector_path_supported(p)) continue;
        const std::vector<float> got = run_mlp(p, a, dropout);
        EXPECT_TRUE(same_bits(got, generic)) << vector_path_name(p) << " activation "
                                             << static_cast<int>(a) << " dropout " << dropout;
        EXPECT_TRUE(same_bits(run_mlp(p, a, dropout), got)) << vector_path_name(p);
      }
    }
}

}  // namespace
}  // namespace trellis::worker
