#include "worker/trainer.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <exception>
#include <filesystem>
#include <functional>
#include <memory>
#include <numeric>
#include <sstream>
#include <string>
#include <vector>

#include <Eigen/Core>
#include <spdlog/spdlog.h>

#include "common/checkpoint_path.h"
#include "common/seed.h"
#include "common/shard_plan.h"
#include "worker/checkpoint.h"
#include "worker/data/batch_gather.h"
#include "worker/data/dataset.h"
#include "worker/kernels/float_mode.h"
#include "worker/kernels/gemm.h"
#include "worker/lr_schedule.h"
#include "worker/models/model.h"
#include "worker/optimizer.h"
#include "worker/regression_metrics.h"

namespace trellis::worker {
namespace {

// Purposes mixed into the trial seed so weights and data order are independent streams.
constexpr std::uint64_t kInitSeedTag = 0x696e6974;  // "init"
constexpr std::uint64_t kDataSeedTag = 0x64617461;  // "data"
// Evaluation batches are wider than training ones where memory allows: fewer, larger GEMMs.
constexpr int kEvalBatch = 512;
// The step's loss sum and the ranks' stop requests ride in the gradient buffer's tail: one
// collective per step instead of three, which matters more than anything else per step once
// the model is small and ranks are many. A float sum of one global batch's losses loses
// nothing that matters for a metric; the stop slot only needs to be nonzero somewhere.
constexpr int kGradTail = 2;
// mpirun's exit code when a rank ends the group on an MPI error only it may have seen.
constexpr int kAbortOnMpiError = 5;
// What an epoch measures beyond its timing: kept in checkpoints (a resumed trial reports them)
// and, from the last epoch, in the final metrics. Each task reports its own of them.
constexpr const char* kEpochResults[] = {"train_loss", "val_loss", "val_acc",
                                         "val_rmse",   "val_mae",  "val_r2"};
// What a checkpoint's validation split is: the experiment's, stratified (issue 11). A
// checkpoint without it was trained against another split and is not resumed.
constexpr const char* kSplitVersion = "experiment-stratified";

// Collective over `comm`: every rank returns the same status, OK only if every rank's `local`
// is OK, else the lowest failing rank's message prefixed "rank N: ". Every rank of `comm` must
// call it at the same point, failed or not, so none is left inside a later collective.
// `code`, when given, is the failing rank's too: every rank gets that rank's value.
Status agree(MPI_Comm comm, const Status& local, int* code = nullptr) {
  int rank = 0, size = 1;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &size);
  int first_failed = local.ok() ? size : rank;
  MPI_Allreduce(MPI_IN_PLACE, &first_failed, 1, MPI_INT, MPI_MIN, comm);
  if (first_failed == size) return Status::Ok();
  std::string message = rank == first_failed ? local.message() : std::string();
  int length = static_cast<int>(message.size());
  MPI_Bcast(&length, 1, MPI_INT, first_failed, comm);
  message.resize(static_cast<std::size_t>(length));
  MPI_Bcast(message.data(), length, MPI_CHAR, first_failed, comm);
  if (code != nullptr) MPI_Bcast(code, 1, MPI_INT, first_failed, comm);
  return Status::Error("rank " + std::to_string(first_failed) + ": " + message);
}

// Everything one rank holds for a trial, built before the first collective of training.
struct RankState {
  int rank = 0;
  int ranks = 1;
  RankData data;
  std::unique_ptr<Model> model;
  std::unique_ptr<Optimizer> optimizer;
  AllreduceAlgorithm allreduce = AllreduceAlgorithm::kAuto;
  LrSchedule schedule;
  Eigen::MatrixXf batch;  // gathered samples, features x max(rows of a step, kEvalBatch)
  std::vector<std::int32_t> batch_labels;  // the gathered targets as class ids...
  std::vector<float> batch_values;         // ...and as values
  std::vector<std::int64_t> batch_rows;    // their row ids, which key the dropout masks
};

// Phase 1, rank-local: checks the config and reads this rank's shard. No collectives: the
// caller agrees on the outcome.
Status read_data(const TrialTask& task, int rank, int ranks, RankState* st) {
  const TrainConfig& c = task.config;
  st->rank = rank;
  st->ranks = ranks;
  if (c.epochs < 1) return Status::Error("epochs must be >= 1");
  if (c.batch_size < 1) return Status::Error("batch_size must be >= 1");
  if (!(task.dataset.validation_fraction >= 0 && task.dataset.validation_fraction < 1))
    return Status::Error("validation_fraction must be in [0, 1)");
  const LayoutOptions layout{derive_seed(task.seed, {kDataSeedTag}), c.batch_size, ranks, rank};
  if (Status s = read_local(task.dataset, layout, &st->data); !s.ok()) return s;
  back_with_huge_pages(&st->data.train_x);
  return Status::Ok();
}

// Phase 3, rank-local, once the group agreed on features and classes: model and optimizer.
Status build_model(const TrialTask& task, RankState* st) {
  const TrainConfig& c = task.config;
  const bool regression = st->data.classes == 0;
  if (regression != (c.model == "linear"))
    return Status::Error(regression ? "a regression dataset needs model: linear, not '" + c.model + "'"
                                    : "model 'linear' needs a regression dataset (task: regression)");
  if (Status s = parse_allreduce_algorithm(c.allreduce, &st->allreduce); !s.ok()) return s;
  if (Status s = lr_schedule_from_config(c, &st->schedule); !s.ok()) return s;
  OptimizerOptions opt;
  if (Status s = optimizer_options_from_config(c, &opt); !s.ok()) return s;
  const int width = std::max(st->data.max_step_rows(), kEvalBatch);
  if (Status s = make_model(c, st->data.features, st->data.classes, width, kGradTail, &st->model);
      !s.ok())
    return s;
  st->model->init(derive_seed(task.seed, {kInitSeedTag}));
  if (Status s = make_optimizer(opt, st->model->num_params(), &st->optimizer); !s.ok()) return s;
  st->batch.resize(st->data.features, width);
  st->batch_labels.resize(static_cast<std::size_t>(width));
  st->batch_values.resize(static_cast<std::size_t>(width));
  st->batch_rows.resize(static_cast<std::size_t>(width));
  return Status::Ok();
}

// What a checkpoint's buffers belong to: resuming into anything else is refused.
std::string fingerprint(const TrialTask& task, const RankState& st) {
  const ShardPlan& plan = *st.data.plan;
  return "params=" + std::to_string(st.model->num_params()) +
         " optimizer=" + task.config.optimizer + " batch=" + std::to_string(plan.global_batch()) +
         " train_rows=" + std::to_string(plan.train_rows()) +
         " features=" + std::to_string(st.data.features) + " seed=" + std::to_string(task.seed) +
         " split=" + kSplitVersion + ":" + std::to_string(task.dataset.split_seed);
}

// Where training continues: after `epoch` completed epochs and `step` steps of the next one,
// whose losses summed to `partial_loss`.
struct Position {
  int epoch = 0;
  std::int64_t step = 0;
  double partial_loss = 0;
};

// What of a fingerprint a PBT warm start must match: another trial's weights and optimizer
// state fit whenever the model, optimizer and features do; its seed, validation split and
// batch size may differ, since the warm start begins a fresh epoch.
std::string setup_of(const std::string& fingerprint) {
  std::istringstream words(fingerprint);
  std::string word, kept;
  while (words >> word)
    if (word.rfind("params=", 0) == 0 || word.rfind("optimizer=", 0) == 0 ||
        word.rfind("features=", 0) == 0)
      kept += word + " ";
  return kept;
}

// Rank 0 only: weights and optimizer state at `at`, with the last completed epoch's metrics,
// written atomically; then the files no resume can ask for any more are removed: full
// checkpoints before `keep_from` (already gone below `*removed_below`), and partial ones up to
// this epoch.
Status save_checkpoint(const TrialTask& task, const RankState& st, const Position& at,
                       const MetricMap& last, int keep_from, int* removed_below) {
  OptimizerState state;
  st.optimizer->save_state(&state);
  Checkpoint c;
  c.trial = task.trial;
  c.epoch = at.epoch;
  c.step = at.step;
  c.partial_loss = at.partial_loss;
  c.seed = task.seed;
  c.optimizer_steps = state.steps;
  c.fingerprint = fingerprint(task, st);
  c.compute = kernels::gemm_choice().summary();
  for (const char* name : kEpochResults)
    if (const auto it = last.find(name); it != last.end()) c.metrics.emplace_back(name, it->second);
  const Eigen::VectorXf& params = st.model->params();
  c.buffers.emplace_back("params", std::vector<float>(params.data(), params.data() + params.size()));
  for (std::size_t i = 0; i < state.buffers.size(); ++i) {
    const Eigen::VectorXf& b = state.buffers[i];
    c.buffers.emplace_back(state.kind + "." + std::to_string(i),
                           std::vector<float>(b.data(), b.data() + b.size()));
  }
  const bool partial = at.step > 0;
  if (Status s = write_checkpoint(checkpoint_file(task.checkpoint, at.epoch, partial), c); !s.ok())
    return s;
  if (!partial) {
    std::error_code ec;
    for (; *removed_below < std::min(keep_from, at.epoch); ++*removed_below)
      std::filesystem::remove(checkpoint_file(task.checkpoint, *removed_below, false), ec);
    for (int e = at.epoch - 2; e <= at.epoch; ++e)
      std::filesystem::remove(checkpoint_file(task.checkpoint, e, true), ec);
  }
  return Status::Ok();
}

// Rank 0 only, under PBT: the state after `epoch` outlives the trial's own checkpoints (which
// go as the trial trains on), so that recipients deciding about that epoch later can still
// warm-start from it; the trial's snapshots before its newest `kept` are removed. A hard link
// where the filesystem allows one, else a copy.
Status keep_exploit_snapshot(const std::string& base, int epoch, int kept) {
  namespace fs = std::filesystem;
  const fs::path snapshot = exploit_snapshot(base, epoch);
  std::error_code ec;
  fs::remove(snapshot, ec);
  fs::create_hard_link(checkpoint_file(base, epoch), snapshot, ec);
  if (ec) fs::copy_file(checkpoint_file(base, epoch), snapshot, ec);
  if (ec)
    return Status::Error("cannot keep " + snapshot.string() + " for PBT exploits (" +
                         ec.message() + "): no trial can take this trial's state after epoch " +
                         std::to_string(epoch));
  const std::string prefix = fs::path(exploit_snapshot(base, 0)).filename().string();
  const std::string stem = prefix.substr(0, prefix.size() - 1);  // "trial-N.ckpt.pbt-"
  std::vector<int> epochs;
  for (const fs::directory_entry& e : fs::directory_iterator(snapshot.parent_path(), ec)) {
    const std::string name = e.path().filename().string();
    if (name.rfind(stem, 0) != 0) continue;
    const std::string digits = name.substr(stem.size());
    if (!digits.empty() && digits.find_first_not_of("0123456789") == std::string::npos)
      epochs.push_back(std::stoi(digits));
  }
  std::sort(epochs.begin(), epochs.end(), std::greater<>());
  for (std::size_t i = static_cast<std::size_t>(kept); i < epochs.size(); ++i)
    fs::remove(exploit_snapshot(base, epochs[i]), ec);
  return Status::Ok();
}

// What a trained trial leaves behind: the weights, the input scaling they were trained on, and
// the final metrics; no optimizer state, since nothing continues from it.
Checkpoint final_model(const TrialTask& task, const RankState& st, const TrainResult& result) {
  Checkpoint c;
  c.trial = task.trial;
  c.epoch = result.epochs_run;
  c.seed = task.seed;
  c.fingerprint = fingerprint(task, st);
  for (const auto& [name, value] : result.final_metrics) c.metrics.emplace_back(name, value);
  const Eigen::VectorXf& params = st.model->params();
  c.buffers.emplace_back("params", std::vector<float>(params.data(), params.data() + params.size()));
  std::vector<float> mean, inv_std;
  applied_scaling(st.data, &mean, &inv_std);
  if (!mean.empty()) {
    c.buffers.emplace_back("scale.mean", std::move(mean));
    c.buffers.emplace_back("scale.inv_std", std::move(inv_std));
  }
  if (st.data.classes == 0) {  // the network's output is the standardised target
    c.buffers.emplace_back("target.mean", std::vector<float>{static_cast<float>(st.data.target_mean)});
    c.buffers.emplace_back("target.std", std::vector<float>{static_cast<float>(st.data.target_std)});
  }
  return c;
}

// Collective: rank 0 reads the checkpoint and checks it belongs to this trial; every rank then
// receives its weights and optimizer state, so the group resumes identical.
Status restore_checkpoint(const TrialTask& task, MPI_Comm comm, RankState* st, Position* at,
                          MetricMap* last) {
  OptimizerState state;
  st->optimizer->save_state(&state);  // the shape to fill: kind and buffer sizes
  Eigen::VectorXf& params = st->model->params();
  Status local;
  if (st->rank == 0) {
    Checkpoint c;
    std::string path = task.warm_start;
    if (path.empty()) {
      path = checkpoint_file(task.checkpoint, task.resume_epoch, true);
      std::error_code ec;
      if (!std::filesystem::exists(path, ec))
        path = checkpoint_file(task.checkpoint, task.resume_epoch, false);
    }
    local = read_checkpoint(path, &c);
    if (local.ok() && c.epoch != task.resume_epoch)
      local = Status::Error("checkpoint " + path + " is of epoch " +
                            std::to_string(c.epoch) + ", expected " +
                            std::to_string(task.resume_epoch));
    const bool fits = task.warm_start.empty()
                          ? c.fingerprint == fingerprint(task, *st)
                          : setup_of(c.fingerprint) == setup_of(fingerprint(task, *st));
    if (local.ok() && !fits)
      local = Status::Error("checkpoint " + path + " belongs to another setup ('" +
                            c.fingerprint + "', this trial is '" + fingerprint(task, *st) + "')");
    const auto copy = [&](const std::string& name, float* into, Eigen::Index size) {
      const std::vector<float>* b = c.find(name);
      if (b == nullptr || static_cast<Eigen::Index>(b->size()) != size)
        return Status::Error("checkpoint " + path + ": buffer '" + name +
                             "' is missing or of the wrong size");
      std::copy(b->begin(), b->end(), into);
      return Status::Ok();
    };
    const std::string here = kernels::gemm_choice().summary();
    if (local.ok() && !c.compute.empty() && c.compute != here)
      spdlog::warn("trial {}: resumed from {}, computed with GEMM '{}'; this node runs '{}', so "
                   "the rest of the trial agrees with an uninterrupted run up to float summation "
                   "order, not bit for bit",
                   task.trial, path, c.compute, here);
    if (local.ok()) local = copy("params", params.data(), params.size());
    for (std::size_t i = 0; local.ok() && i < state.buffers.size(); ++i)
      local = copy(state.kind + "." + std::to_string(i), state.buffers[i].data(),
                   state.buffers[i].size());
    state.steps = c.optimizer_steps;
    *at = Position{c.epoch, c.step, c.partial_loss};
    for (const auto& [name, value] : c.metrics) (*last)[name] = value;
  }
  if (Status s = agree(comm, local); !s.ok()) return s;
  MPI_Bcast(params.data(), static_cast<int>(params.size()), MPI_FLOAT, 0, comm);
  for (Eigen::VectorXf& b : state.buffers)
    MPI_Bcast(b.data(), static_cast<int>(b.size()), MPI_FLOAT, 0, comm);
  MPI_Bcast(&state.steps, 1, MPI_INT64_T, 0, comm);
  MPI_Bcast(&at->epoch, 1, MPI_INT, 0, comm);
  MPI_Bcast(&at->step, 1, MPI_INT64_T, 0, comm);
  MPI_Bcast(&at->partial_loss, 1, MPI_DOUBLE, 0, comm);
  // Only rank 0 reports metrics, so only it needs the last epoch's.
  return agree(comm, st->optimizer->restore_state(state));
}

// Copies `columns` of (x, y) into the batch buffers; returns how many.
int gather(RankState* st, const Eigen::MatrixXf& x, const std::vector<float>& y,
           std::span<const std::int64_t> columns) {
  gather_columns(x, columns, &st->batch);
  for (std::size_t j = 0; j < columns.size(); ++j) {
    const auto c = static_cast<std::size_t>(columns[j]);
    st->batch_values[j] = y[c];
    st->batch_labels[j] = static_cast<std::int32_t>(y[c]);
  }
  return static_cast<int>(columns.size());
}

// The first n gathered targets in the form the model's head takes: class ids for softmax,
// values (0/1 or a regression target) otherwise.
Targets targets(const RankState& st, int n) {
  if (st.model->takes_labels())
    return std::span<const std::int32_t>(st.batch_labels.data(), static_cast<std::size_t>(n));
  return std::span<const float>(st.batch_values.data(), static_cast<std::size_t>(n));
}

// What evaluating rows on one rank sums up: the model's sums, and the targets' for r2.
struct SplitSums {
  EvalSums eval;
  double target_sum = 0;
  double target_sq_sum = 0;
};

// The sums over `columns` of (x, y) on this rank, in kEvalBatch-wide chunks.
SplitSums evaluate_columns(RankState* st, const Eigen::MatrixXf& x, const std::vector<float>& y,
                           const std::vector<std::int64_t>& columns) {
  SplitSums total;
  const auto n_total = static_cast<std::int64_t>(columns.size());
  for (std::int64_t at = 0; at < n_total; at += kEvalBatch) {
    const auto chunk = std::min<std::int64_t>(kEvalBatch, n_total - at);
    const int n = gather(st, x, y, std::span<const std::int64_t>(columns.data() + at,
                                                                 static_cast<std::size_t>(chunk)));
    const EvalSums part = st->model->evaluate(st->batch.leftCols(n), targets(*st, n));
    total.eval.loss_sum += part.loss_sum;
    total.eval.correct += part.correct;
    total.eval.abs_error_sum += part.abs_error_sum;
  }
  for (std::int64_t c : columns) {
    const double v = y[static_cast<std::size_t>(c)];
    total.target_sum += v;
    total.target_sq_sum += v * v;
  }
  return total;
}

// Group-wide metrics of rows split between the ranks, named PREFIX_loss and so on; `rows` is
// the global count. Sums are reduced in double so the metric does not depend on float rounding
// of the counts. Classification: loss and acc. Regression: loss (mean squared error), rmse, mae
// and r2, in the target's units although the model sees the standardised target.
MetricMap reduce_eval(MPI_Comm comm, const RankData& data, const SplitSums& local,
                      std::int64_t rows, const std::string& prefix) {
  double sums[5] = {local.eval.loss_sum, static_cast<double>(local.eval.correct),
                    local.eval.abs_error_sum, local.target_sum, local.target_sq_sum};
  MPI_Allreduce(MPI_IN_PLACE, sums, 5, MPI_DOUBLE, MPI_SUM, comm);
  MetricMap m;
  if (data.classes > 0) {
    m[prefix + "_loss"] = sums[0] / static_cast<double>(rows);
    m[prefix + "_acc"] = sums[1] / static_cast<double>(rows);
  } else {
    regression_metrics(RegressionSums{rows, sums[0], sums[2], sums[3], sums[4]}, data.target_std,
                       prefix, &m);
  }
  return m;
}

// One epoch of steps. Returns a failure only when every rank sees it (the loss is reduced).
// How an epoch's steps went: all of them, or stopped early on a stop request.
struct EpochProgress {
  std::int64_t steps = 0;  // taken in this epoch so far, those before a resume included
  double loss_sum = 0;     // of those steps' mean batch losses
  bool stopped = false;
};

// The model's gradient buckets: layer boundaries packed by kGradientBucketBytes.
std::vector<std::size_t> gradient_buckets(const Model& model) {
  return plan_gradient_buckets(model.grad_ready_offsets(),
                               static_cast<std::size_t>(model.num_params()));
}

// Runs steps from progress->steps to the end of the epoch, or until any rank asks to stop.
Status run_epoch(RankState* st, const GroupComm& group, const TrainerHooks& hooks,
                 const TrainConfig& config, int epoch, EpochProgress* progress) {
  const ShardPlan& plan = *st->data.plan;
  Model& model = *st->model;
  const std::vector<std::vector<std::int64_t>> steps = st->data.epoch_columns(epoch);

  const float scale = 1.0f / static_cast<float>(plan.global_batch());
  Eigen::VectorXf& buffer = model.grad_buffer();
  const auto n_params = model.num_params();
  // Hierarchical stays one blocking call (its stages depend on each other); one rank has
  // nothing to reduce.
  const bool overlap =
      group.size() > 1 && group.resolve(st->allreduce) == AllreduceAlgorithm::kFlat;
  BucketedAllreduce buckets(group, gradient_buckets(model), static_cast<std::size_t>(n_params));
  for (std::int64_t s = progress->steps; s < plan.steps_per_epoch(); ++s) {
    // Dropout masks and the learning rate are functions of the global step, so a resumed run
    // and a run on another rank count draw the same ones.
    const std::int64_t global_step = (epoch - 1) * plan.steps_per_epoch() + s;
    const auto& columns = steps[static_cast<std::size_t>(s)];
    const int n = gather(st, st->data.train_x, st->data.train_y, columns);
    for (int j = 0; j < n; ++j)
      st->batch_rows[static_cast<std::size_t>(j)] =
          st->data.train_row_ids[static_cast<std::size_t>(columns[static_cast<std::size_t>(j)])];
    // Assigned, not accumulated: no pass to zero the gradient first. The tail is ours to set.
    // Flat: each bucket's reduction starts as backward completes it (collectives.h).
    Status reduced;
    if (overlap) buckets.begin(buffer.data());
    const auto on_grad_ready = [&](std::int64_t final_from) {
      if (reduced.ok()) reduced = buckets.ready_from(static_cast<std::size_t>(final_from));
    };
    const double loss = model.forward_backward(
        st->batch.leftCols(n), targets(*st, n),
        BatchKey{global_step, std::span<const std::int64_t>(st->batch_rows.data(), n)}, scale,
        GradMode::kAssign, overlap ? Model::GradReady(on_grad_ready) : nullptr);
    buffer[n_params] = static_cast<float>(loss);
    buffer[n_params + 1] = hooks.stop_now && hooks.stop_now() ? 1.0f : 0.0f;
    if (!overlap) {
      reduced = allreduce_gradients(
          group, {buffer.data(), static_cast<std::size_t>(buffer.size()), st->allreduce});
    } else if (reduced.ok()) {
      reduced = buckets.finish(static_cast<std::size_t>(model.grad_tail()));
    }
    // An MPI error need not surface on every rank: a rank whose peer died may see it while
    // the others still wait inside this collective, so agreeing on it (another collective)
    // would deadlock the group. End the whole group instead: mpirun exits, the coordinator
    // hears nothing more and requeues the trial as lost, which is the group's fault, not the
    // trial's.
    if (!reduced.ok()) {
      spdlog::critical("rank {}: {}; aborting the group", st->rank,
                       reduced.With("gradient all-reduce at epoch " + std::to_string(epoch))
                           .message());
      MPI_Abort(group.comm(), kAbortOnMpiError);
      return reduced;  // MPI_Abort does not return; a compiler cannot know that
    }
    const double step_loss = static_cast<double>(buffer[n_params]) / plan.global_batch();
    // Every rank holds the same reduced loss, so every rank fails here together.
    if (!std::isfinite(step_loss))
      return Status::Error("loss became NaN at epoch " + std::to_string(epoch) + " step " +
                           std::to_string(s + 1));
    const double lr = learning_rate(st->schedule, global_step, plan.steps_per_epoch(), config.epochs);
    st->optimizer->step(model.params(), model.grads(), static_cast<float>(lr));
    progress->loss_sum += step_loss;
    progress->steps = s + 1;
    if (hooks.on_step) hooks.on_step();
    if (buffer[n_params + 1] > 0.0f) {
      progress->stopped = true;  // every rank saw the same reduced flag: the group stops here
      return Status::Ok();
    }
  }
  return Status::Ok();
}

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace

Status train(const TrialTask& task, const GroupComm& group, const TrainerHooks& hooks,
             TrainResult* result) {
  const MPI_Comm comm = group.comm();
  const int rank = group.rank(), ranks = group.size();
  *result = TrainResult();
  // Subnormals would slow every GEMM library 100-250x (kernels/float_mode.h); this is the thread
  // that computes, and a library pool started later inherits the mode.
  kernels::flush_denormals_in_this_thread();

  RankState st;
  // Failures before the first collective are agreed at each phase boundary, so a rank whose
  // file is corrupt never leaves the others waiting inside a collective.
  const auto guarded = [](const char* what, const std::function<Status()>& step) {
    try {
      return step();
    } catch (const std::exception& e) {
      return Status::Error(std::string(what) + ": " + e.what());
    }
  };
  // Whose fault a failed read is travels with the failing rank's message: rank 0 tells the
  // coordinator, which stops the sweep on the dataset's (dataset.h, DataFault).
  Status s = guarded("reading data", [&] { return read_data(task, rank, ranks, &st); });
  result->dataset_files = st.data.files;
  int dataset_fault = st.data.fault == DataFault::kDataset ? 1 : 0;
  if (s = agree(comm, s, &dataset_fault); !s.ok()) {
    result->dataset_error = dataset_fault != 0;
    return s;
  }
  if (s = finish_collectively(comm, &st.data); !s.ok()) {
    result->dataset_error = st.data.fault == DataFault::kDataset;
    return s.With("dataset " + task.dataset.path);
  }
  s = agree(comm, guarded("building the model", [&] { return build_model(task, &st); }));
  if (!s.ok()) return s;

  const ShardPlan& plan = *st.data.plan;
  std::vector<std::int64_t> test_columns(static_cast<std::size_t>(st.data.test_x.cols()));
  std::iota(test_columns.begin(), test_columns.end(), std::int64_t{0});
  const std::int64_t val_rows = st.data.validation_rows_total();
  const std::int64_t test_rows = st.data.test_rows_total;

  Position start;
  MetricMap last;  // the last completed epoch's metrics
  if (task.resume) {
    if (task.checkpoint.empty())
      return Status::Error("cannot resume after epoch " + std::to_string(task.resume_epoch) +
                           ": no checkpoint path");
    if (s = restore_checkpoint(task, comm, &st, &start, &last); !s.ok()) return s;
    result->epochs_run = start.epoch;
  }

  const int last_epoch =
      task.stop_epoch > 0 ? std::min(task.stop_epoch, task.config.epochs) : task.config.epochs;
  // The oldest full checkpoint that may still exist; those of earlier attempts count too.
  int removed_below = 1;
  // Below which full checkpoints can go once epoch `epoch` is written.
  const auto keep_from = [&](int epoch) {
    if (!hooks.stored_checkpoint) return epoch - 1;
    return std::max(hooks.stored_checkpoint(), task.resume ? task.resume_epoch : 0);
  };
  for (int epoch = start.epoch + 1; epoch <= last_epoch; ++epoch) {
    const auto begin = std::chrono::steady_clock::now();
    EpochProgress progress;
    if (epoch == start.epoch + 1) progress = EpochProgress{start.step, start.partial_loss, false};
    s = run_epoch(&st, group, hooks, task.config, epoch, &progress);
    // Only a NaN loss comes back, and every rank holds the same reduced loss: agreed.
    if (!s.ok()) return agree(comm, s);
    if (progress.stopped) {
      result->preempted = true;
      if (rank == 0 && !task.checkpoint.empty()) {
        const Status saved =
            save_checkpoint(task, st, Position{epoch - 1, progress.steps, progress.loss_sum}, last,
                            keep_from(epoch - 1), &removed_below);
        if (!saved.ok()) spdlog::warn("{}", saved.message());
        result->checkpointed = saved.ok();
      }
      return Status::Ok();
    }
    // Regression trains on the standardised target; its loss is reported in the target's units.
    const double target_var = st.data.classes == 0 ? st.data.target_std * st.data.target_std : 1.0;
    const double train_loss =
        progress.loss_sum / static_cast<double>(plan.steps_per_epoch()) * target_var;

    MetricMap metrics;
    metrics["train_loss"] = train_loss;
    if (val_rows > 0) {
      const MetricMap val = reduce_eval(
          comm, st.data,
          evaluate_columns(&st, st.data.train_x, st.data.train_y, st.data.val_columns), val_rows,
          "val");
      if (!std::isfinite(val.at("val_loss")))
        return agree(comm, Status::Error("validation loss became NaN at epoch " +
                                         std::to_string(epoch)));
      metrics.insert(val.begin(), val.end());
    }
    // Ranks finish at slightly different times; the slowest one is the group's epoch time,
    // and taking it on every rank keeps the metrics identical everywhere.
    double epoch_s = seconds_since(begin);
    MPI_Allreduce(MPI_IN_PLACE, &epoch_s, 1, MPI_DOUBLE, MPI_MAX, comm);
    metrics["epoch_s"] = epoch_s;
    metrics["samples_per_s"] =
        static_cast<double>(plan.steps_per_epoch() * plan.global_batch()) / epoch_s;
    result->epochs_run = epoch;
    last = metrics;

    bool checkpointed = false;
    if (rank == 0 && !task.checkpoint.empty()) {
      // A failed write costs only the ability to resume here; training goes on.
      const Status saved =
          save_checkpoint(task, st, Position{epoch, 0, 0}, metrics, keep_from(epoch), &removed_below);
      if (!saved.ok()) spdlog::warn("{}", saved.message());
      checkpointed = saved.ok();
    }
    if (checkpointed && epoch == task.stop_epoch && task.exploit_snapshots > 0) {
      const Status kept = keep_exploit_snapshot(task.checkpoint, epoch, task.exploit_snapshots);
      if (!kept.ok()) spdlog::warn("{}", kept.message());
    }
    int keep_going =
        hooks.on_epoch ? (hooks.on_epoch(epoch, metrics, checkpointed) ? 1 : 0) : 1;
    MPI_Bcast(&keep_going, 1, MPI_INT, 0, comm);
    if (!keep_going) {
      result->stopped_early = true;
      break;
    }
  }

  result->final_metrics = reduce_eval(
      comm, st.data, evaluate_columns(&st, st.data.test_x, st.data.test_y, test_columns),
      test_rows, "test");
  for (const char* name : kEpochResults) {
    const auto it = last.find(name);
    if (it != last.end()) result->final_metrics[name] = it->second;
  }
  if (rank == 0 && !result->stopped_early && result->epochs_run == task.config.epochs)
    result->model = encode_checkpoint(final_model(task, st, *result));
  return Status::Ok();
}

}  // namespace trellis::worker
