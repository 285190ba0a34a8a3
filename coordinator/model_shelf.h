#pragma once
// ModelShelf: the final models of an experiment's best K completed trials, kept beside the
// store as DIR/EXPERIMENT/trial-N.model, so that a login node which cannot see the workers'
// checkpoints (a compute nodes' scratch) can still predict with, export and reproduce from the
// best trials.
//
// A model arrives with its trial's Done (Done::model) in the checkpoint file format; the shelf
// stores the bytes and never parses them. A model is written only when its trial ranks among
// the best K so far, and the one it pushes out is deleted; trials rank by the experiment's
// objective as `trellis trials` ranks them (the final value, else the last reported one),
// smaller loss first, ties by trial number. A completed trial whose model did not arrive (too
// large for a frame) still takes its place in the ranking; it has no file.
//
// index.json in the directory lists the shelf best first: number, trial id, objective,
// parameters, final metrics and the model's file name (null when it has none). It and the
// models are written atomically (common/atomic_file.h).
//
// Restart: `restore` rebuilds the ranking from the store's completed trials and removes every
// model file not among the best K. A model written just before a crash whose Done was never
// stored goes too; the agent sends that Done again and the model with it. So what is on the
// shelf is a function of the store's completed trials and of which models arrived.

#include <cstdint>
#include <string>
#include <vector>

#include "common/param_value.h"
#include "common/status.h"

namespace trellis::coordinator {

class ModelShelf {
 public:
  struct Entry {
    std::int64_t trial = 0;  // store id
    std::int32_t number = 0;
    double loss = 0;  // the objective, smaller is better (negated when maximised)
    double objective = 0;  // as the metric reads
    ParamMap params;
    MetricMap final_metrics;
    bool has_model = false;  // its file is on the shelf
  };

  // `dir`: DIR/EXPERIMENT; `keep` 0 keeps nothing (and touches no file).
  ModelShelf(std::string dir, int keep);

  // After a (re)start: `completed` are the experiment's completed trials with an objective, in
  // any order; has_model is looked up on disk. Removes model files not among the best.
  [[nodiscard]] Status restore(std::vector<Entry> completed);

  // A trial completed with `model` (empty: it arrived without one). Kept when it ranks among
  // the best `keep`; offering a trial again (a resent Done) replaces its entry.
  [[nodiscard]] Status offer(Entry entry, const std::vector<std::uint8_t>& model);

  // Best first.
  const std::vector<Entry>& kept() const { return kept_; }
  const std::string& dir() const { return dir_; }
  std::string model_path(std::int32_t number) const;

 private:
  [[nodiscard]] Status write_index() const;

  std::string dir_;
  std::size_t keep_;
  std::vector<Entry> kept_;
};

// One trial's model as index.json lists it, for the commands that use kept models (predict,
// export-model, show, the dashboard).
struct KeptModel {
  int rank = 0;  // 1: the best
  std::int32_t number = 0;
  ParamMap params;
  std::string path;  // the model file, absolute as `dir` is; empty: ranked, but it never arrived
};

// index.json as written: `keep` and the ranked trials, best first.
struct ShelfIndex {
  int keep = 0;
  std::vector<KeptModel> models;
};

// Reads DIR/EXPERIMENT's index.json. Fails, saying why, when it does not exist (nothing is kept
// yet, or keep_models: 0) or cannot be parsed.
[[nodiscard]] Status read_shelf_index(const std::string& dir, ShelfIndex* out);

// Looks up trial `number` (or, when negative, the best) on the shelf in `dir` (DIR/EXPERIMENT).
// Fails, saying why, when there is no index, the trial is not among the kept ones (naming
// those that are), or it is kept without a file (its model was too large to send).
[[nodiscard]] Status find_kept_model(const std::string& dir, std::int32_t number, KeptModel* out);

}  // namespace trellis::coordinator
