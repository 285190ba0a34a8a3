#include "coordinator/exporter.h"

#include <gtest/gtest.h>

#include <limits>
#include <nlohmann/json.hpp>
#include <sstream>

#include "tests/coordinator/temp_store.h"

namespace trellis::coordinator {
namespace {

using nlohmann::json;
using testing::TempDir;

constexpr std::uint64_t kBigSeed = 18446744073709551557ull;  // >= 2^63

// Three trials: 0 completed over 3 epochs (with a NaN), 1 pruned after 1 epoch, 2 pending. The
// trials are added out of number order so the export's ordering is checked.
class ExporterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    Status s = ExperimentStore::Open(dir_.file("store.db"), false, &store_);
    ASSERT_TRUE(s.ok()) << s.message();
    experiment_.name = "mnist";
    experiment_.spec_yaml = "name: mnist\nsearch:\n  lr: {log_uniform: [1e-4, 1e-1]}\n";
    experiment_.spec_hash = "deadbeef";
    experiment_.metric = "val_acc";
    experiment_.mode = "max";
    experiment_.seed = kBigSeed;
    ASSERT_TRUE(store_->create_experiment(&experiment_).ok());

    add(2, {{"lr", 0.5}, {"layers", std::int64_t{2}}, {"opt", std::string("sgd")}});
    add(0, {{"lr", 1.0}, {"layers", std::int64_t{3}}, {"opt", std::string("adam, amsgrad")}});
    add(1, {{"lr", 0.001}, {"layers", std::int64_t{4}}, {"opt", std::string("say \"hi\"")}});

    std::int32_t attempt = 0;
    ASSERT_TRUE(store_->start_trial(id_[0], "g0", &attempt).ok());
    ASSERT_TRUE(store_->append_report(id_[0], attempt, 1, {{"val_acc", 0.5}, {"val_loss", 2.0}}).ok());
    ASSERT_TRUE(store_->append_report(id_[0], attempt, 2, {{"val_acc", 0.1 + 0.2}, {"val_loss", 1.0}}).ok());
    ASSERT_TRUE(store_->append_report(
        id_[0], attempt, 3,
        {{"val_acc", 0.9}, {"val_loss", std::numeric_limits<double>::quiet_NaN()}}).ok());
    ASSERT_TRUE(store_->finish_trial(id_[0], attempt, TrialState::kCompleted, "",
                                     {{"test_acc", 0.875}}).ok());

    ASSERT_TRUE(store_->start_trial(id_[1], "g1", &attempt).ok());
    ASSERT_TRUE(store_->append_report(id_[1], attempt, 1, {{"val_acc", 0.2}, {"val_loss", 3.0}}).ok());
    ASSERT_TRUE(store_->finish_trial(id_[1], attempt, TrialState::kPruned, "rung 1, below median",
                                     {}).ok());
  }

  void add(std::int32_t number, ParamMap params) {
    TrialRecord t;
    t.experiment_id = experiment_.id;
    t.number = number;
    t.params = std::move(params);
    t.seed = kBigSeed - number;
    Status s = store_->add_trial(&t);
    ASSERT_TRUE(s.ok()) << s.message();
    id_[number] = t.id;
  }

  std::string run(ExportFormat format, const std::string& name = "mnist") {
    std::ostringstream out;
    Status s = export_experiment(*store_, name, format, out);
    EXPECT_TRUE(s.ok()) << s.message();
    return out.str();
  }

  TempDir dir_;
  std::unique_ptr<ExperimentStore> store_;
  ExperimentRecord experiment_;
  std::map<std::int32_t, std::int64_t> id_;
};

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

TEST(ExportFormatTest, ParsesKnownFormatsOnly) {
  ExportFormat f = ExportFormat::kCsv;
  ASSERT_TRUE(parse_export_format("json", &f).ok());
  EXPECT_EQ(f, ExportFormat::kJson);
  ASSERT_TRUE(parse_export_format("csv", &f).ok());
  EXPECT_EQ(f, ExportFormat::kCsv);
  Status s = parse_export_format("xml", &f);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("xml"), std::string::npos) << s.message();
}

