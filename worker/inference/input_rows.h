#pragma once
// Rows to predict on, read with the training readers (worker/data) so a value means what it
// meant in training: idx pixels / 255, csv and libsvm fields as written.
//
// Layouts, chosen so that the trial's own test file can be predicted on as it is:
//   csv     a header line, then one row per line. A column named like the dataset's label
//           (`label` unless the spec says otherwise) is ignored wherever it is, so the
//           training layout works; every other column is a feature, by position. The feature
//           count must be the model's.
//   libsvm  `label index:value ...` per line, as in training: the label token is required by
//           the format and ignored (write 0 when there is none); an index above the model's
//           feature count is an error, missing indices are 0.
//   idx     an images file (idx3-ubyte, raw or .gz) of any name, or a dataset directory, whose
//           t10k images are read (labels are never read). Image size must match.
// Every error names the file, and the line (csv, libsvm) or what differs (idx).

#include <string>

#include <Eigen/Core>

#include "common/status.h"

namespace trellis::worker {

enum class InputFormat { kCsv, kLibsvm, kIdx };

// "csv" | "libsvm" | "idx", or empty: guessed from `path` (a directory or a name containing
// "-ubyte" or ending ".idx": idx; ".csv"; ".libsvm", ".svm", ".txt": libsvm).
[[nodiscard]] Status input_format(const std::string& given, const std::string& path,
                                  InputFormat* out);

// Reads every row of `path` into `x`, one column per row (features x rows). `features` is the
// model's input count; `label` the csv column to ignore.
[[nodiscard]] Status read_input_rows(const std::string& path, InputFormat format,
                                     const std::string& label, int features, Eigen::MatrixXf* x);

}  // namespace trellis::worker
