#include "worker/trainer.h"

#include <chrono>
#include <cmath>
#include <exception>
#include <functional>
#include <memory>
#include <numeric>
#include <string>
#include <vector>

#include <Eigen/Core>

#include "common/seed.h"
#include "common/shard_plan.h"
#include "worker/data/dataset.h"
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
  RankData data;
  std::unique_ptr<Mlp> model;
  std::unique_ptr<Optimizer> optimizer;
  Eigen::MatrixXf batch;  // gathered samples, features x max(rows of a step, kEvalBatch)
  std::vector<std::int32_t> batch_labels;
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
  return read_local(task.dataset, layout, &st->data).With("dataset " + task.dataset.path);
}

// Phase 3, rank-local, once the group agreed on features and classes: model and optimizer.
Status build_model(const TrialTask& task, RankState* st) {
  const TrainConfig& c = task.config;
  if (st->data.classes < 2)
    return Status::Error("model '" + c.model + "' needs a classification dataset");
  OptimizerOptions opt;
  if (Status s = optimizer_options_from_config(c, &opt); !s.ok()) return s;
  MlpShape shape;
  if (Status s = mlp_shape_from_config(c, st->data.features, st->data.classes, &shape); !s.ok())
    return s;
  const int width = std::max(st->data.max_step_rows(), kEvalBatch);
  st->model = std::make_unique<Mlp>(shape, width, kGradTail);
  st->model->init(derive_seed(task.seed, {kInitSeedTag}));
  if (Status s = make_optimizer(opt, st->model->num_params(), &st->optimizer); !s.ok()) return s;
  st->batch.resize(st->data.features, width);
  st->batch_labels.resize(static_cast<std::size_t>(width));
  return Status::Ok();
}

// Loss and correct sums of `columns` of `data` on this rank, in kEvalBatch-wide chunks.
EvalSums evaluate_columns(RankState* st, const Eigen::MatrixXf& x, const std::vector<float>& y,
                          const std::vector<std::int64_t>& columns) {
  EvalSums total;
  const auto n_total = static_cast<std::int64_t>(columns.size());
  for (std::int64_t at = 0; at < n_total; at += kEvalBatch) {
    const int n = static_cast<int>(std::min<std::int64_t>(kEvalBatch, n_total - at));
    for (int j = 0; j < n; ++j) {
      st->batch.col(j) = x.col(columns[at + j]);
      st->batch_labels[j] = static_cast<std::int32_t>(y[columns[at + j]]);
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
  const ShardPlan& plan = *st->data.plan;
  Mlp& model = *st->model;
  const std::vector<std::vector<std::int64_t>> steps = st->data.epoch_columns(epoch);

  const float scale = 1.0f / static_cast<float>(plan.global_batch());
  Eigen::VectorXf& buffer = model.grad_buffer();
  const auto n_params = model.num_params();
  const int count = static_cast<int>(buffer.size());
  double loss_total = 0;
  for (std::int64_t s = 0; s < plan.steps_per_epoch(); ++s) {
    int col = 0;
    for (const std::int64_t c : steps[static_cast<std::size_t>(s)]) {
      st->batch.col(col) = st->data.train_x.col(c);
      st->batch_labels[static_cast<std::size_t>(col)] =
          static_cast<std::int32_t>(st->data.train_y[static_cast<std::size_t>(c)]);
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
  // Failures before the first collective are agreed at each phase boundary, so a rank whose
  // file is corrupt never leaves the others waiting inside a collective.
  const auto guarded = [](const char* what, const std::function<Status()>& step) {
    try {
      return step();
    } catch (const std::exception& e) {
      return Status::Error(std::string(what) + ": " + e.what());
    }
  };
  Status s = agree(comm, guarded("reading data", [&] { return read_data(task, rank, ranks, &st); }));
  if (!s.ok()) return s;
  if (s = finish_collectively(comm, &st.data); !s.ok()) return s.With("dataset " + task.dataset.path);
  s = agree(comm, guarded("building the model", [&] { return build_model(task, &st); }));
  if (!s.ok()) return s;

  const ShardPlan& plan = *st.data.plan;
  std::vector<std::int64_t> test_columns(static_cast<std::size_t>(st.data.test_x.cols()));
  std::iota(test_columns.begin(), test_columns.end(), std::int64_t{0});
  const std::int64_t val_rows = st.data.validation_rows_total();
  const std::int64_t test_rows = st.data.test_rows_total;

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
      reduce_eval(comm, evaluate_columns(&st, st.data.train_x, st.data.train_y, st.data.val_columns),
                  val_rows, &val_loss, &val_acc);
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
  reduce_eval(comm, evaluate_columns(&st, st.data.test_x, st.data.test_y, test_columns),
              test_rows, &test_loss, &test_acc);
  result->final_metrics["test_loss"] = test_loss;
  result->final_metrics["test_acc"] = test_acc;
  for (const char* name : {"train_loss", "val_loss", "val_acc"}) {
    const auto it = last.find(name);
    if (it != last.end()) result->final_metrics[name] = it->second;
  }
  return Status::Ok();
}

}  // namespace trellis::worker