TEST_F(ExporterTest, JsonHasTheContractStructure) {
  const std::string text = run(ExportFormat::kJson);
  json doc;
  ASSERT_NO_THROW(doc = json::parse(text)) << text;
  ASSERT_TRUE(doc.is_object());
  EXPECT_EQ(doc.size(), 4u);
  EXPECT_TRUE(doc.at("events").is_array());
  // Which layout this is, for the tools that read it (exporter.h, kExportFormatVersion).
  EXPECT_EQ(doc.at("format_version"), 2);

  const json& e = doc.at("experiment");
  EXPECT_EQ(e.at("name"), "mnist");
  EXPECT_EQ(e.at("id"), experiment_.id);
  EXPECT_EQ(e.at("metric"), "val_acc");
  EXPECT_EQ(e.at("mode"), "max");
  EXPECT_EQ(e.at("seed").get<std::uint64_t>(), kBigSeed);
  EXPECT_EQ(e.at("state"), "running");
  EXPECT_EQ(e.at("created_at"), experiment_.created_at);
  EXPECT_EQ(e.at("spec_hash"), "deadbeef");
  EXPECT_EQ(e.at("spec"), experiment_.spec_yaml);

  const json& trials = doc.at("trials");
  ASSERT_TRUE(trials.is_array());
  ASSERT_EQ(trials.size(), 3u);
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(trials[i].at("id"), i);
    for (const char* key : {"state", "params", "metrics", "final", "attempt", "seed", "group",
                            "error", "started_at", "finished_at"}) {
      EXPECT_TRUE(trials[i].contains(key)) << "trial " << i << " lacks " << key;
    }
    EXPECT_EQ(trials[i].at("seed").get<std::uint64_t>(), kBigSeed - i);
  }

  const json& t0 = trials[0];
  EXPECT_EQ(t0.at("state"), "completed");
  EXPECT_EQ(t0.at("attempt"), 1);
  EXPECT_EQ(t0.at("group"), "g0");
  EXPECT_FALSE(t0.at("finished_at").get<std::string>().empty());
  // Param kinds survive: 1.0 stays a float, 3 stays an integer.
  EXPECT_TRUE(t0.at("params").at("lr").is_number_float());
  EXPECT_EQ(t0.at("params").at("lr").get<double>(), 1.0);
  EXPECT_TRUE(t0.at("params").at("layers").is_number_integer());
  EXPECT_EQ(t0.at("params").at("layers"), 3);
  EXPECT_EQ(t0.at("params").at("opt"), "adam, amsgrad");
  EXPECT_NE(text.find("\"lr\": 1.0"), std::string::npos);

  const json& acc = t0.at("metrics").at("val_acc");
  ASSERT_EQ(acc.size(), 3u);
  for (int epoch = 1; epoch <= 3; ++epoch) {
    ASSERT_TRUE(acc[epoch - 1].is_array());
    ASSERT_EQ(acc[epoch - 1].size(), 2u);
    EXPECT_EQ(acc[epoch - 1][0], epoch);
  }
  EXPECT_EQ(acc[1][1].get<double>(), 0.1 + 0.2);  // full precision
  const json& loss = t0.at("metrics").at("val_loss");
  ASSERT_EQ(loss.size(), 3u);
  EXPECT_TRUE(loss[2][1].is_null());
  EXPECT_EQ(t0.at("final").at("test_acc").get<double>(), 0.875);

  const json& t1 = trials[1];
  EXPECT_EQ(t1.at("state"), "pruned");
  EXPECT_EQ(t1.at("error"), "rung 1, below median");
  EXPECT_EQ(t1.at("metrics").at("val_acc").size(), 1u);
  EXPECT_TRUE(t1.at("final").is_object());
  EXPECT_TRUE(t1.at("final").empty());

  const json& t2 = trials[2];
  EXPECT_EQ(t2.at("state"), "pending");
  EXPECT_EQ(t2.at("attempt"), 0);
  EXPECT_TRUE(t2.at("metrics").is_object());
  EXPECT_TRUE(t2.at("metrics").empty());
  EXPECT_EQ(t2.at("params").at("lr").get<double>(), 0.5);
}

