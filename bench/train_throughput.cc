// bench_train_throughput: training throughput of the real Mlp + Adam on one pinned core,
// against the sgemm peak of that core and against PyTorch, all measured in the same run.
//
// Model 784-256-128-10 relu, batch 128, fp32, Adam, Fashion-MNIST's 60000 training rows. One
// rank, one core (core 0 unless --core), BLAS threads 1. After a warm-up, each timed epoch is
// bracketed by a short n=1024 sgemm through the same GEMM the trainer uses (this file inherits
// trellis_trainer's EIGEN_USE_BLAS, see cmake/Blas.cmake): this host's clock moves a lot
// under a neighbour's load, so each epoch is compared with the peak measured right next to it
// and the medians are reported. Then the PyTorch peer (bench/train_throughput_torch.py, same
// model, batch, Adam and data, torch.set_num_threads(1)) runs on the same core.
//
//   bench_train_throughput [--epochs N] [--core N] [--data DIR] [--no-torch] [--python EXE]
//                          [--accumulate]
//
// --accumulate: zero the gradient buffer and let forward_backward add to it, as the trainer
// did before GradMode::kAssign (for before/after comparisons).
//
// FLOP per sample: 2 * (forward MACs + weight-gradient MACs + input-gradient MACs except the
// first layer's) = 1.007 MFLOP for 784-256-128-10; biases and elementwise work are not counted.
// Last line: {"samples_per_s", "gflops", "peak_gflops", "ratio_to_peak",
// "pytorch_samples_per_s", "ratio_to_pytorch", ...}.

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
#include <nlohmann/json.hpp>

#include "worker/data/idx_reader.h"
#include "worker/models/mlp.h"
#include "worker/optimizer.h"

#ifdef TRELLIS_BLAS_OPENBLAS
extern "C" void openblas_set_num_threads(int);
extern "C" char* openblas_get_corename(void);
#endif

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

// Best of `reps` timings of an n=1024 product, GFLOP/s. Eigen's product here is OpenBLAS's
// sgemm when the trainer is built with TRELLIS_BLAS=openblas, Eigen's own otherwise.
double sgemm_peak(int reps) {
  static Eigen::MatrixXf a = Eigen::MatrixXf::Random(1024, 1024);
  static Eigen::MatrixXf b = Eigen::MatrixXf::Random(1024, 1024);
  static Eigen::MatrixXf c(1024, 1024);
  c.noalias() = a * b;
  double best = 1e30;
  for (int r = 0; r < reps; ++r) {
    const auto t0 = Clock::now();
    c.noalias() = a * b;
    best = std::min(best, seconds(t0, Clock::now()));
  }
  return 2.0 * 1024 * 1024 * 1024 / best * 1e-9;
}

struct Data {
  tw::IdxRows rows;
};

trellis::Status load(const std::string& dir, Data* out) {
  tw::IdxInfo info;
  trellis::Status s = tw::read_idx_info(dir, tw::IdxSplit::kTrain, &info);
  if (!s.ok()) return s;
  return tw::read_idx_rows(info, trellis::RowRange{0, info.rows}, &out->rows);
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
    for (int j = 0; j < kBatch; ++j) {
      const std::int64_t c = order[static_cast<std::size_t>(s * kBatch + j)];
      batch.col(j) = d.rows.images.col(c);
      labels[static_cast<std::size_t>(j)] = d.rows.labels[static_cast<std::size_t>(c)];
    }
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

// Runs the PyTorch peer on our core (the child inherits the affinity); its samples/s, or a
// negative number when it could not run (message in *why).
double run_torch(const std::string& python, const std::string& data, int epochs,
                 std::string* why) {
  const std::string cmd = python + " " TRELLIS_SOURCE_DIR "/bench/train_throughput_torch.py" +
                          " --data '" + data + "' --batch " + std::to_string(kBatch) +
                          " --epochs " + std::to_string(epochs) + " --hidden 256,128 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) {
    *why = "cannot start " + python;
    return -1;
  }
  std::string out, last;
  char line[4096];
  while (std::fgets(line, sizeof line, p)) {
    out += line;
    if (line[0] == '{') last = line;
  }
  const int rc = pclose(p);
  std::fputs(out.c_str(), stdout);
  if (rc != 0 || last.empty()) {
    *why = "peer exited with status " + std::to_string(rc);
    return -1;
  }
  const auto j = nlohmann::json::parse(last, nullptr, false);
  if (j.is_discarded() || !j.contains("samples_per_s") || !j["samples_per_s"].is_number()) {
    *why = j.is_discarded() ? "unreadable peer output" : j.value("error", "peer gave no rate");
    return -1;
  }
  return j["samples_per_s"].get<double>();
}

}  // namespace

