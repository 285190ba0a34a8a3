// bench_cnn_throughput: training throughput of the real Cnn + Adam (examples/fashion-cnn.yaml's
// layers) on one pinned core, against Debian's PyTorch with the same CNN on the same core.
//
// Model conv 32 3x3, relu, pool 2, conv 64 3x3, relu, pool 2, dense 128, relu, dense 10; batch
// 128, fp32, Adam lr 1e-3, Fashion-MNIST's training images. One core (core 0 unless --core),
// GEMM threads 1, denormals flushed on both sides (MXCSR FTZ/DAZ here,
// torch.set_flush_denormal(True) there), the training images on 2 MB pages on both sides (ours
// as the trainer's shard, the peer's large allocations by glibc.malloc.hugetlb). Repetitions are interleaved: each one times --steps
// of ours, then starts the peer (bench/cnn_throughput_torch.py, which warms up and times the
// same number of steps itself). Medians and the min-max spread over --reps.
//
//   bench_cnn_throughput [--reps N>=1] [--steps N] [--core N] [--data DIR] [--python EXE]
//
// Last line: {"bench": "cnn_throughput", "samples_per_s", "pytorch_samples_per_s",
// "ratio_to_pytorch", "ratio_min", "ratio_max", "reps", ...}.

#include <sched.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <numeric>
#include <random>
#include <span>
#include <string>
#include <vector>

#include <Eigen/Core>
#include <nlohmann/json.hpp>

#include "worker/data/batch_gather.h"
#include "worker/data/idx_reader.h"
#include "worker/kernels/float_mode.h"
#include "worker/kernels/gemm.h"
#include "worker/models/cnn.h"
#include "worker/optimizer.h"

namespace tw = trellis::worker;
namespace tk = trellis::worker::kernels;
using Clock = std::chrono::steady_clock;

namespace {

constexpr int kBatch = 128;
constexpr int kWarmupSteps = 10;
constexpr const char* kLayers =
    "conv 32 3x3, relu, pool 2, conv 64 3x3, relu, pool 2, dense 128, relu";

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// Samples/s of `steps` steps (gather, forward_backward, Adam), after `warmup` untimed ones.
double run_ours(const tw::IdxRows& d, tw::Cnn& model, tw::Optimizer& opt, std::mt19937_64& rng,
                int warmup, int steps) {
  Eigen::MatrixXf batch(d.images.rows(), kBatch);
  std::vector<std::int32_t> labels(kBatch);
  std::uniform_int_distribution<std::int64_t> pick(0, d.images.cols() - 1);
  std::vector<std::int64_t> columns(kBatch);
  Clock::time_point start;
  for (int s = 0; s < warmup + steps; ++s) {
    if (s == warmup) start = Clock::now();
    for (std::int64_t& c : columns) c = pick(rng);
    tw::gather_columns(d.images, columns, &batch);  // the trainer's gather
    for (int j = 0; j < kBatch; ++j)
      labels[static_cast<std::size_t>(j)] =
          d.labels[static_cast<std::size_t>(columns[static_cast<std::size_t>(j)])];
    model.forward_backward(batch, std::span<const std::int32_t>(labels), tw::BatchKey{},
                           1.0f / kBatch, tw::GradMode::kAssign);
    opt.step(model.params(), model.grads());
  }
  return steps * kBatch / std::chrono::duration<double>(Clock::now() - start).count();
}

// The peer's samples/s, or a negative number (message in *why).
double run_torch(const std::string& python, const std::string& data, int steps, std::string* why) {
  // Its large allocations on 2 MB pages, as the trainer puts its shard (batch_gather.h).
  const std::string cmd = "env GLIBC_TUNABLES=glibc.malloc.hugetlb=1 " + python +
                          " " TRELLIS_SOURCE_DIR "/bench/cnn_throughput_torch.py" +
                          " --data '" + data + "' --batch " + std::to_string(kBatch) +
                          " --steps " + std::to_string(steps) + " --warmup-steps " +
                          std::to_string(kWarmupSteps) + " 2>&1";
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
  const auto j = nlohmann::json::parse(last, nullptr, false);
  if (rc != 0 || j.is_discarded() || !j.contains("samples_per_s") ||
      !j["samples_per_s"].is_number()) {
    *why = j.is_discarded() ? "peer exited with status " + std::to_string(rc)
                            : j.value("error", "peer gave no rate");
    return -1;
  }
  return j["samples_per_s"].get<double>();
}

}  // namespace

