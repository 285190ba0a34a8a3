#include "worker/trainer.h"

#include <chrono>
#include <cmath>
#include <exception>
#include <memory>
#include <numeric>
#include <string>
#include <vector>

#include <Eigen/Core>

#include "common/seed.h"
#include "common/shard_plan.h"
#include "worker/data/idx_reader.h"
#include "worker/models/mlp.h"
#include "worker/optimizer.h"

namespace trellis::worker {
namespace {

// Purposes mixed into the trial seed so weights and data order are independent streams.
constexpr std::uint64_t kInitSeedTag = 0x696e6974;  // "init"
constexpr std::uint64_t kDataSeedTag = 0x64617461;  // "data"
// Evaluation batches are wider than training ones where memory allows: fewer, larger GEMMs.
constexpr int kEvalBatch = 512;
// The step's loss sum rides in the gradient buffer's tail: one collective per step instead of
// two, which matters more than anything else per step once the model is small and ranks are
// many. A float sum of one global batch's losses loses nothing that matters for a metric.
constexpr int kGradTail = 1;

// Collective over `comm`: every rank returns the same status, OK only if every rank's `local`
// is OK, else the lowest failing rank's message prefixed "rank N: ". Every rank of `comm` must
// call it at the same point, failed or not, so none is left inside a later collective.
Status agree(MPI_Comm comm, const Status& local) {
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
  return Status::Error("rank " + std::to_string(first_failed) + ": " + message);
}

// Everything one rank holds for a trial, built before the first collective of training.
struct RankState {
  int rank = 0;
  int ranks = 1;
  std::unique_ptr<ShardPlan> plan;
  int first_shard = 0;
  int last_shard = 0;
  std::int64_t train_base = 0;  // file row of train.images column 0
  IdxRows train;                // this rank's contiguous rows of the training file
  IdxRows test;                 // this rank's rows of the test file
  std::vector<std::int64_t> val_columns;  // columns of `train` held out for validation
  int local_batch = 0;                    // the most rows this rank trains on in one step
  std::unique_ptr<Mlp> model;
  std::unique_ptr<Optimizer> optimizer;
  Eigen::MatrixXf batch;  // gathered samples, features x max(local_batch, kEvalBatch)
  std::vector<std::int32_t> batch_labels;
};

// Rank-local setup: checks the config, reads this rank's data, builds model and optimizer. No
// collectives here: the caller agrees on the outcome.
Status set_up(const TrialTask& task, int rank, int ranks, RankState* st) {
  const TrainConfig& c = task.config;
  st->rank = rank;
  st->ranks = ranks;
  if (!task.dataset.format.empty() && task.dataset.format != "idx")
    return Status::Error("dataset format '" + task.dataset.format + "' is not supported (idx)");
  if (c.epochs < 1) return Status::Error("epochs must be >= 1");
  if (!(task.dataset.validation_fraction >= 0 && task.dataset.validation_fraction < 1))
    return Status::Error("validation_fraction must be in [0, 1)");
  OptimizerOptions opt;
  Status s = optimizer_options_from_config(c, &opt);
  if (!s.ok()) return s;

  IdxInfo train_info, test_info;
  s = read_idx_info(task.dataset.path, IdxSplit::kTrain, &train_info);
  if (!s.ok()) return s.With("dataset " + task.dataset.path);
  s = read_idx_info(task.dataset.path, IdxSplit::kTest, &test_info);
  if (!s.ok()) return s.With("dataset " + task.dataset.path);
  if (test_info.height != train_info.height || test_info.width != train_info.width)
    return Status::Error("dataset " + task.dataset.path + ": dims mismatch: " +
                         test_info.images_path + " is " + std::to_string(test_info.height) + "x" +
                         std::to_string(test_info.width) + " but " + train_info.images_path +
                         " is " + std::to_string(train_info.height) + "x" +
                         std::to_string(train_info.width));

  MlpShape shape;
  s = mlp_shape_from_config(c, train_info.features(), kIdxClasses, &shape);
  if (!s.ok()) return s;

  // ShardPlan's own checks throw; ours come first so nothing throws.
  if (c.batch_size < 1) return Status::Error("batch_size must be >= 1");
  const std::uint64_t data_seed = derive_seed(task.seed, {kDataSeedTag});
  st->plan = std::make_unique<ShardPlan>(train_info.rows, task.dataset.validation_fraction,
                                         data_seed, c.batch_size, ranks);
  const ShardPlan& plan = *st->plan;
  if (plan.steps_per_epoch() < 1)
    return Status::Error("batch_size " + std::to_string(c.batch_size) + " exceeds the " +
                         std::to_string(plan.train_rows()) + " training rows of " +
                         task.dataset.path);

  std::tie(st->first_shard, st->last_shard) = plan.rank_shards(rank);
  const RowRange rows = plan.rank_rows(rank);
  st->train_base = rows.begin;
  s = read_idx_rows(train_info, rows, &st->train);
  if (!s.ok()) return s;
  s = read_idx_rows(test_info, split_rows(test_info.rows, ranks, rank), &st->test);
  if (!s.ok()) return s;

  st->local_batch = plan.max_step_rows(rank);
  for (int v = st->first_shard; v < st->last_shard; ++v)
    for (std::int64_t row : plan.shard_validation_rows(v))
      st->val_columns.push_back(row - st->train_base);

  const int width = std::max(st->local_batch, kEvalBatch);
  st->model = std::make_unique<Mlp>(shape, width, kGradTail);
  st->model->init(derive_seed(task.seed, {kInitSeedTag}));
  s = make_optimizer(opt, st->model->num_params(), &st->optimizer);
  if (!s.ok()) return s;
  st->batch.resize(train_info.features(), width);
  st->batch_labels.resize(static_cast<std::size_t>(width));
  return Status::Ok();
}

// Loss and correct sums of `columns` of `data` on this rank, in kEvalBatch-wide chunks.
EvalSums evaluate_columns(RankState* st, const IdxRows& data,
                          const std::vector<std::int64_t>& columns) {
  EvalSums total;
  const auto n_total = static_cast<std::int64_t>(columns.size());
  for (std::int64_t at = 0; at < n_total; at += kEvalBatch) {
    const int n = static_cast<int>(std::min<std::int64_t>(kEvalBatch, n_total - at));
    for (int j = 0; j < n; ++j) {
      st->batch.col(j) = data.images.col(columns[at + j]);
      st->batch_labels[j] = data.labels[columns[at + j]];
    }
    const EvalSums part = st->model->evaluate(
        st->batch.leftCols(n), std::span<const std::int32_t>(st->batch_labels.data(), n));
    total.loss_sum += part.loss_sum;
    total.correct += part.correct;
  }
  return total;
}

// Group-wide (loss, accuracy) over rows split between the ranks; `rows` is the global count.
// Sums are reduced in double so the metric does not depend on float rounding of the counts.
void reduce_eval(MPI_Comm comm, const EvalSums& local, std::int64_t rows, double* loss,
                 double* acc) {
  double sums[2] = {local.loss_sum, static_cast<double>(local.correct)};
  MPI_Allreduce(MPI_IN_PLACE, sums, 2, MPI_DOUBLE, MPI_SUM, comm);
  *loss = sums[0] / static_cast<double>(rows);
  *acc = sums[1] / static_cast<double>(rows);
}

// One epoch of steps. Returns a failure only when every rank sees it (the loss is reduced).
Status run_epoch(RankState* st, MPI_Comm comm, const TrainerHooks& hooks, int epoch,
                 double* mean_loss) {
  const ShardPlan& plan = *st->plan;
  Mlp& model = *st->model;
  const std::vector<std::vector<std::int64_t>> steps = plan.rank_epoch_rows(st->rank, epoch);

  const float scale = 1.0f / static_cast<float>(plan.global_batch());
  Eigen::VectorXf& buffer = model.grad_buffer();
  const auto n_params = model.num_params();
  const int count = static_cast<int>(buffer.size());
  double loss_total = 0;
  for (std::int64_t s = 0; s < plan.steps_per_epoch(); ++s) {
    int col = 0;
    for (const std::int64_t row : steps[static_cast<std::size_t>(s)]) {
      const std::int64_t c = row - st->train_base;
      st->batch.col(col) = st->train.images.col(c);
      st->batch_labels[static_cast<std::size_t>(col)] = st->train.labels[static_cast<std::size_t>(c)];
      ++col;
    }
    buffer.setZero();
    const double loss = model.forward_backward(
        st->batch.leftCols(col), std::span<const std::int32_t>(st->batch_labels.data(), col),
        scale);
    buffer[n_params] = static_cast<float>(loss);
    MPI_Allreduce(MPI_IN_PLACE, buffer.data(), count, MPI_FLOAT, MPI_SUM, comm);
    const double step_loss = static_cast<double>(buffer[n_params]) / plan.global_batch();
    // Every rank holds the same reduced loss, so every rank fails here together.
    if (!std::isfinite(step_loss))
      return Status::Error("loss became NaN at epoch " + std::to_string(epoch) + " step " +
                           std::to_string(s + 1));
    st->optimizer->step(model.params(), model.grads());
    loss_total += step_loss;
    if (hooks.on_step) hooks.on_step();
  }
  *mean_loss = loss_total / static_cast<double>(plan.steps_per_epoch());
  return Status::Ok();
}

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace

Status train(const TrialTask& task, MPI_Comm comm, const TrainerHooks& hooks,
             TrainResult* result) {
  int rank = 0, ranks = 1;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &ranks);
  *result = TrainResult();

