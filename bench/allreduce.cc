// bench_allreduce: the project's gradient all-reduce (allreduce_gradients, auto path unless
// --algorithm says otherwise) against raw MPI_Allreduce(MPI_IN_PLACE, MPI_SUM) on buffers of
// the same size, in the same run. Start it under mpirun (scripts/bench allreduce does).
//
// Per size: many iterations, ours and MPI's interleaved (alternating which goes first) so
// drift in machine load hits both; each iteration's time is the slowest rank's. That is one
// repetition; --repetitions R (default 5) runs R of them, the sizes swept once per repetition
// so that drift over the run reaches every size alike. A repetition's ratio = MPI's median
// time / our median time (our speed relative to MPI's; 1.0 = parity); a size reports the
// median of its repetitions' ratios with their min and max. On a loaded machine a rank that spins in MPI loses its core for whole time slices,
// which shows as multi-millisecond outliers on large buffers: read those sizes with care. Bus
// bandwidth = 2(n-1)/n * bytes / time, the traffic each rank must move in an optimal
// all-reduce, so figures are comparable across rank counts.
//
// Prints a table, then as its last line one JSON object:
//   {"benchmark": "allreduce", "ranks": 2, "algorithm": "flat", "repetitions": 5,
//    "min_ratio_to_mpi": 0.97, "min_ratio_to_mpi_hierarchical": 0.96,
//    "sizes": [{"bytes": 1024, "iterations": 2000, "ours_us": ..., "mpi_us": ...,
//               "hierarchical_us": ..., "ratio": ..., "ratio_min": ..., "ratio_max": ...,
//               "hierarchical_ratio": ..., "hierarchical_ratio_min": ..., "hierarchical_ratio_max": ...,
//               "ours_busbw_gbps": ..., "mpi_busbw_gbps": ..., "ours_min_us": ...,
//               "mpi_min_us": ..., "ratio_of_mins": ...}, ...]}
// where the _us figures are medians over the repetitions of each repetition's median, and the
// _min_us ones the fastest single iteration of all; "min_ratio_to_mpi" is the requested
// algorithm's (auto: what the group resolves it to), "min_ratio_to_mpi_hierarchical" the
// hierarchical one's. Then "steps": a training step with the gradient reduced fused vs in
// overlapped buckets of several caps (measure_steps below), which is how kGradientBucketBytes
// was chosen.
// Never asserts on time.

#include <mpi.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "worker/collectives.h"
#include "worker/kernels/gemm.h"
#include "worker/models/mlp.h"