int main(int argc, char** argv) {
  int reps = 5, steps = 60, core = 0;
  std::string data = "/usr/share/datasets/fashion-mnist";
  std::string python = "/usr/bin/python3";  // Debian's torch is in the system interpreter
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    const bool has_value = i + 1 < argc;
    if (a == "--reps" && has_value) reps = std::max(1, std::atoi(argv[++i]));
    else if (a == "--steps" && has_value) steps = std::max(1, std::atoi(argv[++i]));
    else if (a == "--core" && has_value) core = std::atoi(argv[++i]);
    else if (a == "--data" && has_value) data = argv[++i];
    else if (a == "--python" && has_value) python = argv[++i];
    else {
      std::fprintf(stderr,
                   "usage: bench_cnn_throughput [--reps N] [--steps N] [--core N] [--data DIR] "
                   "[--python EXE]\n");
      return 2;
    }
  }
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(core, &set);
  if (sched_setaffinity(0, sizeof set, &set) != 0)
    std::fprintf(stderr, "bench_cnn_throughput: could not pin to core %d\n", core);
  tk::flush_denormals_in_this_thread();  // as the peer's set_flush_denormal
  // One GEMM thread, as the trainer gives a rank on one core: oneDNN's OpenMP pool would
  // otherwise start a thread per core and spin two threads on the pinned one.
  tk::set_gemm_threads(1);
  const std::string blas = tk::gemm_choice().summary();

  tw::IdxInfo info;
  tw::IdxRows d;
  trellis::Status s = tw::read_idx_info(data, tw::IdxSplit::kTrain, &info);
  if (s.ok()) s = tw::read_idx_rows(info, trellis::RowRange{0, info.rows}, &d);
  if (s.ok()) tw::back_with_huge_pages(&d.images);  // as the trainer does
  if (!s.ok()) {
    std::fprintf(stderr, "bench_cnn_throughput: %s\n", s.message().c_str());
    return 1;
  }
  trellis::TrainConfig config;
  config.model = "cnn";
  config.layers = kLayers;
  tw::CnnShape shape;
  s = tw::cnn_shape_from_config(config, info.features(), 10, 0, &shape);
  if (!s.ok()) {
    std::fprintf(stderr, "bench_cnn_throughput: %s\n", s.message().c_str());
    return 1;
  }
  tw::Cnn model(shape, kBatch);
  model.init(1);
  tw::OptimizerOptions opt_options;
  (void)tw::optimizer_options_from_config(config, &opt_options);
  std::unique_ptr<tw::Optimizer> opt;
  s = tw::make_optimizer(opt_options, model.num_params(), &opt);
  if (!s.ok()) return 1;
  std::mt19937_64 rng(3);
  std::printf("cnn %s, %lld params, batch %d, core %d, BLAS %s\n", kLayers,
              static_cast<long long>(model.num_params()), kBatch, core, blas.c_str());
  std::vector<double> ours, theirs, ratios;
  std::string why;
  for (int r = 0; r < reps; ++r) {
    const double a = run_ours(d, model, *opt, rng, r == 0 ? kWarmupSteps : 0, steps);
    const double b = run_torch(python, data, steps, &why);
    std::printf("rep %d: ours %.0f samples/s, pytorch %.0f samples/s\n", r + 1, a, b);
    ours.push_back(a);
    if (b > 0) {
      theirs.push_back(b);
      ratios.push_back(a / b);
    }
  }
  nlohmann::json out = {{"bench", "cnn_throughput"},
                        {"model", "cnn"},
                        {"layers", kLayers},
                        {"blas", blas},
                        {"reps", reps},
                        {"steps", steps},
                        {"core", core},
                        {"samples_per_s", median(ours)},
                        {"samples_per_s_min", *std::min_element(ours.begin(), ours.end())},
                        {"samples_per_s_max", *std::max_element(ours.begin(), ours.end())}};
  if (!ratios.empty()) {
    out["pytorch_samples_per_s"] = median(theirs);
    out["ratio_to_pytorch"] = median(ratios);
    out["ratio_min"] = *std::min_element(ratios.begin(), ratios.end());
    out["ratio_max"] = *std::max_element(ratios.begin(), ratios.end());
  } else {
    out["pytorch_error"] = why;
  }
  std::printf("%s\n", out.dump().c_str());
  return 0;
}
