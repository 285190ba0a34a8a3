#pragma once
// Reads one byte range of a CSV file with a header line: the column named by the label is the
// target, every other column a numeric feature. Fields are separated by commas; surrounding
// spaces are ignored; blank lines are skipped; no quoting (numeric data needs none, and a
// header name may be wrapped in double quotes). Every failure names the file and line.

#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"
#include "worker/data/line_range.h"
#include "worker/data/target_rule.h"

namespace trellis::worker {

struct CsvHeader {
  std::string path;
  std::vector<std::string> columns;  // as named in the header, label included
  int label_column = 0;  // -1: no label column (LabelColumn::kOptional found none)
  std::int64_t data_begin = 0;  // byte offset of the first data line
  std::int64_t file_size = 0;
  std::int64_t bytes_read = 0;  // reading the header
  int features() const { return static_cast<int>(columns.size()) - (label_column >= 0 ? 1 : 0); }
};

// Rows of one byte range, in file order.
struct CsvRows {
  std::vector<std::int64_t> offsets;  // each row's line start: its row id
  std::vector<float> targets;
  std::vector<float> features;  // row-major: row i is [i * F, (i + 1) * F), a F x rows matrix
  std::int64_t bytes_read = 0;
};

// Training data must name its target; rows to predict on may or may not still have it.
enum class LabelColumn { kRequired, kOptional };

// Reads the header of `path`. Fails when the file is missing or empty, has no data lines, or
// (kRequired) no column is named `label`.
[[nodiscard]] Status read_csv_header(const std::string& path, const std::string& label,
                                     CsvHeader* out,
                                     LabelColumn need = LabelColumn::kRequired);

// Reads the lines starting in `range` (within [header.data_begin, header.file_size)). Fails on
// a line with the wrong number of fields, a field that is not a finite number, or a target
// that `rule` refuses, naming the file and line. Without a label column every target is 0.
[[nodiscard]] Status read_csv_rows(const CsvHeader& header, ByteRange range,
                                   const TargetRule& rule, CsvRows* out);

}  // namespace trellis::worker
