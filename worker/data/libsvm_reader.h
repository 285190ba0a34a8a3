#pragma once
// Reads one byte range of a LIBSVM file: `label index:value index:value ...` per line, indices
// 1-based, whitespace separated, `#` to the end of the line a comment, blank lines skipped.
// The rows stay sparse here: the feature count is known only once every rank has read its
// range (the largest index anywhere), so densifying waits for the group (see dataset.h).

#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"
#include "worker/data/line_range.h"
#include "worker/data/target_rule.h"

namespace trellis::worker {

// Above any real feature count; stops a corrupt index from sizing a dense matrix.
inline constexpr std::int64_t kMaxLibsvmFeatures = 1 << 24;

// Rows of one byte range, in file order, in compressed sparse row form.
struct LibsvmRows {
  std::vector<std::int64_t> offsets;  // each row's line start: its row id
  std::vector<float> targets;
  std::vector<std::int64_t> row_begin{0};  // row i's entries are [row_begin[i], row_begin[i+1])
  std::vector<std::int32_t> index;         // 0-based feature
  std::vector<float> value;
  int max_index = 0;  // the largest 1-based index seen, 0 when none
  std::int64_t bytes_read = 0;
  std::int64_t file_size = 0;
};

// Reads the lines of `path` starting in `range`. `features` > 0 is the declared feature count:
// a larger index is an error. Fails on an empty file, a malformed `index:value` pair, an index
// < 1, a non-finite value, or a target that `rule` refuses, naming the file and line.
[[nodiscard]] Status read_libsvm_rows(const std::string& path, ByteRange range, int features,
                                      const TargetRule& rule, LibsvmRows* out);

// The size of `path` in bytes, and an error when it is missing or empty.
[[nodiscard]] Status libsvm_file_size(const std::string& path, std::int64_t* size);

}  // namespace trellis::worker
