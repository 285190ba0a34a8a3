#pragma once
// Data-parallel training of one trial on the ranks of an MPI communicator.
//
// Every rank calls `train` with the same task. Each rank reads only its own shard of the
// training file (see common/shard_plan.h); each step every rank computes the gradient of its
// part of the global batch into one contiguous buffer, one MPI_Allreduce sums it, and every
// rank applies the identical optimizer step, so weights never diverge. Validation and test
// metrics are sums over ranks, reduced the same way.

#include <functional>

#include <mpi.h>

#include "common/dataset_ref.h"
#include "common/param_value.h"
#include "common/status.h"
#include "common/train_config.h"
#include "worker/collectives.h"

namespace trellis::worker {

struct TrialTask {
  std::int64_t trial = 0;
  std::int32_t attempt = 0;
  // Weights init, shuffling and dropout derive from it; the splits do not (they are the
  // experiment's: dataset.split_seed).
  std::uint64_t seed = 0;
  TrainConfig config;
  DatasetRef dataset;
  // Where rank 0 keeps checkpoints (empty: none): PATH.epoch-E after every epoch E, and
  // PATH.epoch-E.partial when stopped mid-epoch E+1. A full checkpoint is removed only once it
  // is older than the newest one the coordinator has stored (TrainerHooks::stored_checkpoint):
  // the next attempt resumes from the store's checkpoint epoch, which is never older than
  // that, whatever reports were lost with the group. Resuming from
  // epoch E reads the partial one if it exists. Every checkpoint of a trial is a state of the
  // same deterministic run, so any of them continues it exactly as the uninterrupted run would
  // have: same weights, optimizer state, data order and lr.
  std::string checkpoint;
  int resume_epoch = 0;
  bool resume = false;  // continue from the checkpoint (which may also hold a partial epoch)
  // Another trial's checkpoint to continue from instead (PBT exploit): same model and
  // optimizer, any seed. Its epoch must be resume_epoch.
  std::string warm_start;
  int stop_epoch = 0;  // stop after this epoch (0: config.epochs)
  // PBT: rank 0 keeps the state after stop_epoch as exploit_snapshot(checkpoint, stop_epoch),
  // and only the newest this many snapshots of the trial (0: none).
  int exploit_snapshots = 0;
};

struct TrainerHooks {
  // Called on every rank after each epoch (1-based) with the group-wide metrics, identical on
  // all ranks: train_loss, val_loss, val_acc (regression: val_rmse, val_mae, val_r2 instead;
  // every regression number in the target's units), samples_per_s, epoch_s. `checkpointed` (rank 0
  // only) says this epoch's checkpoint is durably written. Rank 0's answer decides for the
  // whole group: false stops training (the trial was pruned).
  std::function<bool(int epoch, const MetricMap& metrics, bool checkpointed)> on_epoch;
  // Called on every rank after each step; rank 0 counts the steps its heartbeats report as
  // progress (the coordinator tells a stuck group by it). Must not block.
  std::function<void()> on_step;
  // Asked on every rank before each step: true when this rank was told to stop now
  // (SIGTERM: preemption or a time limit). Any rank's yes stops the whole group after the
  // same step, checkpointed so the trial continues from there.
  std::function<bool()> stop_now;
  // Rank 0: the newest epoch of this attempt whose checkpointed report the coordinator has
  // acknowledged (0: none yet). Checkpoints older than it and older than resume_epoch are
  // removed. Empty (no coordinator): the last two are kept.
  std::function<int()> stored_checkpoint;
};

struct TrainResult {
  int epochs_run = 0;  // the last epoch trained, counting those before a resume
  // train() failed on the dataset itself (worker/data/dataset.h, DataFault::kDataset): no
  // trial of the sweep can read it. False for every failure of the trial's own.
  bool dataset_error = false;
  bool stopped_early = false;  // on_epoch said stop
  bool preempted = false;      // stop_now said stop; the trial is not finished
  bool checkpointed = false;   // preempted: the checkpoint holds the state it stopped in
  // The test split's metrics (test_loss and test_acc; regression: test_loss, test_rmse,
  // test_mae, test_r2) and the last epoch's train_loss and validation metrics.
  MetricMap final_metrics;
  // Rank 0, when training went through the `epochs` hyperparameter: the final model in the
  // checkpoint format, with buffers "params"; for scaled features, "scale.mean" and
  // "scale.inv_std" (x' = (x - mean) * inv_std); for regression, "target.mean" and
  // "target.std" (one float each: the network's output is the standardised target, the value
  // is output * std + mean). Its metrics are final_metrics.
  std::string model;
  // The dataset files this rank opened, in order, for the provenance (worker/provenance.h).
  std::vector<std::string> dataset_files;
};

// Collective over the group. A failure on any rank (missing file, corrupt data, NaN loss) is
// agreed by the group: every rank returns an error, and the message names the failing rank
// and what went wrong, so no rank is left waiting inside a collective. The exception is a
// failed gradient all-reduce, which some ranks may not see: that rank aborts the whole group
// (MPI_Abort), and the coordinator requeues the trial once the group falls silent.
[[nodiscard]] Status train(const TrialTask& task, const GroupComm& group,
                           const TrainerHooks& hooks, TrainResult* result);

}  // namespace trellis::worker
