// The training step's non-GEMM work on each vector path (worker/kernels/vector_path.h), on one
// pinned core: the 784-256-128-10 relu MLP, batch 128, Adam. Per repetition, every path this CPU
// has is measured in turn (interleaved, so load from other processes hits all of them alike):
//   elementwise: the step's bias+relu, bias, relu-backward+colsum passes (kernels/elementwise.h)
//   adam:        one fused Adam pass over the 235,146 parameters
//   step:        Mlp::forward_backward + Adam, the whole step minus the data gather
//   gemm:        the step's eight products alone (Eigen -> the linked BLAS), path-independent
// and the medians over repetitions are printed with their min-max. The peer of each path is the
// generic (baseline SSE2) path in the same run. The code before the vector paths ran the
// elementwise passes as SSE2 Eigen loops and Adam on AVX, so "before" is reported as the generic
// elementwise time plus the avx2 path's Adam (the same AVX kernel).
// Last line: one JSON object.

#include "worker/kernels/vector_path.h"

#include <sched.h>

#include <Eigen/Core>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "worker/kernels/elementwise.h"
#include "worker/kernels/float_mode.h"
#include "worker/kernels/gemm.h"
#include "worker/models/mlp.h"
#include "worker/optimizer.h"

namespace {

namespace tw = trellis::worker;
using Clock = std::chrono::steady_clock;

constexpr int kInputs = 784, kClasses = 10, kBatch = 128;
const std::vector<int> kHidden = {256, 128};

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// Mean microseconds of `iters` calls of f.
template <typename F>
double time_us(int iters, F&& f) {
  const auto t0 = Clock::now();
  for (int i = 0; i < iters; ++i) f();
  return std::chrono::duration<double, std::micro>(Clock::now() - t0).count() / iters;
}

struct Sample {
  double elementwise = 0, adam = 0, step = 0;
};

struct Stats {
  double median, min, max;
};
Stats stats(const std::vector<double>& v) {
  return {median(v), *std::min_element(v.begin(), v.end()), *std::max_element(v.begin(), v.end())};
}

}  // namespace

