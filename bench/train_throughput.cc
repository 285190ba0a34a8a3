// bench_train_throughput: training throughput of the real Mlp + Adam on one pinned core, against
// the core's physical FMA peak, against the chosen GEMM alone at the model's shapes, and against
// PyTorch at its best on the same core, all measured in the same run.
//
// Model 784-256-128-10 relu, batch 128, fp32, Adam, Fashion-MNIST's 60000 training rows. One
// rank, one core (core 0 unless --core), GEMM threads 1, denormals flushed (as the trainer).
//
// Peak: register-only FMA loops (12 independent accumulators, no memory traffic) compiled per
// function for SSE2 (mul+add), AVX2+FMA and AVX-512F with target attributes (no global -march),
// run only for the ISAs cpuid reports; the fastest is the denominator, printed with the clock it
// implies assuming two FMA pipes of that width (on Zen 4 AVX-512 is double-pumped: no faster).
// GEMM alone: the 8 products of one step through worker/kernels/gemm at batch 128.
// PyTorch (bench/train_throughput_torch.py): same model, batch, Adam, data, warm-up,
// set_num_threads(1), set_flush_denormal(True); its nn.Linear runs on the system OpenBLAS, so
// first every OPENBLAS_CORETYPE in kCoreTypes is timed at its Linear shapes in this run and the
// fastest is given to its process, with its large allocations on 2 MB pages as our shard is
// (kPeerHugePages). Then --reps repetitions (>= 5) of one epoch of ours and one
// of PyTorch's alternate on the same core; medians and min..max are printed.
//
//   bench_train_throughput [--reps N>=5] [--core N] [--data DIR] [--no-torch] [--python EXE]
//
// FLOP per sample: 2 * (forward MACs + weight-gradient MACs + input-gradient MACs except the
// first layer's) = 1.007 MFLOP for 784-256-128-10; biases and elementwise work are not counted.
// Last line: {"samples_per_s", "gflops", "fma_peak_gflops", "ratio_to_fma_peak",
// "gemm_alone_gflops", "ratio_to_gemm_alone", "gemm_library", "pytorch_samples_per_s",
// "ratio_to_pytorch", "pytorch_coretype", ...}.

#include <sched.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <numeric>
#include <random>
#include <span>
#include <string>
#include <vector>

#include <Eigen/Core>
#include <immintrin.h>
#include <nlohmann/json.hpp>

#include "worker/data/batch_gather.h"
#include "worker/data/idx_reader.h"
#include "worker/kernels/float_mode.h"
#include "worker/kernels/gemm.h"
#include "worker/models/mlp.h"
#include "worker/optimizer.h"

namespace tw = trellis::worker;
using Clock = std::chrono::steady_clock;

