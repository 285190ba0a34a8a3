#include "coordinator/trial_comparison.h"

#include <algorithm>
#include <map>
#include <set>

#include "coordinator/exporter.h"

namespace trellis::coordinator {
namespace {

using nlohmann::json;

// Every leaf of `object` under `prefix`, nested keys joined with '.'.
void flatten(const json& object, const std::string& prefix, std::map<std::string, json>* out) {
  for (const auto& [key, value] : object.items()) {
    const std::string name = prefix + "." + key;
    if (value.is_object() && !value.empty()) {
      flatten(value, name, out);
    } else {
      (*out)[name] = value;
    }
  }
}

json highest_epoch(const json& document) {
  std::int64_t highest = 0;
  const json metrics = document.value("metrics", json::object());
  for (const auto& [name, points] : metrics.items())
    for (const json& point : points) highest = std::max<std::int64_t>(highest, point[0]);
  return highest;
}

std::string one_line(std::string text) {
  std::string out;
  for (char c : text) {
    if (c == '\n') {
      out += " / ";
    } else if (c != '\r') {
      out += c;
    }
  }
  return out;
}

}  // namespace

std::vector<ComparisonRow> compare_trials(const std::vector<json>& documents) {
  std::vector<std::string> order = {"state", "error", "epochs", "attempt",
                                    "seed",  "checkpoint_epoch", "exploits"};
  std::vector<std::map<std::string, json>> fields(documents.size());
  std::set<std::string> params, finals, provenance;
  for (std::size_t i = 0; i < documents.size(); ++i) {
    const json& d = documents[i];
    auto& f = fields[i];
    for (const char* key : {"state", "error", "attempt", "seed", "checkpoint_epoch"})
      if (d.contains(key)) f[key] = d[key];
    f["epochs"] = highest_epoch(d);
    f["exploits"] = d.value("lineage", json::array()).size();
    std::map<std::string, json> part;
    flatten(d.value("params", json::object()), "params", &part);
    for (const auto& [name, v] : part) params.insert(name);
    std::map<std::string, json> final_part;
    flatten(d.value("final", json::object()), "final", &final_part);
    for (const auto& [name, v] : final_part) finals.insert(name);
    std::map<std::string, json> provenance_part;
    if (d.contains("provenance") && d["provenance"].is_object())
      flatten(d["provenance"], "provenance", &provenance_part);
    for (const auto& [name, v] : provenance_part) provenance.insert(name);
    f.merge(part);
    f.merge(final_part);
    f.merge(provenance_part);
  }
  for (const auto* names : {&params, &finals, &provenance})
    order.insert(order.end(), names->begin(), names->end());
  std::vector<ComparisonRow> rows;
  for (const std::string& name : order) {
    ComparisonRow row;
    row.field = name;
    for (const auto& f : fields) {
      const auto it = f.find(name);
      row.values.push_back(it != f.end() ? it->second : json(nullptr));
    }
    for (const json& v : row.values) row.differs = row.differs || v != row.values.front();
    rows.push_back(std::move(row));
  }
  return rows;
}

Status parse_compare_format(const std::string& text, CompareFormat* out) {
  if (text == "table") *out = CompareFormat::kTable;
  else if (text == "csv") *out = CompareFormat::kCsv;
  else if (text == "json") *out = CompareFormat::kJson;
  else return Status::Error("--format '" + text + "': expected table, csv or json");
  return Status::Ok();
}

void write_comparison(const std::vector<std::int32_t>& numbers,
                      const std::vector<ComparisonRow>& rows, bool all, CompareFormat format,
                      std::ostream& out) {
  std::vector<const ComparisonRow*> shown;
  for (const ComparisonRow& row : rows)
    if (all || row.differs) shown.push_back(&row);
  if (format == CompareFormat::kJson) {
    json doc = {{"trials", numbers}, {"rows", json::array()}};
    for (const ComparisonRow* row : shown)
      doc["rows"].push_back({{"field", row->field}, {"values", row->values}, {"differs", row->differs}});
    out << doc.dump(2, ' ', false, json::error_handler_t::replace) << "\n";
    return;
  }
  if (format == CompareFormat::kCsv) {
    out << "field";
    for (std::int32_t n : numbers) out << "," << n;
    out << "\n";
    for (const ComparisonRow* row : shown) {
      out << csv_field(row->field);
      for (const json& v : row->values) out << "," << csv_field(cell_text(v));
      out << "\n";
    }
    return;
  }
  std::vector<std::vector<std::string>> cells = {{"trial"}};
  for (std::int32_t n : numbers) cells[0].push_back(std::to_string(n));
  for (const ComparisonRow* row : shown) {
    std::vector<std::string> line = {row->field};
    for (const json& v : row->values) line.push_back(v.is_null() ? "-" : one_line(cell_text(v)));
    cells.push_back(std::move(line));
  }
  std::vector<std::size_t> width(cells[0].size(), 0);
  for (const auto& line : cells)
    for (std::size_t c = 0; c < line.size(); ++c) width[c] = std::max(width[c], line[c].size());
  for (const auto& line : cells) {
    for (std::size_t c = 0; c < line.size(); ++c) {
      out << line[c];
      if (c + 1 < line.size()) out << std::string(width[c] - line[c].size() + 2, ' ');
    }
    out << "\n";
  }
  if (shown.empty())
    out << "(no field differs between these trials; --all shows every field)\n";
}

}  // namespace trellis::coordinator
