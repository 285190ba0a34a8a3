// compare_trials and write_comparison on hand-made trial documents (the export's layout).
#include "coordinator/trial_comparison.h"

#include <gtest/gtest.h>

#include <regex>
#include <sstream>

namespace trellis::coordinator {
namespace {

using nlohmann::json;

json trial(int id, double lr, const std::string& activation, double val_acc, int epochs) {
  json metrics = {{"val_acc", json::array()}};
  for (int e = 1; e <= epochs; ++e) metrics["val_acc"].push_back({e, val_acc});
  return {{"id", id}, {"state", "completed"}, {"error", ""}, {"attempt", 1}, {"seed", 7},
          {"checkpoint_epoch", epochs}, {"lineage", json::array()},
          {"params", {{"lr", lr}, {"activation", activation}, {"batch_size", 32}}},
          {"metrics", metrics}, {"final", {{"val_acc", val_acc}}},
          {"provenance", {{"host", "n1"}, {"ranks", 1}}}};
}

const ComparisonRow& row(const std::vector<ComparisonRow>& rows, const std::string& field) {
  for (const ComparisonRow& r : rows)
    if (r.field == field) return r;
  ADD_FAILURE() << "no row " << field;
  static const ComparisonRow none;
  return none;
}

TEST(TrialComparison, MarksExactlyTheFieldsThatDiffer) {
  json a = trial(0, 0.01, "relu", 0.9, 3);
  json b = trial(4, 0.02, "relu", 0.9, 2);
  b["provenance"]["host"] = "n2";
  b["provenance"]["job"] = "12_1";  // only b has it
  const std::vector<ComparisonRow> rows = compare_trials({a, b});
  EXPECT_TRUE(row(rows, "params.lr").differs);
  EXPECT_FALSE(row(rows, "params.activation").differs);
  EXPECT_FALSE(row(rows, "params.batch_size").differs);
  EXPECT_FALSE(row(rows, "final.val_acc").differs);
  EXPECT_TRUE(row(rows, "epochs").differs);
  EXPECT_EQ(row(rows, "epochs").values, (std::vector<json>{3, 2}));
  EXPECT_TRUE(row(rows, "checkpoint_epoch").differs);
  EXPECT_TRUE(row(rows, "provenance.host").differs);
  EXPECT_FALSE(row(rows, "provenance.ranks").differs);
  EXPECT_TRUE(row(rows, "provenance.job").differs) << "a field one trial lacks differs";
  EXPECT_TRUE(row(rows, "provenance.job").values[0].is_null());
  // Fixed order: the trial's own fields, then params, final, provenance, names sorted.
  std::vector<std::string> fields;
  for (const ComparisonRow& r : rows) fields.push_back(r.field);
  EXPECT_EQ(fields, (std::vector<std::string>{
                        "state", "error", "epochs", "attempt", "seed", "checkpoint_epoch",
                        "exploits", "params.activation", "params.batch_size", "params.lr",
                        "final.val_acc", "provenance.host", "provenance.job", "provenance.ranks"}));
}

TEST(TrialComparison, PrintsOnlyWhatDiffersUnlessAll) {
  const std::vector<ComparisonRow> rows =
      compare_trials({trial(0, 0.01, "relu", 0.9, 2), trial(3, 0.01, "tanh", 0.95, 2)});
  std::ostringstream table, all, csv, doc;
  write_comparison({0, 3}, rows, false, CompareFormat::kTable, table);
  EXPECT_EQ(table.str(),
            "trial              0     3\n"
            "params.activation  relu  tanh\n"
            "final.val_acc      0.9   0.95\n");
  write_comparison({0, 3}, rows, true, CompareFormat::kTable, all);
  EXPECT_TRUE(std::regex_search(all.str(), std::regex("\nparams\\.batch_size +32 +32\n")))
      << all.str();
  EXPECT_TRUE(std::regex_search(all.str(), std::regex("\nstate +completed +completed\n")));
  write_comparison({0, 3}, rows, false, CompareFormat::kCsv, csv);
  EXPECT_EQ(csv.str(), "field,0,3\nparams.activation,relu,tanh\nfinal.val_acc,0.9,0.95\n");
  write_comparison({0, 3}, rows, false, CompareFormat::kJson, doc);
  const json parsed = json::parse(doc.str());
  EXPECT_EQ(parsed["trials"], (json{0, 3}));
  ASSERT_EQ(parsed["rows"].size(), 2u);
  EXPECT_EQ(parsed["rows"][1]["field"], "final.val_acc");
  EXPECT_EQ(parsed["rows"][1]["values"], (json{0.9, 0.95}));
}

TEST(TrialComparison, IdenticalTrialsSaySoAndAFormatIsChecked) {
  const json t = trial(0, 0.01, "relu", 0.9, 2);
  std::ostringstream out;
  write_comparison({0, 0}, compare_trials({t, t}), false, CompareFormat::kTable, out);
  EXPECT_NE(out.str().find("no field differs"), std::string::npos) << out.str();
  CompareFormat format;
  const Status s = parse_compare_format("yaml", &format);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("'yaml'"), std::string::npos);
  EXPECT_NE(s.message().find("table, csv or json"), std::string::npos);
}

}  // namespace
}  // namespace trellis::coordinator
