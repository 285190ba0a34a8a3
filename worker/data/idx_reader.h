#pragma once
// Reads the MNIST family of IDX files (MNIST, Fashion-MNIST, KMNIST...) from a directory:
//
//   train-images-idx3-ubyte  train-labels-idx1-ubyte  t10k-images-idx3-ubyte  t10k-labels-idx1-ubyte
//
// each either raw or gzipped with a ".gz" suffix; the raw file wins when both exist. Each rank
// reads only the rows it owns: a header-only read is cheap, and a row range seeks (raw) or
// streams past the rows before it (gzip). Every failure is a Status naming the file and what
// is wrong with it; a corrupt file never crashes the reader.

#include <cstdint>
#include <string>
#include <vector>

#include <Eigen/Core>

#include "common/shard_plan.h"
#include "common/status.h"

namespace trellis::worker {

// Labels must lie in [0, kIdxClasses).
inline constexpr int kIdxClasses = 10;

enum class IdxSplit { kTrain, kTest };

// What the headers of one split say, and which files hold it.
struct IdxInfo {
  std::string images_path;
  std::string labels_path;
  std::int64_t rows = 0;
  int height = 0;
  int width = 0;
  int features() const { return height * width; }
};

// Rows [begin, end) of a split: images as columns, pixels scaled to [0, 1].
struct IdxRows {
  Eigen::MatrixXf images;            // features x rows
  std::vector<std::int32_t> labels;  // one per column
};

// Finds the split's files in `dir` and reads only their headers. Fails when a file is missing,
// a magic number is wrong, or the image and label files disagree on the row count.
[[nodiscard]] Status read_idx_info(const std::string& dir, IdxSplit split, IdxInfo* out);

// Reads rows `range` of the split described by `info` (as returned by read_idx_info). Fails
// when the range lies outside the file, the file is truncated or changed since `info` was
// read, or a label is out of range.
[[nodiscard]] Status read_idx_rows(const IdxInfo& info, RowRange range, IdxRows* out);

// Every image of one images file (raw, or gzipped when the name ends in ".gz"), whatever the
// file is called and with no labels file: rows to predict on. Pixels scaled as above.
[[nodiscard]] Status read_idx_images(const std::string& path, Eigen::MatrixXf* images);

}  // namespace trellis::worker
