#pragma once
// One rank's share of a trial's data, loaded in two phases so that failures are agreed before
// any collective:
//
//   1. read_local: local file I/O only. The rank reads its own shard of the training file
//      (idx: a row range; csv/libsvm: the lines starting in its byte range, see line_range.h)
//      and its part of the test file, and checks every row. The caller then agrees on the
//      Status across the group (one failing rank fails all).
//   2. finish_collectively: every rank calls it. The ranks combine the feature count (libsvm:
//      largest index) and the class count (max label + 1, unless declared); draw the splits
//      (below); exchange per-shard row counts (so the ShardPlan can interleave shards none of
//      them read entirely); and sum the training split's per-feature moments for standard
//      scaling and, for regression, the target's. Its failures are decided from group-wide
//      numbers only, so every rank returns the same Status.
//
// finish_in_process does phase 2 for all ranks of a group held in one process, with the same
// arithmetic: tests use it to check K-rank layouts without K processes.
//
// The splits are the experiment's, not the trial's: drawn from DatasetRef::split_seed, every
// trial of a sweep holds out the same rows. First, with test_fraction, the test rows of a
// dataset that has no test file; then validation_fraction of the rows left. Each draw takes,
// per stratum (each class for classification, all rows for regression), the round(fraction x
// rows) rows whose hash of (split seed, row id) is smallest, so each class's share of the held
// out rows is its share of the file, up to rounding. The ranks find those rows together
// without moving any (a radix select over the hashes, one all-reduce of histograms per byte).
//
// Row ids: idx rows are file row numbers; csv/libsvm rows are the byte offset where their line
// starts. Either way they do not depend on the rank count, so the splits and each step's
// samples are the same for any K.
//
// Regression: the target is standardised on the training split (validation and test rows
// excluded): train_y and test_y hold (y - target_mean) / target_std, and whoever reports a
// number in the target's units multiplies back.

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <Eigen/Core>
#include <mpi.h>

#include "common/dataset_ref.h"
#include "common/shard_plan.h"
#include "common/status.h"

namespace trellis::worker {

// Whose fault a failed load is. kDataset: the files are not what the spec says (missing,
// truncated, a corrupt header, labels that do not match the rows, no features, one class, an
// unsupported format): every trial of a sweep reads the same files with the same ranks, so
// none can succeed. kTrial: this trial's batch_size (below 1, or more than the training rows),
// or memory running out on this node: another trial, or another attempt, may succeed.
enum class DataFault { kNone, kTrial, kDataset };

struct LayoutOptions {
  std::uint64_t seed = 0;  // the trial's data seed: the shuffles derive from it (not the splits)
  int global_batch = 1;
  int ranks = 1;
  int rank = 0;
};

// Between the two phases: what read_local found that the group must combine. Internal to
// dataset.cc; public only so RankData stays a plain struct.
struct RankDataStaging {
  LayoutOptions layout;
  std::string format;
  bool classification = true;
  bool standard_scaling = false;
  int declared_classes = 0;
  int declared_features = 0;
  int local_features = 0;   // csv/idx: the file's; libsvm: largest index this rank saw
  int local_max_label = -1;  // classification: largest label this rank read (train and test)
  double validation_fraction = 0;
  double test_fraction = 0;  // > 0: the test rows are drawn from the training file
  std::uint64_t split_seed = 0;
  std::vector<std::int32_t> row_shard;  // per column of train_x, its virtual shard
  // libsvm rows before densifying (train then test), compressed sparse row
  std::vector<std::int64_t> sparse_begin[2];
  std::vector<std::int32_t> sparse_index[2];
  std::vector<float> sparse_value[2];
};

struct RankData {
  int rank = 0;
  int ranks = 1;
  // This rank's rows of the training file, training and validation, in file order: one
  // column per row (features x rows), after scaling once finished. Rows drawn for the test
  // split (test_fraction) are moved to test_x once finished.
  Eigen::MatrixXf train_x;
  std::vector<float> train_y;  // class id as float, or the regression target
  std::vector<std::int64_t> train_row_ids;  // per column, ascending
  std::vector<std::int64_t> val_columns;    // columns of train_x held out for validation
  // This rank's part of the test file (an even split: test layout does not affect training),
  // or with test_fraction its test rows of the training file.
  Eigen::MatrixXf test_x;
  std::vector<float> test_y;

  int features = 0;
  int classes = 0;  // 0: regression target
  // Standard scaling as fitted on the group's training split; empty when not scaled.
  std::vector<double> scale_mean;
  std::vector<double> scale_std;  // 1 for a constant feature
  // Regression: the target's mean and standard deviation over the group's training split
  // (1 for a constant target); train_y and test_y are standardised with them once finished.
  double target_mean = 0;
  double target_std = 1;

  // Group-wide counts, set by finish.
  std::int64_t test_rows_total = 0;
  std::int64_t file_rows_total = 0;  // rows of the training file, before the test split

  // What this rank read of the train and test files: data rows, and bytes (headers included).
  std::int64_t rows_read = 0;
  std::int64_t bytes_read = 0;
  // The files it opened, in that order (idx: the raw or the .gz, whichever was read), for the
  // provenance's dataset hash (worker/provenance.h).
  std::vector<std::string> files;

  // The group's plan; set by finish_* (idx: already by read_local).
  std::unique_ptr<ShardPlan> plan;

  RankDataStaging staging;

  // Set when read_local or finish_* fails: whose fault it is.
  DataFault fault = DataFault::kNone;

  // For each step of `epoch` (1-based), the columns of train_x this rank trains on.
  std::vector<std::vector<std::int64_t>> epoch_columns(int epoch) const;
  // The most columns any one step hands this rank (size the batch buffer with it).
  int max_step_rows() const { return plan->max_step_rows(rank); }
  std::int64_t validation_rows_total() const { return plan->validation_rows(); }
};

// The standard scaling exactly as applied to the float features, x' = (x - mean) * inv_std;
// empty when the data is not scaled. A final model carries it, so that predictions on new
// rows see the features as training did.
void applied_scaling(const RankData& data, std::vector<float>* mean, std::vector<float>* inv_std);

// Phase 1, local I/O only. `out` is reset first. Errors name the file and where in it.
[[nodiscard]] Status read_local(const DatasetRef& dataset, const LayoutOptions& layout,
                                RankData* out);

// Phase 2: every rank of `comm` (layout.ranks of them, in rank order) calls it after the group
// agreed that read_local succeeded everywhere. Returns the same Status on every rank.
[[nodiscard]] Status finish_collectively(MPI_Comm comm, RankData* data);

// Phase 2 for a whole group held in one process: (*group)[r] is rank r's data.
[[nodiscard]] Status finish_in_process(std::vector<RankData>* group);

}  // namespace trellis::worker