  RankState st;
  Status local;
  try {
    local = set_up(task, rank, ranks, &st);
  } catch (const std::exception& e) {
    local = Status::Error(std::string("setting up the trial: ") + e.what());
  }
  Status s = agree(comm, local);
  if (!s.ok()) return s;

  const ShardPlan& plan = *st.plan;
  std::vector<std::int64_t> test_columns(static_cast<std::size_t>(st.test.images.cols()));
  std::iota(test_columns.begin(), test_columns.end(), std::int64_t{0});
  const std::int64_t val_rows = plan.validation_rows();
  const std::int64_t test_rows = [&] {
    std::int64_t n = static_cast<std::int64_t>(test_columns.size());
    MPI_Allreduce(MPI_IN_PLACE, &n, 1, MPI_INT64_T, MPI_SUM, comm);
    return n;
  }();

  MetricMap last;
  for (int epoch = 1; epoch <= task.config.epochs; ++epoch) {
    const auto start = std::chrono::steady_clock::now();
    double train_loss = 0;
    s = run_epoch(&st, comm, hooks, epoch, &train_loss);
    if (!s.ok()) return agree(comm, s);

    MetricMap metrics;
    metrics["train_loss"] = train_loss;
    if (val_rows > 0) {
      double val_loss = 0, val_acc = 0;
      reduce_eval(comm, evaluate_columns(&st, st.train, st.val_columns), val_rows, &val_loss,
                  &val_acc);
      if (!std::isfinite(val_loss))
        return agree(comm, Status::Error("validation loss became NaN at epoch " +
                                         std::to_string(epoch)));
      metrics["val_loss"] = val_loss;
      metrics["val_acc"] = val_acc;
    }
    // Ranks finish at slightly different times; the slowest one is the group's epoch time,
    // and taking it on every rank keeps the metrics identical everywhere.
    double epoch_s = seconds_since(start);
    MPI_Allreduce(MPI_IN_PLACE, &epoch_s, 1, MPI_DOUBLE, MPI_MAX, comm);
    metrics["epoch_s"] = epoch_s;
    metrics["samples_per_s"] =
        static_cast<double>(plan.steps_per_epoch() * plan.global_batch()) / epoch_s;
    result->epochs_run = epoch;
    last = metrics;

    int keep_going = hooks.on_epoch ? (hooks.on_epoch(epoch, metrics) ? 1 : 0) : 1;
    MPI_Bcast(&keep_going, 1, MPI_INT, 0, comm);
    if (!keep_going) {
      result->stopped_early = true;
      break;
    }
  }

  double test_loss = 0, test_acc = 0;
  reduce_eval(comm, evaluate_columns(&st, st.test, test_columns), test_rows, &test_loss,
              &test_acc);
  result->final_metrics["test_loss"] = test_loss;
  result->final_metrics["test_acc"] = test_acc;
  for (const char* name : {"train_loss", "val_loss", "val_acc"}) {
    const auto it = last.find(name);
    if (it != last.end()) result->final_metrics[name] = it->second;
  }
  return Status::Ok();
}

}  // namespace trellis::worker