namespace {

constexpr int kBatch = 128;
constexpr int kWarmupSteps = 100;
const std::vector<int> kHidden = {256, 128};

double seconds(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// Multiply-adds of one sample's forward + backward, the same count the brief's 1.007 MFLOP is.
double flop_per_sample(int inputs, const std::vector<int>& hidden, int outputs) {
  std::vector<int> widths{inputs};
  widths.insert(widths.end(), hidden.begin(), hidden.end());
  widths.push_back(outputs);
  double macs = 0;
  for (std::size_t l = 0; l + 1 < widths.size(); ++l) {
    const double m = double{1} * widths[l] * widths[l + 1];
    macs += l == 0 ? 2 * m : 3 * m;  // forward, dW, and dX except for the input layer
  }
  return 2 * macs;
}

constexpr int kAcc = 12;              // independent accumulators: > FMA latency x pipes
constexpr long kFmaIters = 1'000'000;  // per timing, a few ms: short enough to fit between preemptions

// Each returns a value derived from every accumulator so the loop cannot be dropped.
__attribute__((target("sse2"))) float loop_sse(long iters) {
  __m128 acc[kAcc];
  for (int i = 0; i < kAcc; ++i) acc[i] = _mm_set1_ps(1.0f + 1e-3f * i);
  const __m128 m = _mm_set1_ps(0.999999f), c = _mm_set1_ps(1e-7f);
  for (long it = 0; it < iters; ++it)
#pragma GCC unroll 12  // unrolled, the accumulators live in registers, not on the stack
    for (int i = 0; i < kAcc; ++i) acc[i] = _mm_add_ps(_mm_mul_ps(acc[i], m), c);
  __m128 s = acc[0];
  for (int i = 1; i < kAcc; ++i) s = _mm_add_ps(s, acc[i]);
  return _mm_cvtss_f32(s);
}
__attribute__((target("avx2,fma"))) float loop_avx2(long iters) {
  __m256 acc[kAcc];
  for (int i = 0; i < kAcc; ++i) acc[i] = _mm256_set1_ps(1.0f + 1e-3f * i);
  const __m256 m = _mm256_set1_ps(0.999999f), c = _mm256_set1_ps(1e-7f);
  for (long it = 0; it < iters; ++it)
#pragma GCC unroll 12  // unrolled, the accumulators live in registers, not on the stack
    for (int i = 0; i < kAcc; ++i) acc[i] = _mm256_fmadd_ps(acc[i], m, c);
  __m256 s = acc[0];
  for (int i = 1; i < kAcc; ++i) s = _mm256_add_ps(s, acc[i]);
  return _mm256_cvtss_f32(s);
}
__attribute__((target("avx512f"))) float loop_avx512(long iters) {
  __m512 acc[kAcc];
  for (int i = 0; i < kAcc; ++i) acc[i] = _mm512_set1_ps(1.0f + 1e-3f * i);
  const __m512 m = _mm512_set1_ps(0.999999f), c = _mm512_set1_ps(1e-7f);
  for (long it = 0; it < iters; ++it)
#pragma GCC unroll 12  // unrolled, the accumulators live in registers, not on the stack
    for (int i = 0; i < kAcc; ++i) acc[i] = _mm512_fmadd_ps(acc[i], m, c);
  __m512 s = acc[0];
  for (int i = 1; i < kAcc; ++i) s = _mm512_add_ps(s, acc[i]);
  alignas(64) float lanes[16];
  _mm512_store_ps(lanes, s);
  return lanes[0] + lanes[15];
}

struct FmaIsa {
  const char* name;
  bool present;
  int lanes;  // floats per vector
  float (*loop)(long);
};

volatile float g_sink;

// GFLOP/s of one ISA's loop, best of `reps`: 2 flops (mul + add) per lane per accumulator.
double fma_gflops(const FmaIsa& isa, int reps) {
  double best = 1e30;
  for (int r = 0; r < reps; ++r) {
    const auto t0 = Clock::now();
    g_sink = isa.loop(kFmaIters);
    best = std::min(best, seconds(t0, Clock::now()));
  }
  return 2.0 * isa.lanes * kAcc * static_cast<double>(kFmaIters) / best * 1e-9;
}

// The step's 8 products at batch 128 through the trainer's GEMM, GFLOP/s (best of `reps`).
double gemm_alone_gflops(const std::vector<int>& widths, int reps) {
  struct Product { int m, n, k; bool ta, tb; float beta; };
  std::vector<Product> ps;
  for (std::size_t l = 0; l + 1 < widths.size(); ++l) {
    const int in = widths[l], out = widths[l + 1];
    ps.push_back({out, kBatch, in, false, false, 0.0f});             // forward
    ps.push_back({out, in, kBatch, false, true, 0.0f});              // dW
    if (l > 0) ps.push_back({in, kBatch, out, true, false, 0.0f});  // dX
  }
  std::vector<std::vector<float>> a, b, c;
  double flop = 0;
  for (const Product& p : ps) {
    a.emplace_back(static_cast<std::size_t>(p.m) * p.k, 0.01f);
    b.emplace_back(static_cast<std::size_t>(p.k) * p.n, 0.02f);
    c.emplace_back(static_cast<std::size_t>(p.m) * p.n, 0.0f);
    flop += 2.0 * p.m * p.n * p.k;
  }
  const auto once = [&] {
    for (std::size_t i = 0; i < ps.size(); ++i) {
      const Product& p = ps[i];
      trellis::worker::kernels::gemm(p.ta, p.tb, p.m, p.n, p.k, a[i].data(), p.ta ? p.k : p.m,
                             b[i].data(), p.tb ? p.n : p.k, p.beta, c[i].data(), p.m);
    }
  };
  once();
  double best = 1e30;
  for (int r = 0; r < reps; ++r) {
    const auto t0 = Clock::now();
    for (int i = 0; i < 20; ++i) once();
    best = std::min(best, seconds(t0, Clock::now()) / 20);
  }
  return flop / best * 1e-9;
}

struct Data {
  tw::IdxRows rows;
};

trellis::Status load(const std::string& dir, Data* out) {
  tw::IdxInfo info;
  trellis::Status s = tw::read_idx_info(dir, tw::IdxSplit::kTrain, &info);
  if (!s.ok()) return s;
  s = tw::read_idx_rows(info, trellis::RowRange{0, info.rows}, &out->rows);
  if (s.ok()) tw::back_with_huge_pages(&out->rows.images);  // as the trainer does
  return s;
}

// Where each step's time goes, summed over the timed epochs.
struct StepTimes {
  double gather = 0, forward_backward = 0, optimizer = 0;
};

// One epoch of the trainer's step: gather a shuffled batch, forward_backward writing the
// gradient (GradMode::kAssign; with `accumulate`, the older zero-then-accumulate form),
// optimizer step. Returns samples trained.
std::int64_t run_epoch(const Data& d, tw::Mlp& model, tw::Optimizer& opt, Eigen::MatrixXf& batch,
                       std::vector<std::int32_t>& labels, std::mt19937_64& rng, int max_steps,
                       StepTimes* times, bool accumulate) {
  const auto rows = static_cast<std::int64_t>(d.rows.labels.size());
  std::vector<std::int64_t> order(static_cast<std::size_t>(rows));
  std::iota(order.begin(), order.end(), std::int64_t{0});
  std::shuffle(order.begin(), order.end(), rng);
  const std::int64_t steps = std::min<std::int64_t>(rows / kBatch, max_steps);
  const float scale = 1.0f / kBatch;
  for (std::int64_t s = 0; s < steps; ++s) {
    const auto t0 = Clock::now();
    const std::span<const std::int64_t> columns(order.data() + s * kBatch, kBatch);
    tw::gather_columns(d.rows.images, columns, &batch);
    for (int j = 0; j < kBatch; ++j)
      labels[static_cast<std::size_t>(j)] =
          d.rows.labels[static_cast<std::size_t>(columns[static_cast<std::size_t>(j)])];
    const auto t1 = Clock::now();
    if (accumulate) model.grad_buffer().setZero();
    model.forward_backward(batch, std::span<const std::int32_t>(labels.data(), kBatch),
                           tw::BatchKey{}, scale,
                           accumulate ? tw::GradMode::kAccumulate : tw::GradMode::kAssign);
    const auto t2 = Clock::now();
    opt.step(model.params(), model.grads());
    const auto t3 = Clock::now();
    if (times) {
      times->gather += seconds(t0, t1);
      times->forward_backward += seconds(t1, t2);
      times->optimizer += seconds(t2, t3);
    }
  }
  return steps * kBatch;
}

// OpenBLAS kernels the PyTorch peer's BLAS is tried with ("" = its own detection).
const std::vector<std::string> kCoreTypes = {"", "SkylakeX", "Cooperlake", "Haswell", "Zen",
                                             "Sandybridge", "Prescott"};

// Our trainer backs its shard with 2 MB pages (batch_gather.h); the peer gets them through
// glibc's tunable, which puts every large allocation of its process on them (this session's
// Xeon: PyTorch 40.9k samples/s without, 45.3k with).
constexpr const char* kPeerHugePages = "GLIBC_TUNABLES=glibc.malloc.hugetlb=1";

// Runs the peer script on our core (the child inherits the affinity) with `args`, under
// OPENBLAS_CORETYPE=`coretype` when not empty; its last JSON line, or null (message in *why).
nlohmann::json run_torch(const std::string& python, const std::string& coretype,
                         const std::string& args, std::string* why, bool echo) {
  const std::string env =
      (coretype.empty() ? std::string("env -u OPENBLAS_CORETYPE ")
                        : "env OPENBLAS_CORETYPE=" + coretype + " ") +
      kPeerHugePages + " ";
  const std::string cmd = env + python + " " TRELLIS_SOURCE_DIR "/bench/train_throughput_torch.py " +
                          args + " 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) {
    *why = "cannot start " + python;
    return nullptr;
  }
  std::string out, last;
  char line[4096];
  while (std::fgets(line, sizeof line, p)) {
    out += line;
    if (line[0] == '{') last = line;
  }
  const int rc = pclose(p);
  if (echo) std::fputs(out.c_str(), stdout);
  if (rc != 0 || last.empty()) {
    *why = "peer exited with status " + std::to_string(rc) + ": " + out.substr(0, 300);
    return nullptr;
  }
  auto j = nlohmann::json::parse(last, nullptr, false);
  if (j.is_discarded()) {
    *why = "unreadable peer output";
    return nullptr;
  }
  return j;
}

struct Spread {
  double median = 0, min = 0, max = 0;
};
Spread spread(const std::vector<double>& v) {
  return {median(v), *std::min_element(v.begin(), v.end()), *std::max_element(v.begin(), v.end())};
}

}  // namespace

