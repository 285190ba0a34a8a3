// The dashboard's routes over a real store file: what the page reads, and how it learns that
// another connection wrote.

#include "coordinator/dashboard/dashboard_api.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "coordinator/temp_store.h"

namespace trellis::dashboard {
namespace {

using coordinator::ExperimentRecord;
using coordinator::ExperimentStore;
using coordinator::TrialRecord;
using coordinator::TrialState;
using coordinator::testing::TempDir;
using nlohmann::json;

constexpr const char* kSpec =
    "name: dash\n"
    "dataset: {name: d, format: csv, path: /nonexistent}\n"
    "metric: {name: val_acc, mode: max}\n"
    "search:\n  trials: 4\n  space:\n"
    "    lr: {type: log_float, low: 1.0e-4, high: 1.0}\n"
    "    activation: {type: categorical, values: [relu, tanh]}\n";

class DashboardApiTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(ExperimentStore::Open(dir_.file("store.db"), false, &writer_).ok());
    experiment_.name = "dash";
    experiment_.spec_yaml = kSpec;
    experiment_.metric = "val_acc";
    experiment_.mode = "max";
    experiment_.seed = 3;
    ASSERT_TRUE(writer_->create_experiment(&experiment_).ok());
    // Trials 0..2 completed with three epochs each, trial 3 still running after one.
    for (int n = 0; n < 4; ++n) {
      TrialRecord t;
      t.experiment_id = experiment_.id;
      t.number = n;
      t.params = {{"lr", 0.001 * (n + 1)}, {"activation", std::string(n % 2 ? "tanh" : "relu")}};
      ASSERT_TRUE(writer_->add_trial(&t).ok());
      std::int32_t attempt = 0;
      ASSERT_TRUE(writer_->start_trial(t.id, "g", &attempt).ok());
      const int epochs = n == 3 ? 1 : 3;
      for (int e = 1; e <= epochs; ++e)
        ASSERT_TRUE(writer_->append_report(t.id, attempt, e,
                                           {{"val_acc", 0.5 + 0.1 * n + 0.01 * e},
                                            {"val_loss", 1.0 / e}})
                        .ok());
      if (n < 3) {
        ASSERT_TRUE(writer_->finish_trial(t.id, attempt, TrialState::kCompleted, "",
                                          {{"val_acc", 0.5 + 0.1 * n + 0.03}})
                        .ok());
      }
      ids_.push_back(t.id);
    }
    ASSERT_TRUE(ExperimentStore::Open(dir_.file("store.db"), true, &reader_).ok());
    api_ = std::make_unique<DashboardApi>(reader_.get(), dir_.file("store.db.models"));
  }

  json get(const std::string& path, const Query& query, int expect_status = 200) {
    const ApiResponse r = api_->get(path, query);
    EXPECT_EQ(r.http_status, expect_status) << path << ": " << r.body;
    json body = json::parse(r.body, nullptr, false);
    EXPECT_FALSE(body.is_discarded()) << r.body;
    return body;
  }

  TempDir dir_;
  std::unique_ptr<ExperimentStore> writer_, reader_;
  std::unique_ptr<DashboardApi> api_;
  ExperimentRecord experiment_;
  std::vector<std::int64_t> ids_;
};

TEST_F(DashboardApiTest, TheTrialsTableIsColumnarWithEachTrialsLatestValue) {
  const json t = get("/api/trials", {{"experiment", "dash"}});
  EXPECT_EQ(t["count"], 4);
  EXPECT_EQ(t["experiment"]["metric"], "val_acc");
  EXPECT_EQ(t["params"], json({"activation", "lr"}));
  EXPECT_EQ(t["metrics"], json({"val_acc", "val_loss"}));
  const json& c = t["columns"];
  EXPECT_EQ(c["number"], json({0, 1, 2, 3}));
  EXPECT_EQ(c["epochs"], json({3, 3, 3, 1}));
  EXPECT_EQ(c["params.activation"], json({"relu", "tanh", "relu", "tanh"}));
  EXPECT_DOUBLE_EQ(c["params.lr"][2].get<double>(), 0.003);
  // Completed: the final value (0.5 + 0.1 n + 0.03); running: the last reported one.
  EXPECT_DOUBLE_EQ(c["final.val_acc"][1].get<double>(), 0.63);
  EXPECT_DOUBLE_EQ(c["final.val_acc"][3].get<double>(), 0.81);
  // val_loss is in no trial's final metrics: the last epoch's, 1 / epochs.
  EXPECT_DOUBLE_EQ(c["final.val_loss"][0].get<double>(), 1.0 / 3);
  EXPECT_DOUBLE_EQ(c["final.val_loss"][3].get<double>(), 1.0);
  std::vector<std::string> states;
  for (const json& i : c["state"]) states.push_back(t["states"][i.get<int>()]);
  EXPECT_EQ(states, (std::vector<std::string>{"completed", "completed", "completed", "running"}));
}