int main(int argc, char** argv) {
  int reps = 7, core = 0, iters = 200;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    const bool has_value = i + 1 < argc;
    if (a == "--reps" && has_value)
      reps = std::max(1, std::atoi(argv[++i]));
    else if (a == "--core" && has_value)
      core = std::atoi(argv[++i]);
    else if (a == "--iters" && has_value)
      iters = std::max(1, std::atoi(argv[++i]));
    else {
      std::fprintf(stderr, "usage: bench_vector_path [--reps N] [--core N] [--iters N]\n");
      return 2;
    }
  }
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(core, &set);
  if (sched_setaffinity(0, sizeof set, &set) != 0)
    std::fprintf(stderr, "bench_vector_path: could not pin to core %d\n", core);
  // One GEMM thread on the pinned core (oneDNN's OpenMP pool would start one per core), and
  // denormals flushed as the trainer's thread has them: without, Intel's microcode assists on
  // the subnormal values a long run of steps produces made the step 3-4x slower here.
  trellis::worker::kernels::set_gemm_threads(1);
  trellis::worker::kernels::flush_denormals_in_this_thread();

  std::vector<tw::VectorPath> paths;
  for (tw::VectorPath p :
       {tw::VectorPath::kGeneric, tw::VectorPath::kAvx2, tw::VectorPath::kAvx512})
    if (tw::vector_path_supported(p)) paths.push_back(p);

  std::mt19937_64 rng(1);
  std::uniform_real_distribution<float> u(0.0f, 1.0f);
  Eigen::MatrixXf x(kInputs, kBatch);
  for (Eigen::Index i = 0; i < x.size(); ++i) x.data()[i] = u(rng);
  std::vector<std::int32_t> labels(kBatch);
  for (auto& y : labels) y = static_cast<std::int32_t>(rng() % kClasses);

  tw::MlpShape shape;
  shape.inputs = kInputs;
  shape.hidden = kHidden;
  shape.outputs = kClasses;
  shape.activation = tw::Activation::kRelu;
  tw::Mlp model(shape, kBatch);
  model.init(1);
  std::unique_ptr<tw::Optimizer> adam;
  if (!tw::make_optimizer(tw::OptimizerOptions{}, model.num_params(), &adam).ok()) return 1;
  // A separate Adam and parameter copy for the isolated pass, so the step's model is untouched.
  std::unique_ptr<tw::Optimizer> adam_alone;
  if (!tw::make_optimizer(tw::OptimizerOptions{}, model.num_params(), &adam_alone).ok()) return 1;
  Eigen::VectorXf params = model.params(), grads = Eigen::VectorXf::Random(model.num_params());

  // The elementwise passes' buffers at the step's shapes (hidden 256 and 128, logits 10).
  Eigen::MatrixXf a0 = Eigen::MatrixXf::Random(256, kBatch),
                  a1 = Eigen::MatrixXf::Random(128, kBatch),
                  a2 = Eigen::MatrixXf::Random(kClasses, kBatch);
  Eigen::MatrixXf d0 = Eigen::MatrixXf::Random(256, kBatch),
                  d1 = Eigen::MatrixXf::Random(128, kBatch);
  const Eigen::VectorXf b0 = Eigen::VectorXf::Random(256), b1 = Eigen::VectorXf::Random(128),
                        b2 = Eigen::VectorXf::Random(kClasses);
  Eigen::VectorXf db(256);
  auto elementwise = [&] {
    tw::kernels::bias_relu(a0.data(), 256, b0.data(), 256, kBatch);
    tw::kernels::bias_relu(a1.data(), 128, b1.data(), 128, kBatch);
    tw::kernels::bias_add(a2.data(), kClasses, b2.data(), kClasses, kBatch);
    tw::kernels::relu_backward(d1.data(), 128, a1.data(), 128, 128, kBatch, db.data());
    tw::kernels::relu_backward(d0.data(), 256, a0.data(), 256, 256, kBatch, db.data());
  };
  auto step = [&] {
    model.grads().setZero();
    (void)model.forward_backward(x, std::span<const std::int32_t>(labels), 1.0f / kBatch);
    adam->step(model.params(), model.grads());
  };
  // The step's products alone: forward W x (3), dW = delta a^T (3), dX = W^T delta (2).
  std::vector<Eigen::MatrixXf> w, act, dl, dw;
  std::vector<int> widths = {kInputs, 256, 128, kClasses};
  for (int l = 0; l < 3; ++l) {
    w.push_back(Eigen::MatrixXf::Random(widths[l + 1], widths[l]));
    dw.push_back(Eigen::MatrixXf::Zero(widths[l + 1], widths[l]));
    act.push_back(Eigen::MatrixXf::Random(widths[l + 1], kBatch));
    dl.push_back(Eigen::MatrixXf::Random(widths[l + 1], kBatch));
  }
  Eigen::MatrixXf prev0(256, kBatch), prev1(128, kBatch);
  auto gemm = [&] {
    act[0].noalias() = w[0] * x;
    act[1].noalias() = w[1] * act[0];
    act[2].noalias() = w[2] * act[1];
    dw[2].noalias() = dl[2] * act[1].transpose();
    prev1.noalias() = w[2].transpose() * dl[2];
    dw[1].noalias() = dl[1] * act[0].transpose();
    prev0.noalias() = w[1].transpose() * dl[1];
    dw[0].noalias() = dl[0] * x.transpose();
  };

  // Warm-up on every path.
  for (tw::VectorPath p : paths) {
    if (!tw::set_vector_path(p).ok()) return 1;
    time_us(iters / 4 + 1, elementwise);
    time_us(iters / 4 + 1, [&] { adam_alone->step(params, grads, 1e-3f); });
    time_us(20, step);
  }
  time_us(20, gemm);

  std::map<tw::VectorPath, std::vector<Sample>> samples;
  std::vector<double> gemm_us;
  for (int r = 0; r < reps; ++r) {
    for (tw::VectorPath p : paths) {
      if (!tw::set_vector_path(p).ok()) return 1;
      Sample s;
      s.elementwise = time_us(iters, elementwise);
      s.adam = time_us(iters, [&] { adam_alone->step(params, grads, 1e-3f); });
      s.step = time_us(iters / 4 + 1, step);
      samples[p].push_back(s);
    }
    gemm_us.push_back(time_us(iters / 4 + 1, gemm));
  }
  if (!tw::set_vector_path(tw::detect_vector_path()).ok()) return 1;

  std::printf(
      "one core (%d) pinned, batch %d, 784-256-128-10 relu + Adam, %d interleaved reps, "
      "microseconds per step: median [min-max]\n",
      core, kBatch, reps);
  std::printf("%-8s %-24s %-24s %-24s\n", "path", "elementwise", "adam", "step (no gather)");
  nlohmann::json out;
  nlohmann::json per_path = nlohmann::json::object();
  std::map<tw::VectorPath, Stats> ew, ad, st;
  for (tw::VectorPath p : paths) {
    std::vector<double> e, a, s;
    for (const Sample& x : samples[p]) {
      e.push_back(x.elementwise);
      a.push_back(x.adam);
      s.push_back(x.step);
    }
    ew[p] = stats(e);
    ad[p] = stats(a);
    st[p] = stats(s);
    auto cell = [](const Stats& v) {
      char buf[64];
      std::snprintf(buf, sizeof buf, "%.1f [%.1f-%.1f]", v.median, v.min, v.max);
      return std::string(buf);
    };
    std::printf("%-8s %-24s %-24s %-24s\n", tw::vector_path_name(p), cell(ew[p]).c_str(),
                cell(ad[p]).c_str(), cell(st[p]).c_str());
    per_path[tw::vector_path_name(p)] = {{"elementwise_us", ew[p].median},
                                         {"adam_us", ad[p].median},
                                         {"step_us", st[p].median},
                                         {"step_us_min", st[p].min},
                                         {"step_us_max", st[p].max}};
  }
  const Stats g = stats(gemm_us);
  std::printf("gemm alone (same products, path-independent): %.1f [%.1f-%.1f]\n", g.median, g.min,
              g.max);
  const tw::VectorPath best = tw::detect_vector_path(), gen = tw::VectorPath::kGeneric;
  // Before the vector paths: SSE2 elementwise loops and the AVX Adam (the avx2 path's kernel).
  const tw::VectorPath old_adam =
      tw::vector_path_supported(tw::VectorPath::kAvx2) ? tw::VectorPath::kAvx2 : gen;
  const double before = ew[gen].median + ad[old_adam].median;
  const double after = ew[best].median + ad[best].median;
  std::printf("vectorised non-GEMM work (elementwise + adam): before %.1f us, %s %.1f us: %.2fx\n",
              before, tw::vector_path_name(best), after, before / after);
  std::printf("step minus gemm alone: generic %.1f us, %s %.1f us\n", st[gen].median - g.median,
              tw::vector_path_name(best), st[best].median - g.median);
  out["vector_path"] = tw::vector_path_name(best);
  out["paths"] = per_path;
  out["gemm_us"] = g.median;
  out["non_gemm_before_us"] = before;
  out["non_gemm_after_us"] = after;
  out["non_gemm_speedup"] = before / after;
  out["adam_speedup_vs_generic"] = ad[gen].median / ad[best].median;
  out["elementwise_speedup_vs_generic"] = ew[gen].median / ew[best].median;
  out["step_speedup_vs_generic"] = st[gen].median / st[best].median;
  out["reps"] = reps;
  out["core"] = core;
  std::printf("%s\n", out.dump().c_str());
  return 0;
}