int main(int argc, char** argv) {
  int reps = 5, core = 0;
  bool torch = true;
  std::string data = "/usr/share/datasets/fashion-mnist";
  // Debian's python3-torch lives in the system interpreter's dist-packages; a pyenv or venv
  // python3 earlier in PATH would not see it.
  std::string python = "/usr/bin/python3";
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    const bool has_value = i + 1 < argc;
    if (a == "--reps" && has_value) reps = std::max(5, std::atoi(argv[++i]));
    else if (a == "--core" && has_value) core = std::atoi(argv[++i]);
    else if (a == "--data" && has_value) data = argv[++i];
    else if (a == "--python" && has_value) python = argv[++i];
    else if (a == "--no-torch") torch = false;
    else {
      std::fprintf(stderr,
                   "usage: bench_train_throughput [--reps N>=5] [--core N] [--data DIR] "
                   "[--no-torch] [--python EXE]\n");
      return 2;
    }
  }

  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(core, &set);
  if (sched_setaffinity(0, sizeof set, &set) != 0)
    std::fprintf(stderr, "bench_train_throughput: could not pin to core %d\n", core);
  trellis::worker::kernels::flush_denormals_in_this_thread();
  trellis::worker::kernels::set_gemm_threads(1);
  const trellis::worker::kernels::GemmChoice& g = trellis::worker::kernels::gemm_choice();
  const std::string gemm = g.summary();

  // The physical limit: every vector ISA this CPU has, the fastest taken.
  __builtin_cpu_init();
  const std::vector<FmaIsa> isas = {
      {"sse2 (mul+add)", true, 4, loop_sse},
      {"avx2-fma", __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"), 8, loop_avx2},
      {"avx512f-fma", __builtin_cpu_supports("avx512f") != 0, 16, loop_avx512}};
  double peak = 0;
  std::string peak_isa;
  for (const FmaIsa& isa : isas) {
    if (!isa.present) continue;
    const double gf = fma_gflops(isa, 40);
    // Two pipes, each `lanes` wide, 2 flops per lane per cycle (SSE: one mul + one add pipe).
    const double ghz = gf / (2.0 * 2.0 * isa.lanes);
    std::printf("fma peak %-15s %7.1f GFLOP/s (implies %.2f GHz with 2 pipes of this width)\n",
                isa.name, gf, ghz);
    if (gf > peak) {
      peak = gf;
      peak_isa = isa.name;
    }
  }

  Data d;
  if (trellis::Status s = load(data, &d); !s.ok()) {
    std::fprintf(stderr, "bench_train_throughput: %s\n", s.message().c_str());
    return 1;
  }
  const int inputs = static_cast<int>(d.rows.images.rows());
  std::vector<int> widths{inputs};
  widths.insert(widths.end(), kHidden.begin(), kHidden.end());
  widths.push_back(tw::kIdxClasses);
  const double gemm_alone = gemm_alone_gflops(widths, 5);
  std::printf("gemm alone (the step's 8 products, %s): %.1f GFLOP/s = %.2f of the FMA peak\n",
              gemm.c_str(), gemm_alone, gemm_alone / peak);

  tw::MlpShape shape;
  shape.inputs = inputs;
  shape.hidden = kHidden;
  shape.outputs = tw::kIdxClasses;
  shape.activation = tw::Activation::kRelu;
  tw::Mlp model(shape, kBatch);
  model.init(1);
  tw::OptimizerOptions oo;  // Adam, lr 1e-3
  std::unique_ptr<tw::Optimizer> opt;
  if (trellis::Status s = tw::make_optimizer(oo, model.num_params(), &opt); !s.ok()) {
    std::fprintf(stderr, "bench_train_throughput: %s\n", s.message().c_str());
    return 1;
  }
  Eigen::MatrixXf batch(inputs, kBatch);
  std::vector<std::int32_t> labels(kBatch);
  std::mt19937_64 rng(42);
  const double flop = flop_per_sample(inputs, kHidden, tw::kIdxClasses);
  std::printf("model %d-256-128-10 relu, batch %d, Adam, fp32; %.3f MFLOP/sample; core %d; "
              "gemm %s\n",
              inputs, kBatch, flop * 1e-6, core, gemm.c_str());

  // The peer's best OpenBLAS kernel for its Linear shapes, found in this run.
  std::string coretype;
  std::string why;
  if (torch) {
    double best = 0;
    for (const std::string& ct : kCoreTypes) {
      const nlohmann::json j = run_torch(python, ct, "--probe-blas --batch 128 --hidden 256,128",
                                         &why, false);
      if (j.is_null() || !j.contains("gflops")) {
        std::printf("pytorch blas probe OPENBLAS_CORETYPE=%s: failed (%s)\n",
                    ct.empty() ? "(unset)" : ct.c_str(), why.c_str());
        continue;
      }
      const double gf = j["gflops"].get<double>();
      std::printf("pytorch blas probe OPENBLAS_CORETYPE=%-12s %6.1f GFLOP/s at its Linear shapes\n",
                  ct.empty() ? "(unset)" : ct.c_str(), gf);
      if (gf > best) {
        best = gf;
        coretype = ct;
      }
    }
    if (best == 0) torch = false;
    else std::printf("pytorch runs with OPENBLAS_CORETYPE=%s %s\n",
                     coretype.empty() ? "(unset)" : coretype.c_str(), kPeerHugePages);
  }

  run_epoch(d, model, *opt, batch, labels, rng, kWarmupSteps, nullptr, false);
  std::vector<double> ours, theirs, ratios;
  StepTimes times;
  const std::string torch_args = "--data '" + data + "' --batch " + std::to_string(kBatch) +
                                 " --epochs 1 --warmup-steps " + std::to_string(kWarmupSteps) +
                                 " --hidden 256,128";
  for (int r = 0; r < reps; ++r) {
    const auto t0 = Clock::now();
    const std::int64_t n = run_epoch(d, model, *opt, batch, labels, rng, 1 << 30, &times, false);
    const double rate = static_cast<double>(n) / seconds(t0, Clock::now());
    ours.push_back(rate);
    std::printf("rep %d: ours %.0f samples/s (%.1f GFLOP/s, %.3f of peak)", r + 1, rate,
                rate * flop * 1e-9, rate * flop * 1e-9 / peak);
    if (torch) {
      const nlohmann::json j = run_torch(python, coretype, torch_args, &why, false);
      if (!j.is_null() && j.contains("samples_per_s") && j["samples_per_s"].is_number()) {
        theirs.push_back(j["samples_per_s"].get<double>());
        ratios.push_back(rate / theirs.back());
        std::printf(", pytorch %.0f samples/s, ratio %.2f", theirs.back(), ratios.back());
      } else {
        std::printf(", pytorch failed: %s", why.c_str());
      }
    }
    std::printf("\n");
  }
  const double total = times.gather + times.forward_backward + times.optimizer;
  std::printf("time per step: gather %.1f%%, forward_backward %.1f%%, adam %.1f%%\n",
              100 * times.gather / total, 100 * times.forward_backward / total,
              100 * times.optimizer / total);

  const Spread o = spread(ours);
  const double gflops = o.median * flop * 1e-9;
  std::printf("ours: median %.0f samples/s (min %.0f, max %.0f) over %d reps; %.1f GFLOP/s = "
              "%.3f of the %s FMA peak %.1f, %.3f of GEMM alone\n",
              o.median, o.min, o.max, reps, gflops, gflops / peak, peak_isa.c_str(), peak,
              gflops / gemm_alone);
  nlohmann::json result = {{"bench", "train_throughput"},
                           {"model", "784-256-128-10"},
                           {"batch", kBatch},
                           {"core", core},
                           {"reps", reps},
                           {"gemm_library", g.library},
                           {"gemm_kernel", g.kernel},
                           {"gemm_version", g.version},
                           {"samples_per_s", o.median},
                           {"samples_per_s_min", o.min},
                           {"samples_per_s_max", o.max},
                           {"gflops", gflops},
                           {"fma_peak_gflops", peak},
                           {"fma_peak_isa", peak_isa},
                           {"ratio_to_fma_peak", gflops / peak},
                           {"gemm_alone_gflops", gemm_alone},
                           {"ratio_to_gemm_alone", gflops / gemm_alone},
                           {"pytorch_samples_per_s", nullptr},
                           {"ratio_to_pytorch", nullptr},
                           {"pytorch_coretype", coretype},
                           {"pytorch_env", kPeerHugePages}};
  if (!ratios.empty()) {
    const Spread t = spread(theirs), q = spread(ratios);
    result["pytorch_samples_per_s"] = t.median;
    result["pytorch_samples_per_s_min"] = t.min;
    result["pytorch_samples_per_s_max"] = t.max;
    result["ratio_to_pytorch"] = q.median;
    result["ratio_to_pytorch_min"] = q.min;
    result["ratio_to_pytorch_max"] = q.max;
    std::printf("pytorch (OPENBLAS_CORETYPE=%s, flush_denormal, 1 thread, huge pages): median %.0f samples/s "
                "(min %.0f, max %.0f); ours/pytorch median %.2f (min %.2f, max %.2f)\n",
                coretype.empty() ? "(unset)" : coretype.c_str(), t.median, t.min, t.max, q.median,
                q.min, q.max);
  } else if (torch) {
    std::printf("pytorch peer unavailable: %s\n", why.c_str());
  }
  std::printf("%s\n", result.dump().c_str());
  return 0;
}
