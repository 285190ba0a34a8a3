#pragma once
// DatasetRef: where a trial's data lives and how it is split. It travels inside Assign; every
// rank opens the files itself and reads only its own shard (see shard_plan.h and
// worker/data/dataset.h).
//
// Formats:
//   idx     the MNIST family in `path`: {train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz].
//           10 classes, pixels scaled to [0, 1].
//   csv     a header line naming the columns, then one row per line, comma separated; the
//           column named `label` is the target, every other column a numeric feature. The
//           train and test files must have the same columns in the same order.
//   libsvm  `label index:value index:value ...` per line, indices 1-based and sparse; missing
//           entries are 0. `#` starts a comment.
// CSV and LIBSVM files are raw text (not gzip): ranks seek to their byte ranges.

#include <cstdint>
#include <string>

namespace trellis {

struct DatasetRef {
  std::string name;    // e.g. "fashion-mnist"
  std::string format;  // "idx" (default when empty), "csv" or "libsvm"
  std::string path;    // the directory holding the files
  // The splits are the experiment's: every trial of a sweep holds out the same rows, drawn
  // from `split_seed` (the experiment's seed, set from the spec's search.seed), stratified by
  // class for classification (worker/data/dataset.h).
  double validation_fraction = 0.1;  // of the training rows (after any test split)
  // > 0: the dataset is one file; this share of its rows is the test split. csv and libsvm
  // only, and never together with `test`.
  double test_fraction = 0;
  std::uint64_t split_seed = 0;

  // csv and libsvm only. File names relative to `path` (or absolute); empty means the
  // default: train.csv / test.csv, train.libsvm / test.libsvm.
  std::string train;
  std::string test;
  // csv: the header name of the target column.
  std::string label = "label";
  // "classification" (targets are class ids: integers in [0, classes)) or "regression"
  // (targets are any finite float). idx is always classification.
  std::string task = "classification";
  // Classification only: the class count. 0 infers it as max label + 1 over the train and
  // test files (agreed over the ranks); a label >= a declared count is an error.
  int classes = 0;
  // libsvm only: the feature count. 0 infers it as the largest index in the train and test
  // files (agreed over the ranks); an index above a declared count is an error.
  int features = 0;
  // "none" or "standard": (x - mean) / std per feature, mean and std fitted on the training
  // split only (never validation or test rows) over all ranks; a constant feature is only
  // centred. Empty picks the format's default: none for idx (already in [0, 1]), standard for
  // csv and libsvm.
  std::string scaling;
};

}  // namespace trellis