TEST_F(DashboardApiTest, CurvesAreEachTrialsEpochsAndValues) {
  const json c = get("/api/curves", {{"experiment", "dash"}, {"metric", "val_loss"}, {"trials", "2,3"}});
  EXPECT_EQ(c["series"]["2"][0], json({1, 2, 3}));
  EXPECT_DOUBLE_EQ(c["series"]["2"][1][1].get<double>(), 0.5);
  EXPECT_EQ(c["series"]["3"][0], json({1}));
  EXPECT_FALSE(c["series"].contains("0"));
}

TEST_F(DashboardApiTest, OneTrialIsTheExportsDocumentWithItsModel) {
  const json t = get("/api/trial", {{"experiment", "dash"}, {"trial", "1"}});
  EXPECT_EQ(t["id"], 1);
  EXPECT_EQ(t["state"], "completed");
  EXPECT_EQ(t["metrics"]["val_acc"].size(), 3u);
  EXPECT_TRUE(t["model"].is_null()) << "no shelf: nothing kept";
}

TEST_F(DashboardApiTest, OneTrialsLineageNamesItsDonorThoughOnlyItWasAsked) {
  ASSERT_TRUE(writer_->finish_trial(ids_[3], 1, TrialState::kPaused, "paused after epoch 1",
                                    {{"val_acc", 0.81}})
                  .ok());
  coordinator::LineageRecord exploit;
  exploit.trial_id = ids_[3];
  exploit.epoch = 1;
  exploit.donor_id = ids_[2];
  exploit.donor_epoch = 3;
  exploit.params_before = {{"lr", 0.004}};
  exploit.params_after = {{"lr", 0.005}};
  exploit.reason = "bottom quantile";
  ASSERT_TRUE(writer_->exploit_trial(exploit, 2, "/ckpt/trial-2.ckpt").ok());
  const json t = get("/api/trial", {{"experiment", "dash"}, {"trial", "3"}});
  ASSERT_EQ(t["lineage"].size(), 1u) << t.dump();
  EXPECT_EQ(t["lineage"][0]["donor"], 2);
  EXPECT_EQ(t["lineage"][0]["donor_epoch"], 3);
  EXPECT_EQ(t["lineage"][0]["reason"], "bottom quantile");
  EXPECT_TRUE(get("/api/trial", {{"experiment", "dash"}, {"trial", "2"}})["lineage"].empty())
      << "the donor was exploited by another, not itself";
}

TEST_F(DashboardApiTest, BadRequestsSayWhatIsWrong) {
  EXPECT_NE(get("/api/trials", {{"experiment", "nope"}}, 404)["error"].get<std::string>().find("nope"),
            std::string::npos);
  get("/api/trials", {}, 400);
  get("/api/nothing", {}, 404);
  EXPECT_NE(get("/api/curves", {{"experiment", "dash"}, {"metric", "val_acc"}, {"trials", "1,x"}}, 400)["error"]
                .get<std::string>()
                .find("'x'"),
            std::string::npos);
  EXPECT_EQ(get("/api/trial", {{"experiment", "dash"}, {"trial", "9"}}, 404)["error"],
            "experiment 'dash' has no trial 9 (its trials are numbered 0 to 3)");
}

TEST_F(DashboardApiTest, AWriteByAnotherConnectionChangesTheVersionAndTheAnswers) {
  const json v1 = get("/api/changes", {});
  EXPECT_EQ(get("/api/changes", {})["version"], v1["version"]) << "nothing written, no change";
  EXPECT_EQ(get("/api/trials", {{"experiment", "dash"}})["columns"]["epochs"][3], 1);
  ASSERT_TRUE(writer_->append_report(ids_[3], 1, 2, {{"val_acc", 0.9}}).ok());
  EXPECT_NE(get("/api/changes", {})["version"], v1["version"]);
  EXPECT_EQ(get("/api/trials", {{"experiment", "dash"}})["columns"]["epochs"][3], 2)
      << "the cached answer was dropped";
}

TEST_F(DashboardApiTest, TheStoryAndTheImportanceAnswer) {
  const json story = get("/api/story", {{"experiment", "dash"}});
  EXPECT_TRUE(story["rungs"].is_array());
  EXPECT_TRUE(story["exploits"].empty());
  const json importance = get("/api/importance", {{"experiment", "dash"}});
  EXPECT_EQ(importance["trials_used"], 3) << "completed trials only: " << importance.dump();
  ASSERT_EQ(importance["importances"].size(), 2u);
  double total = 0;
  for (const json& i : importance["importances"]) total += i["importance"].get<double>();
  EXPECT_NEAR(total, 1.0, 1e-9);
}

TEST_F(DashboardApiTest, TheExperimentsAreListed) {
  const json e = get("/api/experiments", {});
  ASSERT_EQ(e["experiments"].size(), 1u);
  EXPECT_EQ(e["experiments"][0]["name"], "dash");
}

}  // namespace
}  // namespace trellis::dashboard