namespace {

using namespace trellis;
using namespace trellis::worker;

constexpr std::size_t kMinBytesDefault = 1 << 10;
constexpr std::size_t kMaxBytesDefault = 32 << 20;
constexpr double kSecondsPerSizeDefault = 0.6;
constexpr int kMinIterations = 30;
constexpr int kMaxIterations = 5000;
constexpr int kWarmupIterations = 5;
constexpr int kRefillEvery = 64;  // in-place sums double the values; refill before they overflow
constexpr int kRepetitionsDefault = 5;

struct Args {
  std::size_t min_bytes = kMinBytesDefault;
  std::size_t max_bytes = kMaxBytesDefault;
  double seconds_per_size = kSecondsPerSizeDefault;
  AllreduceAlgorithm algorithm = AllreduceAlgorithm::kAuto;
  int simulated_ranks_per_node = 0;
  int repetitions = kRepetitionsDefault;
};

const char* kUsage =
    "usage: bench_allreduce [--min-bytes N] [--max-bytes N] [--seconds-per-size S] [--repetitions R]\n"
    "                       [--algorithm auto|flat|hierarchical] [--simulated-ranks-per-node K]\n"
    "Run under mpirun, e.g. mpirun -np 2 bench_allreduce. Sizes are the powers of 2 in range.\n";

bool parse_args(int argc, char** argv, Args* args, std::string* error) {
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    if (flag == "--help" || flag == "-h") {
      *error = kUsage;
      return false;
    }
    if (i + 1 >= argc) {
      *error = flag + " needs a value\n" + kUsage;
      return false;
    }
    const std::string value = argv[++i];
    char* end = nullptr;
    if (flag == "--min-bytes") {
      args->min_bytes = std::strtoull(value.c_str(), &end, 10);
    } else if (flag == "--max-bytes") {
      args->max_bytes = std::strtoull(value.c_str(), &end, 10);
    } else if (flag == "--seconds-per-size") {
      args->seconds_per_size = std::strtod(value.c_str(), &end);
    } else if (flag == "--repetitions") {
      args->repetitions = static_cast<int>(std::strtol(value.c_str(), &end, 10));
    } else if (flag == "--simulated-ranks-per-node") {
      args->simulated_ranks_per_node = static_cast<int>(std::strtol(value.c_str(), &end, 10));
    } else if (flag == "--algorithm") {
      if (Status s = parse_allreduce_algorithm(value, &args->algorithm); !s.ok()) {
        *error = s.message() + "\n";
        return false;
      }
      continue;
    } else {
      *error = "unknown flag " + flag + "\n" + kUsage;
      return false;
    }
    if (end == nullptr || *end != '\0') {
      *error = flag + ": bad value '" + value + "'\n";
      return false;
    }
  }
  if (args->min_bytes < sizeof(float) || args->max_bytes < args->min_bytes) {
    *error = "need 4 <= --min-bytes <= --max-bytes\n";
    return false;
  }
  if (args->repetitions < 1) {
    *error = "need --repetitions >= 1\n";
    return false;
  }
  return true;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  return n % 2 == 1 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

void fill(std::vector<float>* buffer, int rank) {
  for (std::size_t i = 0; i < buffer->size(); ++i) {
    (*buffer)[i] = 1e-3f * static_cast<float>((i + static_cast<std::size_t>(rank)) % 97);
  }
}

// One contender: a name and how to sum a buffer in place.
struct Contender {
  const char* name;
  std::function<void(float*, std::size_t)> run;
};

struct Timings {
  std::vector<double> median_s;  // per contender
  std::vector<double> min_s;     // per contender: the undisturbed cost, robust on a busy machine
};

// Medians per contender, in seconds, of `iterations` interleaved rounds; each round's time is
// the slowest rank's.
Timings measure(const std::vector<Contender>& contenders, std::size_t count,
                            int iterations, int rank, MPI_Comm comm) {
  const std::size_t k = contenders.size();
  std::vector<std::vector<float>> buffers(k, std::vector<float>(count));
  for (auto& b : buffers) fill(&b, rank);
  for (int w = 0; w < kWarmupIterations; ++w) {
    for (std::size_t c = 0; c < k; ++c) contenders[c].run(buffers[c].data(), count);
  }
  std::vector<double> local(k * static_cast<std::size_t>(iterations));
  for (int it = 0; it < iterations; ++it) {
    if (it % kRefillEvery == 0) {
      for (auto& b : buffers) fill(&b, rank);
    }
    for (std::size_t j = 0; j < k; ++j) {
      // Rotate the order so neither contender always runs right after the other's traffic.
      const std::size_t c = (j + static_cast<std::size_t>(it)) % k;
      MPI_Barrier(comm);
      const double t0 = MPI_Wtime();
      contenders[c].run(buffers[c].data(), count);
      local[c * static_cast<std::size_t>(iterations) + static_cast<std::size_t>(it)] =
          MPI_Wtime() - t0;
    }
  }
  std::vector<double> slowest(local.size());
  MPI_Allreduce(local.data(), slowest.data(), static_cast<int>(local.size()), MPI_DOUBLE, MPI_MAX,
                comm);
  Timings out;
  const auto n = static_cast<std::size_t>(iterations);
  for (std::size_t c = 0; c < k; ++c) {
    auto first = slowest.begin() + static_cast<std::ptrdiff_t>(c * n);
    out.median_s.push_back(median(std::vector<double>(first, first + iterations)));
    out.min_s.push_back(*std::min_element(first, first + iterations));
  }
  return out;
}

// Iterations that fit the time budget, agreed by every rank (rank 0's estimate decides).
int iterations_for(const Contender& probe, std::size_t count, double budget_s, int contenders,
                   int rank, MPI_Comm comm) {
  std::vector<float> buffer(count);
  fill(&buffer, rank);
  probe.run(buffer.data(), count);  // first touch of the pages and MPI's lazy setup
  MPI_Barrier(comm);
  const double t0 = MPI_Wtime();
  constexpr int kProbes = 5;
  for (int i = 0; i < kProbes; ++i) probe.run(buffer.data(), count);
  double per = (MPI_Wtime() - t0) / kProbes;
  MPI_Bcast(&per, 1, MPI_DOUBLE, 0, comm);
  const double n = budget_s / (per * contenders + 1e-6);
  return std::clamp(static_cast<int>(n), kMinIterations, kMaxIterations);
}

double busbw_gbps(std::size_t bytes, int ranks, double seconds) {
  if (seconds <= 0) return 0;
  return 2.0 * (ranks - 1) / ranks * static_cast<double>(bytes) / seconds / 1e9;
}

std::string human(std::size_t bytes) {
  if (bytes >= (1u << 20)) return std::to_string(bytes >> 20) + " MB";
  if (bytes >= (1u << 10)) return std::to_string(bytes >> 10) + " KB";
  return std::to_string(bytes) + " B";
}

// ---- Part 2: one training step, fused reduction vs overlapped buckets ----
//
// A real Mlp step (784-256-128-10, softmax, relu; 128 / ranks samples per rank: strong scaling
// of batch 128) with its gradient reduced (a) fused: one allreduce_flat after backward, as
// before the overlap, (b) bucketed with each cap in kStepCaps (the default cap among them;
// 4 MiB holds the whole model: one bucket, started after backward, like (a) but through
// MPI_Iallreduce), and (c) not at all (compute alone: the floor). Variants interleave, order
// rotating each iteration; each step's time is the slowest rank's.
constexpr std::size_t kStepCaps[] = {std::size_t{16} << 10, std::size_t{64} << 10,
                                     kGradientBucketBytes, std::size_t{1} << 20,
                                     std::size_t{4} << 20};
constexpr int kStepIterations = 150;
constexpr int kStepGlobalBatch = 128;

struct StepVariant {
  std::string name;
  std::function<void()> run;
};

nlohmann::json measure_steps(const GroupComm& group, int repetitions) {
  // One GEMM thread per rank, as the trainer gives a rank on one core.
  trellis::worker::kernels::set_gemm_threads(1);
  MlpShape shape;
  shape.inputs = 784;
  shape.hidden = {256, 128};
  shape.outputs = 10;
  const int batch = std::max(1, kStepGlobalBatch / group.size());
  Mlp model(shape, batch, /*grad_tail=*/2);
  model.init(7);
  Eigen::MatrixXf x(shape.inputs, batch);
  std::vector<std::int32_t> labels(static_cast<std::size_t>(batch));
  for (int j = 0; j < batch; ++j) {
    labels[static_cast<std::size_t>(j)] = (j * 7 + group.rank()) % shape.outputs;
    for (int i = 0; i < shape.inputs; ++i)
      x(i, j) = static_cast<float>(((i * 31 + j * 17 + group.rank()) % 255)) / 255.0f;
  }
  const float scale = 1.0f / static_cast<float>(kStepGlobalBatch);
  const std::vector<std::size_t> layer_begins = model.grad_ready_offsets();
  const auto count = static_cast<std::size_t>(model.num_params());
  float* buffer = model.grad_buffer().data();
  auto die = [](const Status& s) {
    if (s.ok()) return;
    std::fprintf(stderr, "bench_allreduce: %s\n", s.message().c_str());
    MPI_Abort(MPI_COMM_WORLD, 1);
  };
  auto backward = [&](const Model::GradReady& hook) {
    const double loss = model.forward_backward(x, std::span<const std::int32_t>(labels),
                                               BatchKey{}, scale, GradMode::kAssign, hook);
    buffer[count] = static_cast<float>(loss);
    buffer[count + 1] = 0.0f;
  };
  std::vector<std::unique_ptr<BucketedAllreduce>> reducers;
  std::vector<StepVariant> variants;
  variants.push_back({"compute_only", [&] { backward({}); }});
  variants.push_back({"fused", [&] {
                        backward({});
                        die(allreduce_flat(group, {buffer, count + 2, AllreduceAlgorithm::kFlat}));
                      }});
  std::vector<std::size_t> bucket_counts;
  for (std::size_t cap : kStepCaps) {
    std::vector<std::size_t> plan = plan_gradient_buckets(layer_begins, count, cap);
    bucket_counts.push_back(plan.size());
    reducers.push_back(std::make_unique<BucketedAllreduce>(group, std::move(plan), count));
    BucketedAllreduce* r = reducers.back().get();
    variants.push_back({"buckets_" + std::to_string(cap >> 10) + "k", [&, r] {
                          r->begin(buffer);
                          backward([&, r](std::int64_t final_from) {
                            die(r->ready_from(static_cast<std::size_t>(final_from)));
                          });
                          die(r->finish(2));
                        }});
  }
  const std::size_t k = variants.size();
  for (int w = 0; w < kWarmupIterations; ++w)
    for (auto& v : variants) v.run();
  // [variant][repetition] median step seconds
  std::vector<std::vector<double>> medians(k);
  for (int rep = 0; rep < repetitions; ++rep) {
    std::vector<double> local(k * kStepIterations);
    for (int it = 0; it < kStepIterations; ++it) {
      for (std::size_t j = 0; j < k; ++j) {
        const std::size_t c = (j + static_cast<std::size_t>(it + rep)) % k;
        MPI_Barrier(group.comm());
        const double t0 = MPI_Wtime();
        variants[c].run();
        local[c * kStepIterations + static_cast<std::size_t>(it)] = MPI_Wtime() - t0;
      }
    }
    std::vector<double> slowest(local.size());
    MPI_Allreduce(local.data(), slowest.data(), static_cast<int>(local.size()), MPI_DOUBLE,
                  MPI_MAX, group.comm());
    for (std::size_t c = 0; c < k; ++c) {
      auto first = slowest.begin() + static_cast<std::ptrdiff_t>(c * kStepIterations);
      medians[c].push_back(median(std::vector<double>(first, first + kStepIterations)));
    }
  }
  // Per repetition, fused time / variant time (> 1: faster than fused).
  nlohmann::json out = nlohmann::json::array();
  if (group.rank() == 0) {
    std::printf("\ntraining step, MLP 784-256-128-10, %d samples per rank; %d repetitions of %d "
                "interleaved steps; speedup = fused step time / this step time, median [min, max]\n",
                batch, repetitions, kStepIterations);
    std::printf("%16s %8s %11s %9s %17s\n", "variant", "buckets", "step_us", "speedup",
                "[min, max]");
  }
  for (std::size_t c = 0; c < k; ++c) {
    std::vector<double> speedups;
    for (int rep = 0; rep < repetitions; ++rep)
      speedups.push_back(medians[1][static_cast<std::size_t>(rep)] /
                         medians[c][static_cast<std::size_t>(rep)]);
    const double step = median(medians[c]);
    const double sp = median(speedups);
    const double lo = *std::min_element(speedups.begin(), speedups.end());
    const double hi = *std::max_element(speedups.begin(), speedups.end());
    const int buckets = c < 2 ? (c == 0 ? 0 : 1) : static_cast<int>(bucket_counts[c - 2]);
    if (group.rank() == 0) {
      std::printf("%16s %8d %11.1f %9.3f   [%5.3f, %5.3f]\n", variants[c].name.c_str(), buckets,
                  step * 1e6, sp, lo, hi);
    }
    out.push_back({{"variant", variants[c].name}, {"buckets", buckets}, {"step_us", step * 1e6},
                   {"speedup_vs_fused", sp}, {"speedup_min", lo}, {"speedup_max", hi}});
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  int rank = 0, ranks = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &ranks);

  Args args;
  std::string error;
  if (!parse_args(argc, argv, &args, &error)) {
    if (rank == 0) std::fputs(error.c_str(), stderr);
    MPI_Finalize();
    return 2;
  }
  std::unique_ptr<GroupComm> group;
  GroupCommOptions group_options;
  group_options.simulated_ranks_per_node = args.simulated_ranks_per_node;
  if (Status s = GroupComm::Create(MPI_COMM_WORLD, group_options, &group); !s.ok()) {
    std::fprintf(stderr, "bench_allreduce: %s\n", s.message().c_str());
    MPI_Abort(MPI_COMM_WORLD, 1);
  }
  const AllreduceAlgorithm resolved = group->resolve(args.algorithm);

  auto ours = [&](AllreduceAlgorithm algorithm) {
    return [&group, algorithm](float* data, std::size_t count) {
      if (Status s = allreduce_gradients(*group, {data, count, algorithm}); !s.ok()) {
        std::fprintf(stderr, "bench_allreduce: %s\n", s.message().c_str());
        MPI_Abort(MPI_COMM_WORLD, 1);
      }
    };
  };
  const MPI_Comm raw_comm = group->comm();
  const std::vector<Contender> contenders = {
      {"ours", ours(args.algorithm)},
      {"mpi",
       [raw_comm](float* data, std::size_t count) {
         MPI_Allreduce(MPI_IN_PLACE, data, static_cast<int>(count), MPI_FLOAT, MPI_SUM, raw_comm);
       }},
      {"hierarchical", ours(AllreduceAlgorithm::kHierarchical)},
  };

  if (rank == 0) {
    std::printf("all-reduce of floats, %d ranks on %d node(s); ours = %s (resolves to %s); "
                "ratio = MPI time / our time\n",
                ranks, group->node_count(), std::string(to_string(args.algorithm)).c_str(),
                std::string(to_string(resolved)).c_str());
  }
  std::vector<std::size_t> byte_sizes;
  std::vector<int> iterations;
  for (std::size_t bytes = args.min_bytes; bytes <= args.max_bytes; bytes *= 2) {
    byte_sizes.push_back(bytes);
    iterations.push_back(iterations_for(contenders[1], bytes / sizeof(float),
                                        args.seconds_per_size, static_cast<int>(contenders.size()),
                                        rank, raw_comm));
  }
  // [size][repetition]
  std::vector<std::vector<Timings>> runs(byte_sizes.size());
  for (int r = 0; r < args.repetitions; ++r)
    for (std::size_t i = 0; i < byte_sizes.size(); ++i)
      runs[i].push_back(
          measure(contenders, byte_sizes[i] / sizeof(float), iterations[i], rank, raw_comm));

  if (rank == 0) {
    std::printf("%d repetitions per size; ratio: median of the repetitions' ratios [min, max]\n",
                args.repetitions);
    std::printf("%10s %7s %11s %11s %8s %17s %11s %11s %11s %10s\n", "size", "iters", "ours_us",
                "mpi_us", "ratio", "[min, max]", "ours_GB/s", "mpi_GB/s", "hier_us", "hier_ratio");
  }
  nlohmann::json sizes = nlohmann::json::array();
  double min_ratio = 1e300, min_hier_ratio = 1e300;
  for (std::size_t i = 0; i < byte_sizes.size(); ++i) {
    const std::size_t bytes = byte_sizes[i];
    std::vector<double> ratios, hier_ratios, ours_s, mpi_s, hier_s;
    double ours_min = 1e300, mpi_min = 1e300;
    for (const Timings& t : runs[i]) {
      ratios.push_back(t.median_s[0] > 0 ? t.median_s[1] / t.median_s[0] : 0);
      hier_ratios.push_back(t.median_s[2] > 0 ? t.median_s[1] / t.median_s[2] : 0);
      ours_s.push_back(t.median_s[0]);
      mpi_s.push_back(t.median_s[1]);
      hier_s.push_back(t.median_s[2]);
      ours_min = std::min(ours_min, t.min_s[0]);
      mpi_min = std::min(mpi_min, t.min_s[1]);
    }
    const double ratio = median(ratios);
    const double ratio_lo = *std::min_element(ratios.begin(), ratios.end());
    const double ratio_hi = *std::max_element(ratios.begin(), ratios.end());
    const double ours = median(ours_s), mpi = median(mpi_s), hier = median(hier_s);
    const double hier_ratio = median(hier_ratios);
    min_ratio = std::min(min_ratio, ratio);
    min_hier_ratio = std::min(min_hier_ratio, hier_ratio);
    if (rank == 0) {
      std::printf("%10s %7d %11.1f %11.1f %8.3f   [%5.3f, %5.3f] %11.2f %11.2f %11.1f %10.3f\n",
                  human(bytes).c_str(), iterations[i], ours * 1e6, mpi * 1e6, ratio, ratio_lo,
                  ratio_hi, busbw_gbps(bytes, ranks, ours), busbw_gbps(bytes, ranks, mpi),
                  hier * 1e6, hier_ratio);
      std::fflush(stdout);
    }
    sizes.push_back({{"bytes", bytes},
                     {"iterations", iterations[i]},
                     {"ours_us", ours * 1e6},
                     {"mpi_us", mpi * 1e6},
                     {"hierarchical_us", hier * 1e6},
                     {"ratio", ratio},
                     {"ratio_min", ratio_lo},
                     {"ratio_max", ratio_hi},
                     {"hierarchical_ratio", hier_ratio},
                     {"hierarchical_ratio_min",
                      *std::min_element(hier_ratios.begin(), hier_ratios.end())},
                     {"hierarchical_ratio_max",
                      *std::max_element(hier_ratios.begin(), hier_ratios.end())},
                     {"ours_min_us", ours_min * 1e6},
                     {"mpi_min_us", mpi_min * 1e6},
                     {"ratio_of_mins", ours_min > 0 ? mpi_min / ours_min : 0},
                     {"ours_busbw_gbps", busbw_gbps(bytes, ranks, ours)},
                     {"mpi_busbw_gbps", busbw_gbps(bytes, ranks, mpi)}});
  }
  const nlohmann::json steps = measure_steps(*group, args.repetitions);
  if (rank == 0) {
    const nlohmann::json summary = {{"benchmark", "allreduce"},
                                    {"ranks", ranks},
                                    {"nodes", group->node_count()},
                                    {"algorithm", std::string(to_string(resolved))},
                                    {"repetitions", args.repetitions},
                                    {"min_ratio_to_mpi", min_ratio},
                                    {"min_ratio_to_mpi_hierarchical", min_hier_ratio},
                                    {"bucket_bytes", kGradientBucketBytes},
                                    {"sizes", sizes},
                                    {"steps", steps}};
    std::printf("%s\n", summary.dump().c_str());
  }
  group.reset();
  MPI_Finalize();
  return 0;
}
