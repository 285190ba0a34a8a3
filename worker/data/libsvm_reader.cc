#include "worker/data/libsvm_reader.h"

#include <charconv>
#include <new>

namespace trellis::worker {
namespace {

bool is_space(char c) { return c == ' ' || c == '\t'; }

// The next whitespace-separated token of *rest, or empty at the end.
std::string_view next_token(std::string_view* rest) {
  std::size_t i = 0;
  while (i < rest->size() && is_space((*rest)[i])) ++i;
  std::size_t j = i;
  while (j < rest->size() && !is_space((*rest)[j])) ++j;
  const std::string_view token = rest->substr(i, j - i);
  rest->remove_prefix(j);
  return token;
}

}  // namespace

Status libsvm_file_size(const std::string& path, std::int64_t* size) {
  LineRangeReader reader;
  Status s = reader.open(path);
  if (!s.ok()) return s;
  if (reader.file_size() == 0) return Status::Error(path + ": file is empty");
  *size = reader.file_size();
  return Status::Ok();
}

Status read_libsvm_rows(const std::string& path, ByteRange range, int features,
                        const TargetRule& rule, LibsvmRows* out) {
  LineRangeReader reader;
  Status s = reader.open(path);
  if (!s.ok()) return s;
  if (reader.file_size() == 0) return Status::Error(path + ": file is empty");
  s = reader.seek(range, 0);
  if (!s.ok()) return s;
  *out = LibsvmRows();
  out->file_size = reader.file_size();
  const std::int64_t limit = features > 0 ? features : kMaxLibsvmFeatures;
  try {
    TextLine line;
    while (reader.next(&line, &s)) {
      std::string_view rest = line.text.substr(0, line.text.find('#'));
      const std::string_view label = next_token(&rest);
      if (label.empty()) continue;  // blank or comment-only line
      float target = 0;
      if (!parse_float(label, &target))
        return Status::Error(reader.where(line.offset) + ": label is not a finite number: '" +
                             std::string(label.substr(0, 40)) + "'");
      if (const std::string bad = check_target(rule, target); !bad.empty())
        return Status::Error(reader.where(line.offset) + ": " + bad);
      for (std::string_view pair = next_token(&rest); !pair.empty(); pair = next_token(&rest)) {
        const std::size_t colon = pair.find(':');
        const std::string_view key = pair.substr(0, colon);
        long long index = 0;
        const auto [end, ec] = std::from_chars(key.data(), key.data() + key.size(), index);
        float value = 0;
        if (colon == std::string_view::npos || key.empty() || ec != std::errc() ||
            end != key.data() + key.size() || !parse_float(pair.substr(colon + 1), &value))
          return Status::Error(reader.where(line.offset) + ": malformed pair '" +
                               std::string(pair.substr(0, 40)) + "' (expected index:value)");
        if (index < 1)
          return Status::Error(reader.where(line.offset) + ": index " + std::to_string(index) +
                               " in '" + std::string(pair.substr(0, 40)) +
                               "' (LIBSVM indices are 1-based)");
        if (index > limit)
          return Status::Error(reader.where(line.offset) + ": index " + std::to_string(index) +
                               (features > 0 ? " exceeds the declared " + std::to_string(features) +
                                                   " features"
                                             : " exceeds the limit of " +
                                                   std::to_string(kMaxLibsvmFeatures) + " features"));
        out->index.push_back(static_cast<std::int32_t>(index - 1));
        out->value.push_back(value);
        out->max_index = std::max(out->max_index, static_cast<int>(index));
      }
      out->offsets.push_back(line.offset);
      out->targets.push_back(target);
      out->row_begin.push_back(static_cast<std::int64_t>(out->index.size()));
    }
  } catch (const std::bad_alloc&) {
    return Status::Error(path + ": out of memory reading bytes [" + std::to_string(range.begin) +
                         ", " + std::to_string(range.end) + ")");
  }
  out->bytes_read = reader.bytes_read();
  return s;
}

}  // namespace trellis::worker