int main(int argc, char** argv) {
  int epochs = 2, core = 0;
  bool torch = true, accumulate = false;
  std::string data = "/usr/share/datasets/fashion-mnist";
  // Debian's python3-torch lives in the system interpreter's dist-packages; a pyenv or venv
  // python3 earlier in PATH would not see it.
  std::string python = "/usr/bin/python3";
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    const bool has_value = i + 1 < argc;
    if (a == "--epochs" && has_value) epochs = std::max(2, std::atoi(argv[++i]));
    else if (a == "--core" && has_value) core = std::atoi(argv[++i]);
    else if (a == "--data" && has_value) data = argv[++i];
    else if (a == "--python" && has_value) python = argv[++i];
    else if (a == "--no-torch") torch = false;
    else if (a == "--accumulate") accumulate = true;
    else {
      std::fprintf(stderr,
                   "usage: bench_train_throughput [--epochs N>=2] [--core N] [--data DIR] "
                   "[--no-torch] [--python EXE] [--accumulate]\n");
      return 2;
    }
  }

  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(core, &set);
  if (sched_setaffinity(0, sizeof set, &set) != 0)
    std::fprintf(stderr, "bench_train_throughput: could not pin to core %d\n", core);
  std::string blas = "eigen (" + std::string(Eigen::SimdInstructionSetsInUse()) + ")";
#ifdef TRELLIS_BLAS_OPENBLAS
  openblas_set_num_threads(1);
  blas = std::string("openblas (") + openblas_get_corename() + ")";
#endif

  Data d;
  if (trellis::Status s = load(data, &d); !s.ok()) {
    std::fprintf(stderr, "bench_train_throughput: %s\n", s.message().c_str());
    return 1;
  }
  const int inputs = static_cast<int>(d.rows.images.rows());

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
              inputs, kBatch, flop * 1e-6, core, blas.c_str());
  run_epoch(d, model, *opt, batch, labels, rng, kWarmupSteps, nullptr, accumulate);

  std::vector<double> rates, peaks, ratios;
  StepTimes times;
  double peak_before = sgemm_peak(5);
  for (int e = 0; e < epochs; ++e) {
    const auto t0 = Clock::now();
    const std::int64_t n =
        run_epoch(d, model, *opt, batch, labels, rng, 1 << 30, &times, accumulate);
    const double rate = static_cast<double>(n) / seconds(t0, Clock::now());
    const double peak_after = sgemm_peak(5);
    const double peak = 0.5 * (peak_before + peak_after);
    std::printf("epoch %d: %.0f samples/s, %.1f GFLOP/s, peak %.1f GFLOP/s, ratio %.3f\n", e + 1,
                rate, rate * flop * 1e-9, peak, rate * flop * 1e-9 / peak);
    rates.push_back(rate);
    peaks.push_back(peak);
    ratios.push_back(rate * flop * 1e-9 / peak);
    peak_before = peak_after;
  }
  const double total = times.gather + times.forward_backward + times.optimizer;
  std::printf("time per step: gather %.1f%%, forward_backward %.1f%%, adam %.1f%%\n",
              100 * times.gather / total, 100 * times.forward_backward / total,
              100 * times.optimizer / total);

  const double rate = median(rates), peak = median(peaks), ratio = median(ratios);
  const double gflops = rate * flop * 1e-9;
  nlohmann::json result = {{"bench", "train_throughput"},
                           {"model", "784-256-128-10"},
                           {"batch", kBatch},
                           {"gemm", blas},
                           {"samples_per_s", rate},
                           {"gflops", gflops},
                           {"peak_gflops", peak},
                           {"ratio_to_peak", ratio},
                           {"pytorch_samples_per_s", nullptr},
                           {"ratio_to_pytorch", nullptr}};
  if (torch) {
    std::string why;
    const double theirs = run_torch(python, data, epochs, &why);
    if (theirs > 0) {
      result["pytorch_samples_per_s"] = theirs;
      result["ratio_to_pytorch"] = rate / theirs;
      std::printf("ours/pytorch: %.0f / %.0f samples/s = %.2fx\n", rate, theirs, rate / theirs);
    } else {
      std::printf("pytorch peer unavailable: %s\n", why.c_str());
    }
  }
  std::printf("%s\n", result.dump().c_str());
  return 0;
}