// Events come in order, each after the reports committed before it, with the trial as its
// number in the experiment (the store id is not the researcher's).
TEST_F(ExporterTest, EventsAreTheStoryInOrderWithTrialNumbers) {
  EventRecord joined;
  joined.experiment_id = experiment_.id;
  joined.kind = "group_joined";
  joined.group = "g0";
  joined.body = R"({"ranks":2})";
  ASSERT_TRUE(store_->append_event(&joined).ok());
  std::int32_t attempt = 0;
  ASSERT_TRUE(store_->start_trial(id_[2], "g0", &attempt).ok());
  ASSERT_TRUE(store_->append_report(id_[2], attempt, 1, {{"val_acc", 0.3}}).ok());
  EventRecord paused;
  paused.experiment_id = experiment_.id;
  paused.kind = "trial_paused";
  paused.trial_id = id_[2];
  paused.body = R"({"epoch":1,"objective":-0.3})";
  ASSERT_TRUE(store_->append_event(&paused).ok());
  EXPECT_GT(paused.seq, joined.seq);
  EXPECT_GT(paused.after_report, joined.after_report) << "a report was committed in between";

  const json events = json::parse(run(ExportFormat::kJson)).at("events");
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0].at("kind"), "group_joined");
  EXPECT_TRUE(events[0].at("trial").is_null());
  EXPECT_EQ(events[0].at("group"), "g0");
  EXPECT_EQ(events[0].at("data").at("ranks"), 2);
  EXPECT_EQ(events[1].at("kind"), "trial_paused");
  EXPECT_EQ(events[1].at("trial"), 2) << "the number, not the store id " << id_[2];
  EXPECT_EQ(events[1].at("data").at("objective"), -0.3);
  EXPECT_EQ(events[1].at("seq"), paused.seq);

  std::vector<EventRecord> later;
  ASSERT_TRUE(store_->list_events(experiment_.id, joined.seq, &later).ok());
  ASSERT_EQ(later.size(), 1u) << "a reader that has seen the first gets only the second";
  EXPECT_EQ(later[0].kind, "trial_paused");
}

TEST_F(ExporterTest, CsvHeaderRowsAndQuoting) {
  const std::string text = run(ExportFormat::kCsv);
  const auto lines = lines_of(text);
  ASSERT_FALSE(lines.empty());
  EXPECT_EQ(lines[0], "trial,state,layers,lr,opt,epoch,val_acc,val_loss,final_test_acc");
  // 3 epochs of trial 0, 1 of trial 1, one empty-epoch row for trial 2.
  ASSERT_EQ(lines.size(), 1u + 3 + 1 + 1) << text;
  EXPECT_EQ(lines[1], "0,completed,3,1,\"adam, amsgrad\",1,0.5,2,0.875");
  EXPECT_EQ(lines[2], "0,completed,3,1,\"adam, amsgrad\",2,0.30000000000000004,1,0.875");
  EXPECT_EQ(lines[3], "0,completed,3,1,\"adam, amsgrad\",3,0.9,nan,0.875");
  EXPECT_EQ(lines[4], "1,pruned,4,0.001,\"say \"\"hi\"\"\",1,0.2,3,");
  EXPECT_EQ(lines[5], "2,pending,2,0.5,sgd,,,,");
}

TEST_F(ExporterTest, UnknownExperimentListsExisting) {
  std::ostringstream out;
  Status s = export_experiment(*store_, "cifar", ExportFormat::kJson, out);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("cifar"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("mnist"), std::string::npos) << s.message();
  EXPECT_TRUE(out.str().empty());
}

TEST_F(ExporterTest, ExportsOnlyTheLatestAttempt) {
  TrialRecord t;
  t.experiment_id = experiment_.id;
  t.number = 3;
  ASSERT_TRUE(store_->add_trial(&t).ok());
  std::int32_t attempt = 0;
  ASSERT_TRUE(store_->start_trial(t.id, "g0", &attempt).ok());
  ASSERT_TRUE(store_->append_report(t.id, attempt, 1, {{"val_acc", 0.11}}).ok());
  ASSERT_TRUE(store_->append_report(t.id, attempt, 2, {{"val_acc", 0.12}}).ok());
  ASSERT_TRUE(store_->requeue_trial(t.id, "lost").ok());
  ASSERT_TRUE(store_->start_trial(t.id, "g1", &attempt).ok());
  ASSERT_TRUE(store_->append_report(t.id, attempt, 1, {{"val_acc", 0.21}}).ok());

  const json doc = json::parse(run(ExportFormat::kJson));
  const json& t3 = doc.at("trials").at(3);
  EXPECT_EQ(t3.at("attempt"), 2);
  EXPECT_EQ(t3.at("state"), "running");
  EXPECT_EQ(t3.at("error"), "lost");
  EXPECT_EQ(t3.at("metrics").at("val_acc"), json::parse("[[1, 0.21]]"));
}

}  // namespace
}  // namespace trellis::coordinator
