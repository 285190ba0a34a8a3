#include "worker/data/csv_reader.h"

#include <algorithm>
#include <new>

namespace trellis::worker {
namespace {

constexpr char kSeparator = ',';

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

bool blank(std::string_view line) { return trim(line).empty(); }

std::string_view unquote(std::string_view s) {
  s = trim(s);
  if (s.size() >= 2 && s.front() == '"' && s.back() == '"') s = s.substr(1, s.size() - 2);
  return s;
}

std::string_view leading_bytes(std::string_view s) {
  constexpr std::size_t kShown = 40;
  return s.substr(0, kShown);
}

}  // namespace

Status read_csv_header(const std::string& path, const std::string& label, CsvHeader* out,
                       LabelColumn need) {
  LineRangeReader reader;
  Status s = reader.open(path);
  if (!s.ok()) return s;
  std::string line;
  CsvHeader h;
  s = reader.read_first_line(&line, &h.data_begin);
  if (!s.ok()) return s;
  h.path = path;
  h.file_size = reader.file_size();
  h.bytes_read = reader.bytes_read();
  if (blank(line)) return Status::Error(path + ":1: empty header line");
  std::string_view rest = line;
  int label_column = -1;
  for (;;) {
    const std::size_t comma = rest.find(kSeparator);
    const std::string name(unquote(rest.substr(0, comma)));
    if (name == label) label_column = static_cast<int>(h.columns.size());
    h.columns.push_back(name);
    if (comma == std::string_view::npos) break;
    rest.remove_prefix(comma + 1);
  }
  if (label_column < 0 && need == LabelColumn::kRequired) {
    std::string names;
    for (const auto& c : h.columns) names += (names.empty() ? "" : ", ") + c;
    return Status::Error(path + ":1: no column named '" + label + "' in the header (columns: " +
                         names + ")");
  }
  h.label_column = label_column;
  if (h.features() < 1) return Status::Error(path + ":1: no feature columns besides '" + label + "'");
  if (h.data_begin >= h.file_size) return Status::Error(path + ": has a header but no rows");
  *out = std::move(h);
  return Status::Ok();
}

Status read_csv_rows(const CsvHeader& header, ByteRange range, const TargetRule& rule,
                     CsvRows* out) {
  LineRangeReader reader;
  Status s = reader.open(header.path);
  if (!s.ok()) return s;
  if (reader.file_size() != header.file_size)
    return Status::Error(header.path + ": file changed while reading (" +
                         std::to_string(reader.file_size()) + " bytes, was " +
                         std::to_string(header.file_size) + ")");
  s = reader.seek(range, header.data_begin);
  if (!s.ok()) return s;
  const std::size_t columns = header.columns.size();
  const std::size_t label = static_cast<std::size_t>(header.label_column);
  *out = CsvRows();
  try {
    TextLine line;
    while (reader.next(&line, &s)) {
      if (blank(line.text)) continue;
      const std::size_t row_start = out->features.size();
      std::string_view rest = line.text;
      float target = 0;
      for (std::size_t column = 0;; ++column) {
        const std::size_t comma = rest.find(kSeparator);
        if (column >= columns) {
          const std::size_t fields =
              columns + 1 + static_cast<std::size_t>(std::count(rest.begin(), rest.end(), ','));
          return Status::Error(reader.where(line.offset) + ": expected " +
                               std::to_string(columns) + " fields, got " + std::to_string(fields));
        }
        const std::string_view field = rest.substr(0, comma);
        float value = 0;
        if (!parse_float(field, &value))
          return Status::Error(reader.where(line.offset) + ": field " +
                               std::to_string(column + 1) + " ('" + header.columns[column] +
                               "') is not a finite number: '" +
                               std::string(leading_bytes(trim(field))) + "'");
        if (column == label) {
          target = value;
        } else {
          out->features.push_back(value);
        }
        if (comma == std::string_view::npos) {
          if (column + 1 != columns)
            return Status::Error(reader.where(line.offset) + ": expected " +
                                 std::to_string(columns) + " fields, got " +
                                 std::to_string(column + 1));
          break;
        }
        rest.remove_prefix(comma + 1);
      }
      if (const std::string bad = check_target(rule, target); !bad.empty()) {
        out->features.resize(row_start);
        return Status::Error(reader.where(line.offset) + ": " + bad);
      }
      out->offsets.push_back(line.offset);
      out->targets.push_back(target);
    }
  } catch (const std::bad_alloc&) {
    return Status::Error(header.path + ": out of memory reading bytes [" +
                         std::to_string(range.begin) + ", " + std::to_string(range.end) + ")");
  }
  out->bytes_read = reader.bytes_read();
  return s;
}

}  // namespace trellis::worker
