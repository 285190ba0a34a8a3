#include <gtest/gtest.h>
#include <sqlite3.h>
#include <nlohmann/json.hpp>

#include <cmath>
#include <cstdint>
#include <fstream>
#include <limits>
#include <map>
#include <utility>
#include <vector>

#include "coordinator/experiment_store.h"
#include "tests/coordinator/temp_store.h"

namespace trellis::coordinator {
namespace {

using testing::TempDir;

constexpr std::uint64_t kBigSeed = 0xF00DFACECAFEBEEFull;  // >= 2^63

std::unique_ptr<ExperimentStore> open_store(const std::string& path, bool read_only = false) {
  std::unique_ptr<ExperimentStore> store;
  Status s = ExperimentStore::Open(path, read_only, &store);
  EXPECT_TRUE(s.ok()) << s.message();
  return store;
}

ExperimentRecord make_experiment(ExperimentStore& store, const std::string& name) {
  ExperimentRecord e;
  e.name = name;
  e.spec_yaml = "name: " + name + "\nmetric: val_acc\n";
  e.spec_hash = "abc123";
  e.metric = "val_acc";
  e.mode = "max";
  e.seed = kBigSeed;
  Status s = store.create_experiment(&e);
  EXPECT_TRUE(s.ok()) << s.message();
  return e;
}

TrialRecord make_trial(ExperimentStore& store, std::int64_t experiment_id, std::int32_t number,
                       ParamMap params = {}) {
  TrialRecord t;
  t.experiment_id = experiment_id;
  t.number = number;
  t.params = std::move(params);
  t.seed = 1000 + number;
  Status s = store.add_trial(&t);
  EXPECT_TRUE(s.ok()) << s.message();
  return t;
}

TEST(ExperimentStoreTest, CreatesAndFindsExperiments) {
  TempDir dir;
  auto store = open_store(dir.file("store.db"));
  ASSERT_TRUE(store);

  std::optional<ExperimentRecord> found;
  ASSERT_TRUE(store->latest_experiment(&found).ok());
  EXPECT_FALSE(found.has_value());

  ExperimentRecord a = make_experiment(*store, "alpha");
  ExperimentRecord b = make_experiment(*store, "beta");
  EXPECT_GT(a.id, 0);
  EXPECT_NE(a.id, b.id);
  // ISO 8601 UTC, e.g. 2024-05-01T12:34:56.789Z
  ASSERT_EQ(a.created_at.size(), 24u) << a.created_at;
  EXPECT_EQ(a.created_at[10], 'T');
  EXPECT_EQ(a.created_at.back(), 'Z');

  ASSERT_TRUE(store->find_experiment("alpha", &found).ok());
  ASSERT_TRUE(found.has_value());
  EXPECT_EQ(found->id, a.id);
  EXPECT_EQ(found->spec_yaml, a.spec_yaml);
  EXPECT_EQ(found->metric, "val_acc");
  EXPECT_EQ(found->mode, "max");
  EXPECT_EQ(found->seed, kBigSeed);
  EXPECT_EQ(found->state, "running");

  ASSERT_TRUE(store->find_experiment("gamma", &found).ok());
  EXPECT_FALSE(found.has_value());

  ASSERT_TRUE(store->latest_experiment(&found).ok());
  ASSERT_TRUE(found.has_value());
  EXPECT_EQ(found->name, "beta");

  std::vector<ExperimentRecord> all;
  ASSERT_TRUE(store->list_experiments(&all).ok());
  ASSERT_EQ(all.size(), 2u);
  EXPECT_EQ(all[0].name, "alpha");
  EXPECT_EQ(all[1].name, "beta");

  ASSERT_TRUE(store->set_experiment_state(a.id, "completed").ok());
  ASSERT_TRUE(store->find_experiment("alpha", &found).ok());
  EXPECT_EQ(found->state, "completed");
  EXPECT_FALSE(store->set_experiment_state(9999, "completed").ok());
}

TEST(ExperimentStoreTest, RefusesDuplicateExperimentName) {
  TempDir dir;
  auto store = open_store(dir.file("store.db"));
  ASSERT_TRUE(store);
  make_experiment(*store, "alpha");
  ExperimentRecord again;
  again.name = "alpha";
  again.metric = "val_loss";
  again.mode = "min";
  Status s = store->create_experiment(&again);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("alpha"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("already exists"), std::string::npos) << s.message();

  std::vector<ExperimentRecord> all;
  ASSERT_TRUE(store->list_experiments(&all).ok());
  EXPECT_EQ(all.size(), 1u);
}

TEST(ExperimentStoreTest, RefusesInvalidModeAndOrphanOrDuplicateTrials) {
  TempDir dir;
  auto store = open_store(dir.file("store.db"));
  ASSERT_TRUE(store);
  ExperimentRecord bad;
  bad.name = "bad";
  bad.mode = "maximize";
  EXPECT_FALSE(store->create_experiment(&bad).ok());

  ExperimentRecord e = make_experiment(*store, "alpha");
  make_trial(*store, e.id, 0);
  TrialRecord dup;
  dup.experiment_id = e.id;
  dup.number = 0;
  Status s = store->add_trial(&dup);
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("already exists"), std::string::npos) << s.message();

  TrialRecord orphan;
  orphan.experiment_id = e.id + 100;
  s = store->add_trial(&orphan);
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("no such experiment"), std::string::npos) << s.message();
}

TEST(ExperimentStoreTest, TrialLifecycleAndIllegalTransitions) {
  TempDir dir;
  auto store = open_store(dir.file("store.db"));
  ASSERT_TRUE(store);
  ExperimentRecord e = make_experiment(*store, "alpha");
  TrialRecord t = make_trial(*store, e.id, 0, {{"lr", 0.01}});
  EXPECT_GT(t.id, 0);

  TrialRecord got;
  ASSERT_TRUE(store->get_trial(t.id, &got).ok());
  EXPECT_EQ(got.state, TrialState::kPending);
  EXPECT_EQ(got.attempt, 0);

  // Cannot finish or requeue what is not running.
  EXPECT_FALSE(store->finish_trial(t.id, 0, TrialState::kCompleted, "", {}).ok());
  EXPECT_FALSE(store->requeue_trial(t.id, "lost").ok());
  // Cannot report for an attempt that never started.
  EXPECT_FALSE(store->append_report(t.id, 1, 1, {{"val_acc", 0.5}}).ok());

  std::int32_t attempt = 0;
  ASSERT_TRUE(store->start_trial(t.id, "group-0", &attempt).ok());
  EXPECT_EQ(attempt, 1);
  ASSERT_TRUE(store->get_trial(t.id, &got).ok());
  EXPECT_EQ(got.state, TrialState::kRunning);
  EXPECT_EQ(got.attempt, 1);
  EXPECT_EQ(got.group, "group-0");
  EXPECT_FALSE(got.started_at.empty());
  EXPECT_TRUE(got.finished_at.empty());

  // Already running: a second start is refused and the attempt does not move.
  std::int32_t second = 0;
  Status s = store->start_trial(t.id, "group-1", &second);
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("not pending"), std::string::npos) << s.message();
  ASSERT_TRUE(store->get_trial(t.id, &got).ok());
  EXPECT_EQ(got.attempt, 1);
  EXPECT_EQ(got.group, "group-0");

  // A stale attempt cannot finish the trial; a non-terminal state is no finish.
  EXPECT_FALSE(store->finish_trial(t.id, 2, TrialState::kCompleted, "", {}).ok());
  EXPECT_FALSE(store->finish_trial(t.id, 1, TrialState::kPending, "", {}).ok());
  EXPECT_FALSE(store->finish_trial(t.id, 1, TrialState::kRunning, "", {}).ok());

  ASSERT_TRUE(
      store->finish_trial(t.id, 1, TrialState::kCompleted, "", {{"test_acc", 0.93}}).ok());
  ASSERT_TRUE(store->get_trial(t.id, &got).ok());
  EXPECT_EQ(got.state, TrialState::kCompleted);
  EXPECT_FALSE(got.finished_at.empty());
  ASSERT_EQ(got.final_metrics.count("test_acc"), 1u);
  EXPECT_DOUBLE_EQ(got.final_metrics.at("test_acc"), 0.93);

  // Terminal is terminal.
  EXPECT_FALSE(store->start_trial(t.id, "group-0", &second).ok());
  EXPECT_FALSE(store->requeue_trial(t.id, "lost").ok());
  EXPECT_FALSE(store->finish_trial(t.id, 1, TrialState::kFailed, "boom", {}).ok());
  ASSERT_TRUE(store->get_trial(t.id, &got).ok());
  EXPECT_EQ(got.state, TrialState::kCompleted);
  EXPECT_TRUE(got.error.empty());

  EXPECT_FALSE(store->get_trial(t.id + 100, &got).ok());
  EXPECT_FALSE(store->start_trial(t.id + 100, "g", &second).ok());
}

TEST(ExperimentStoreTest, PrunedAndFailedKeepTheirReason) {
  TempDir dir;
  auto store = open_store(dir.file("store.db"));
  ASSERT_TRUE(store);
  ExperimentRecord e = make_experiment(*store, "alpha");
  TrialRecord a = make_trial(*store, e.id, 0);
  TrialRecord b = make_trial(*store, e.id, 1);
  std::int32_t attempt = 0;
  ASSERT_TRUE(store->start_trial(a.id, "g0", &attempt).ok());
  ASSERT_TRUE(store->start_trial(b.id, "g1", &attempt).ok());
  ASSERT_TRUE(store->finish_trial(a.id, 1, TrialState::kPruned, "asha rung 1", {}).ok());
  ASSERT_TRUE(store->finish_trial(b.id, 1, TrialState::kFailed, "NaN loss", {}).ok());

  std::vector<TrialRecord> trials;
  ASSERT_TRUE(store->list_trials(e.id, &trials).ok());
  ASSERT_EQ(trials.size(), 2u);
  EXPECT_EQ(trials[0].state, TrialState::kPruned);
  EXPECT_EQ(trials[0].error, "asha rung 1");
  EXPECT_EQ(trials[1].state, TrialState::kFailed);
  EXPECT_EQ(trials[1].error, "NaN loss");
}

// A worker's provenance (its Done) joins the attempt's; the coordinator's keys stay as they are,
// and what is not a JSON object, or names no attempt, is refused and changes nothing.
TEST(ExperimentStoreTest, AWorkersProvenanceJoinsTheAttemptsWithoutOverwritingIt) {
  TempDir dir;
  auto store = open_store(dir.file("store.db"));
  ASSERT_TRUE(store);
  ExperimentRecord e = make_experiment(*store, "alpha");
  TrialRecord a = make_trial(*store, e.id, 0);
  StartedAttempt started;
  ASSERT_TRUE(store->start_trial(a.id, "g0", R"({"group":"g0","key":"K","split":{"seed":3}})",
                                 &started).ok());
  const auto provenance = [&] {
    std::vector<TrialRecord> trials;
    EXPECT_TRUE(store->list_trials(e.id, &trials).ok());
    return nlohmann::json::parse(trials.at(0).provenance);
  };
  Status s = store->merge_provenance(
      a.id, 1, R"({"key":"forged","dataset_hash":"crc32:00000001","blas":{"threads":2}})");
  ASSERT_TRUE(s.ok()) << s.message();
  const nlohmann::json merged = provenance();
  EXPECT_EQ(merged["key"], "K") << "the coordinator's key, not the worker's";
  EXPECT_EQ(merged["group"], "g0");
  EXPECT_EQ(merged["split"]["seed"], 3);
  EXPECT_EQ(merged["dataset_hash"], "crc32:00000001");
  EXPECT_EQ(merged["blas"]["threads"], 2);

  EXPECT_FALSE(store->merge_provenance(a.id, 1, "[1,2]").ok());
  EXPECT_FALSE(store->merge_provenance(a.id, 1, "{not json").ok());
  s = store->merge_provenance(a.id, 2, R"({"x":1})");
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("attempt 2"), std::string::npos) << s.message();
  EXPECT_EQ(provenance(), merged);
}

TEST(ExperimentStoreTest, DuplicateReportIsIgnored) {
  TempDir dir;
  auto store = open_store(dir.file("store.db"));
  ASSERT_TRUE(store);
  ExperimentRecord e = make_experiment(*store, "alpha");
  TrialRecord t = make_trial(*store, e.id, 0);
  std::int32_t attempt = 0;
  ASSERT_TRUE(store->start_trial(t.id, "g", &attempt).ok());

  ASSERT_TRUE(store->append_report(t.id, attempt, 1, {{"val_acc", 0.5}, {"val_loss", 1.5}}).ok());
  // The retry carries a different value: the first one must stay, and only once.
  ASSERT_TRUE(store->append_report(t.id, attempt, 1, {{"val_acc", 0.9}, {"val_loss", 0.1}}).ok());
  ASSERT_TRUE(store->append_report(t.id, attempt, 2, {{"val_acc", 0.6}}).ok());

  MetricSeries series;
  ASSERT_TRUE(store->metric_series(t.id, &series).ok());
  ASSERT_EQ(series["val_acc"].size(), 2u);
  EXPECT_EQ(series["val_acc"][0].first, 1);
  EXPECT_DOUBLE_EQ(series["val_acc"][0].second, 0.5);
  EXPECT_EQ(series["val_acc"][1].first, 2);
  EXPECT_DOUBLE_EQ(series["val_acc"][1].second, 0.6);
  ASSERT_EQ(series["val_loss"].size(), 1u);
  EXPECT_DOUBLE_EQ(series["val_loss"][0].second, 1.5);
}

TEST(ExperimentStoreTest, SeriesAreInEpochOrderAndKeepNonFinite) {
  TempDir dir;
  auto store = open_store(dir.file("store.db"));
  ASSERT_TRUE(store);
  ExperimentRecord e = make_experiment(*store, "alpha");
  TrialRecord t = make_trial(*store, e.id, 0);
  std::int32_t attempt = 0;
  ASSERT_TRUE(store->start_trial(t.id, "g", &attempt).ok());
  // Out of order arrival, and numbers that sort differently as text (10 < 2).
  for (int epoch : {10, 2, 1, 3}) {
    ASSERT_TRUE(store->append_report(t.id, attempt, epoch, {{"x", epoch * 1.0}}).ok());
  }
  ASSERT_TRUE(store->append_report(t.id, attempt, 11,
                                   {{"x", std::numeric_limits<double>::quiet_NaN()},
                                    {"y", std::numeric_limits<double>::infinity()}})
                  .ok());
  MetricSeries series;
  ASSERT_TRUE(store->metric_series(t.id, &series).ok());
  ASSERT_EQ(series["x"].size(), 5u);
  std::vector<std::int32_t> epochs;
  for (const auto& [epoch, value] : series["x"]) epochs.push_back(epoch);
  EXPECT_EQ(epochs, (std::vector<std::int32_t>{1, 2, 3, 10, 11}));
  EXPECT_TRUE(std::isnan(series["x"][4].second));
  ASSERT_EQ(series["y"].size(), 1u);
  EXPECT_TRUE(std::isinf(series["y"][0].second));
}

TEST(ExperimentStoreTest, OlderAttemptReportsAreHiddenAfterRequeue) {
  TempDir dir;
  auto store = open_store(dir.file("store.db"));
  ASSERT_TRUE(store);
  ExperimentRecord e = make_experiment(*store, "alpha");
  TrialRecord t = make_trial(*store, e.id, 0);
  TrialRecord other = make_trial(*store, e.id, 1);
  std::int32_t attempt = 0;
  ASSERT_TRUE(store->start_trial(t.id, "g0", &attempt).ok());
  ASSERT_EQ(attempt, 1);
  ASSERT_TRUE(store->append_report(t.id, 1, 1, {{"val_acc", 0.1}}).ok());
  ASSERT_TRUE(store->append_report(t.id, 1, 2, {{"val_acc", 0.2}}).ok());

  ASSERT_TRUE(store->requeue_trial(t.id, "group g0 lost").ok());
  TrialRecord got;
  ASSERT_TRUE(store->get_trial(t.id, &got).ok());
  EXPECT_EQ(got.state, TrialState::kPending);
  EXPECT_EQ(got.error, "group g0 lost");
  EXPECT_EQ(got.attempt, 1);

  ASSERT_TRUE(store->start_trial(t.id, "g1", &attempt).ok());
  ASSERT_EQ(attempt, 2);
  ASSERT_TRUE(store->append_report(t.id, 2, 1, {{"val_acc", 0.7}}).ok());
  // A late report from the lost attempt arrives after the restart.
  ASSERT_TRUE(store->append_report(t.id, 1, 3, {{"val_acc", 0.3}}).ok());

  MetricSeries series;
  ASSERT_TRUE(store->metric_series(t.id, &series).ok());
  ASSERT_EQ(series["val_acc"].size(), 1u);
  EXPECT_EQ(series["val_acc"][0].first, 1);
  EXPECT_DOUBLE_EQ(series["val_acc"][0].second, 0.7);

  // The old attempt can no longer finish the trial.
  EXPECT_FALSE(store->finish_trial(t.id, 1, TrialState::kCompleted, "", {}).ok());

  ASSERT_TRUE(store->start_trial(other.id, "g2", &attempt).ok());
  ASSERT_TRUE(store->append_report(other.id, 1, 1, {{"val_acc", 0.4}}).ok());
  std::map<std::int64_t, MetricSeries> all;
  ASSERT_TRUE(store->experiment_metrics(e.id, &all).ok());
  ASSERT_EQ(all.size(), 2u);
  ASSERT_EQ(all[t.id]["val_acc"].size(), 1u);
  EXPECT_DOUBLE_EQ(all[t.id]["val_acc"][0].second, 0.7);
  ASSERT_EQ(all[other.id]["val_acc"].size(), 1u);
  EXPECT_DOUBLE_EQ(all[other.id]["val_acc"][0].second, 0.4);
}

// A requeued trial resumes after its last checkpointed epoch; its series then joins the epochs
// of the attempts it continues with its own, each epoch once, even through nested resumes.
TEST(ExperimentStoreTest, ResumedAttemptsFormOneContiguousSeries) {
  TempDir dir;
  auto store = open_store(dir.file("store.db"));
  ASSERT_TRUE(store);
  ExperimentRecord e = make_experiment(*store, "alpha");
  TrialRecord t = make_trial(*store, e.id, 0);
  StartedAttempt started;
  ASSERT_TRUE(store->start_trial(t.id, "g0", R"({"host":"n1"})", &started).ok());
  EXPECT_EQ(started.attempt, 1);
  EXPECT_EQ(started.resume_epoch, 0);
  // Attempt 1: epochs 1-2 checkpointed, epoch 3 reported but its checkpoint never landed.
  ASSERT_TRUE(store->append_report(t.id, 1, 1, {{"val_acc", 0.1}}, true).ok());
  ASSERT_TRUE(store->append_report(t.id, 1, 2, {{"val_acc", 0.2}}, true).ok());
  ASSERT_TRUE(store->append_report(t.id, 1, 3, {{"val_acc", 0.3}}, false).ok());
  ASSERT_TRUE(store->requeue_trial(t.id, "lost").ok());

  ASSERT_TRUE(store->start_trial(t.id, "g1", R"({"host":"n2"})", &started).ok());
  EXPECT_EQ(started.attempt, 2);
  EXPECT_EQ(started.resume_epoch, 2);
  ASSERT_TRUE(store->append_report(t.id, 2, 3, {{"val_acc", 0.33}}, true).ok());
  ASSERT_TRUE(store->append_report(t.id, 2, 4, {{"val_acc", 0.44}}, true).ok());
  ASSERT_TRUE(store->append_report(t.id, 2, 5, {{"val_acc", 0.55}}, false).ok());
  // A stale checkpoint flag from attempt 1 must not move the resume point.
  ASSERT_TRUE(store->append_report(t.id, 1, 6, {{"val_acc", 0.6}}, true).ok());
  ASSERT_TRUE(store->requeue_trial(t.id, "lost again").ok());

  ASSERT_TRUE(store->start_trial(t.id, "g2", R"({"host":"n3"})", &started).ok());
  EXPECT_EQ(started.resume_epoch, 4);
  ASSERT_TRUE(store->append_report(t.id, 3, 5, {{"val_acc", 0.555}}, true).ok());

  MetricSeries series;
  ASSERT_TRUE(store->metric_series(t.id, &series).ok());
  const std::vector<std::pair<std::int32_t, double>> want = {
      {1, 0.1}, {2, 0.2}, {3, 0.33}, {4, 0.44}, {5, 0.555}};
  EXPECT_EQ(series["val_acc"], want);
  std::map<std::int64_t, MetricSeries> all;
  ASSERT_TRUE(store->experiment_metrics(e.id, &all).ok());
  EXPECT_EQ(all[t.id]["val_acc"], want);

  TrialRecord got;
  ASSERT_TRUE(store->get_trial(t.id, &got).ok());
  EXPECT_EQ(got.checkpoint_epoch, 5);
  EXPECT_EQ(got.provenance, R"({"host":"n3"})");
}

// The resume point only moves forward: a duplicate of an older checkpointed report (its Ack
// was lost, so the agent sent it again) or an older epoch arriving after a newer one names a
// checkpoint the worker has already deleted, and resuming from it would fail the trial.
// An experiment with trials of every kind for the series readers: completed; never started;
// resumed after a lost attempt; started without reports; reports without metrics; and two
// trials added out of number order, so ids and numbers disagree. Returns the trials' ids in
// number order, and adds a second experiment whose series must not show up.
std::vector<std::int64_t> add_series_trials(ExperimentStore& store, std::int64_t experiment_id) {
  std::vector<std::int64_t> ids(7);
  std::int32_t attempt = 0;
  const TrialRecord completed = make_trial(store, experiment_id, 0);
  ids[0] = completed.id;
  EXPECT_TRUE(store.start_trial(completed.id, "g0", &attempt).ok());
  EXPECT_TRUE(store.append_report(completed.id, 1, 2, {{"val_acc", 0.2}, {"loss", 2.0}}).ok());
  EXPECT_TRUE(store.append_report(completed.id, 1, 1, {{"val_acc", 0.1}, {"loss", 3.0}}).ok());
  EXPECT_TRUE(store.finish_trial(completed.id, 1, TrialState::kCompleted, "", {}).ok());

  ids[1] = make_trial(store, experiment_id, 1).id;  // never started

  const TrialRecord resumed = make_trial(store, experiment_id, 2);
  ids[2] = resumed.id;
  StartedAttempt started;
  EXPECT_TRUE(store.start_trial(resumed.id, "g0", "{}", &started).ok());
  EXPECT_TRUE(store.append_report(resumed.id, 1, 1, {{"val_acc", 0.5}}, true).ok());
  EXPECT_TRUE(store.append_report(resumed.id, 1, 2, {{"val_acc", 0.6}}, false).ok());
  EXPECT_TRUE(store.requeue_trial(resumed.id, "lost", Requeue::kLost).ok());
  EXPECT_TRUE(store.start_trial(resumed.id, "g1", "{}", &started).ok());
  EXPECT_EQ(started.resume_epoch, 1);
  EXPECT_TRUE(store.append_report(resumed.id, 2, 2, {{"val_acc", 0.66}}, true).ok());
  EXPECT_TRUE(store.append_report(resumed.id, 2, 3, {{"val_acc", 0.77}}, true).ok());

  const TrialRecord silent = make_trial(store, experiment_id, 3);  // running, nothing reported
  ids[3] = silent.id;
  EXPECT_TRUE(store.start_trial(silent.id, "g2", &attempt).ok());

  const TrialRecord empty = make_trial(store, experiment_id, 4);  // a report with no metrics
  ids[4] = empty.id;
  EXPECT_TRUE(store.start_trial(empty.id, "g3", &attempt).ok());
  EXPECT_TRUE(store.append_report(empty.id, 1, 1, {}).ok());

  // Number 6 before number 5: the later number has the smaller id.
  const TrialRecord six = make_trial(store, experiment_id, 6);
  const TrialRecord five = make_trial(store, experiment_id, 5);
  ids[5] = five.id;
  ids[6] = six.id;
  EXPECT_LT(six.id, five.id);
  EXPECT_TRUE(store.start_trial(six.id, "g4", &attempt).ok());
  EXPECT_TRUE(store.append_report(six.id, 1, 1, {{"val_acc", 0.06}}).ok());
  EXPECT_TRUE(store.start_trial(five.id, "g4", &attempt).ok());
  EXPECT_TRUE(store.append_report(five.id, 1, 1, {{"val_acc", 0.05}}).ok());

  const ExperimentRecord other = make_experiment(store, "other");
  const TrialRecord stranger = make_trial(store, other.id, 0);
  EXPECT_TRUE(store.start_trial(stranger.id, "g5", &attempt).ok());
  EXPECT_TRUE(store.append_report(stranger.id, 1, 1, {{"val_acc", 0.9}}).ok());
  return ids;
}

// The streaming read is what experiment_metrics collects, one trial at a time in number order.
// Trials without a metric in their lineage (never started, started without reports, reports
// without metrics) are skipped, not visited with an empty series.
TEST(ExperimentStoreTest, ForEachSeriesVisitsWhatExperimentMetricsHoldsInNumberOrder) {
  TempDir dir;
  auto store = open_store(dir.file("store.db"));
  ASSERT_TRUE(store);
  const ExperimentRecord e = make_experiment(*store, "alpha");
  const std::vector<std::int64_t> ids = add_series_trials(*store, e.id);
  ASSERT_EQ(ids.size(), 7u);

  std::vector<std::pair<std::int64_t, MetricSeries>> visited;
  Status s = store->for_each_series(e.id, [&](std::int64_t trial_id, MetricSeries&& series) {
    visited.emplace_back(trial_id, std::move(series));
    return Status::Ok();
  });
  ASSERT_TRUE(s.ok()) << s.message();

  std::vector<std::int64_t> order;
  for (const auto& [id, series] : visited) order.push_back(id);
  EXPECT_EQ(order, (std::vector<std::int64_t>{ids[0], ids[2], ids[5], ids[6]}));

  std::map<std::int64_t, MetricSeries> all;
  ASSERT_TRUE(store->experiment_metrics(e.id, &all).ok());
  ASSERT_EQ(all.size(), visited.size());
  for (const auto& [id, series] : visited) {
    ASSERT_EQ(all.count(id), 1u) << "trial " << id;
    EXPECT_EQ(all.at(id), series) << "trial " << id;
    MetricSeries one;
    ASSERT_TRUE(store->metric_series(id, &one).ok());
    EXPECT_EQ(one, series) << "trial " << id;
  }

  using Points = std::vector<std::pair<std::int32_t, double>>;
  const MetricSeries& completed = visited[0].second;
  EXPECT_EQ(completed.at("val_acc"), (Points{{1, 0.1}, {2, 0.2}}));
  EXPECT_EQ(completed.at("loss"), (Points{{1, 3.0}, {2, 2.0}}));
  // The resumed trial: attempt 1 up to its checkpoint, then attempt 2.
  EXPECT_EQ(visited[1].second, (MetricSeries{{"val_acc", Points{{1, 0.5}, {2, 0.66}, {3, 0.77}}}}));
  EXPECT_EQ(visited[2].second, (MetricSeries{{"val_acc", Points{{1, 0.05}}}}));
  EXPECT_EQ(visited[3].second, (MetricSeries{{"val_acc", Points{{1, 0.06}}}}));
}

// A visit that fails ends the scan there, and the caller gets the visitor's own Status back.
TEST(ExperimentStoreTest, AFailedVisitStopsTheSeriesScanAfterThatTrial) {
  TempDir dir;
  auto store = open_store(dir.file("store.db"));
  ASSERT_TRUE(store);
  const ExperimentRecord e = make_experiment(*store, "alpha");
  const std::vector<std::int64_t> ids = add_series_trials(*store, e.id);
  ASSERT_EQ(ids.size(), 7u);

  std::vector<std::int64_t> visited;
  Status s = store->for_each_series(e.id, [&](std::int64_t trial_id, MetricSeries&&) {
    visited.push_back(trial_id);
    return visited.size() == 2 ? Status::Error("stop at the second") : Status::Ok();
  });
  EXPECT_FALSE(s.ok());
  EXPECT_EQ(s.message(), "stop at the second");
  EXPECT_EQ(visited, (std::vector<std::int64_t>{ids[0], ids[2]}));

  // The scan was closed: the store reads and writes on.
  std::map<std::int64_t, MetricSeries> all;
  ASSERT_TRUE(store->experiment_metrics(e.id, &all).ok());
  EXPECT_EQ(all.size(), 4u);
  ASSERT_TRUE(store->append_report(ids[3], 1, 1, {{"val_acc", 0.3}}).ok());
  ASSERT_TRUE(store->experiment_metrics(e.id, &all).ok());
  EXPECT_EQ(all.size(), 5u);
}

TEST(ExperimentStoreTest, CheckpointEpochNeverMovesBackwards) {
  TempDir dir;
  auto store = open_store(dir.file("store.db"));
  ASSERT_TRUE(store);
  ExperimentRecord e = make_experiment(*store, "alpha");
  TrialRecord t = make_trial(*store, e.id, 0);
  StartedAttempt started;
  ASSERT_TRUE(store->start_trial(t.id, "g0", "{}", &started).ok());
  ASSERT_TRUE(store->append_report(t.id, 1, 1, {{"val_acc", 0.1}}, true).ok());
  ASSERT_TRUE(store->append_report(t.id, 1, 3, {{"val_acc", 0.3}}, true).ok());
  // Epoch 2 overtaken by epoch 3, then epoch 1 again as a duplicate.
  ASSERT_TRUE(store->append_report(t.id, 1, 2, {{"val_acc", 0.2}}, true).ok());
  ASSERT_TRUE(store->append_report(t.id, 1, 1, {{"val_acc", 0.1}}, true).ok());
  TrialRecord got;
  ASSERT_TRUE(store->get_trial(t.id, &got).ok());
  EXPECT_EQ(got.checkpoint_epoch, 3);
  ASSERT_TRUE(store->requeue_trial(t.id, "lost").ok());
  ASSERT_TRUE(store->start_trial(t.id, "g1", "{}", &started).ok());
  EXPECT_TRUE(started.resume);
  EXPECT_EQ(started.resume_epoch, 3);
  // The new attempt repeats nothing the old one checkpointed.
  ASSERT_TRUE(store->append_report(t.id, 2, 4, {{"val_acc", 0.4}}, true).ok());
  ASSERT_TRUE(store->append_report(t.id, 2, 4, {{"val_acc", 0.4}}, true).ok());
  ASSERT_TRUE(store->get_trial(t.id, &got).ok());
  EXPECT_EQ(got.checkpoint_epoch, 4);
}

// A trial whose group vanishes is requeued until it was lost max_failures times, then fails
// with the reason; preemption and coordinator restarts never count against it.
TEST(ExperimentStoreTest, LostAttemptsCountTowardMaxFailures) {
  TempDir dir;
  auto store = open_store(dir.file("store.db"));
  ASSERT_TRUE(store);
  ExperimentRecord e = make_experiment(*store, "alpha");
  TrialRecord t = make_trial(*store, e.id, 0);
  std::int32_t attempt = 0;
  bool failed = true;
  for (const Requeue why : {Requeue::kPreemptedWithCheckpoint, Requeue::kNotTheTrialsFault,
                            Requeue::kLost, Requeue::kLost}) {
    ASSERT_TRUE(store->start_trial(t.id, "g", &attempt).ok());
    ASSERT_TRUE(store->requeue_trial(t.id, "gone", why, 3, &failed).ok());
    EXPECT_FALSE(failed);
  }
  TrialRecord got;
  ASSERT_TRUE(store->get_trial(t.id, &got).ok());
  EXPECT_EQ(got.state, TrialState::kPending);
  EXPECT_EQ(got.failures, 2);
  ASSERT_TRUE(store->start_trial(t.id, "g", &attempt).ok());
  EXPECT_EQ(attempt, 5);
  ASSERT_TRUE(store->requeue_trial(t.id, "group g lost", Requeue::kLost, 3, &failed).ok());
  EXPECT_TRUE(failed);
  ASSERT_TRUE(store->get_trial(t.id, &got).ok());
  EXPECT_EQ(got.state, TrialState::kFailed);
  EXPECT_EQ(got.error, "group g lost");
  EXPECT_FALSE(got.finished_at.empty());
  EXPECT_FALSE(store->start_trial(t.id, "g", &attempt).ok());  // failed is final
}

TEST(ExperimentStoreTest, ParamKindsAndSeedsRoundTrip) {
  TempDir dir;
  auto store = open_store(dir.file("store.db"));
  ASSERT_TRUE(store);
  ExperimentRecord e = make_experiment(*store, "alpha");
  const ParamMap params = {{"batch", std::int64_t{128}},
                           {"big", std::int64_t{-9007199254740993}},
                           {"lr", 0.001},
                           {"one", 1.0},
                           {"zero", 0.0},
                           {"tiny", 1e-300},
                           {"opt", std::string("adam, \"beta\"=0.9")},
                           {"unicode", std::string("λ→∞")}};
  TrialRecord t;
  t.experiment_id = e.id;
  t.number = 0;
  t.params = params;
  t.seed = kBigSeed;
  ASSERT_TRUE(store->add_trial(&t).ok());
  TrialRecord max_seed;
  max_seed.experiment_id = e.id;
  max_seed.number = 1;
  max_seed.seed = std::numeric_limits<std::uint64_t>::max();
  ASSERT_TRUE(store->add_trial(&max_seed).ok());

  TrialRecord got;
  ASSERT_TRUE(store->get_trial(t.id, &got).ok());
  EXPECT_EQ(got.params, params);
  ASSERT_TRUE(std::holds_alternative<double>(got.params.at("one")));
  EXPECT_EQ(std::get<double>(got.params.at("one")), 1.0);
  ASSERT_TRUE(std::holds_alternative<double>(got.params.at("zero")));
  ASSERT_TRUE(std::holds_alternative<std::int64_t>(got.params.at("batch")));
  EXPECT_EQ(got.seed, kBigSeed);
  ASSERT_TRUE(store->get_trial(max_seed.id, &got).ok());
  EXPECT_EQ(got.seed, std::numeric_limits<std::uint64_t>::max());
  EXPECT_TRUE(got.params.empty());

  TrialRecord nan_param;
  nan_param.experiment_id = e.id;
  nan_param.number = 2;
  nan_param.params = {{"lr", std::numeric_limits<double>::quiet_NaN()}};
  EXPECT_FALSE(store->add_trial(&nan_param).ok());
}

TEST(ExperimentStoreTest, ReopeningKeepsEverything) {
  TempDir dir;
  const std::string path = dir.file("store.db");
  std::int64_t trial_id = 0;
  {
    auto store = open_store(path);
    ASSERT_TRUE(store);
    ExperimentRecord e = make_experiment(*store, "alpha");
    TrialRecord t = make_trial(*store, e.id, 0, {{"lr", 1.0}, {"layers", std::int64_t{3}}});
    trial_id = t.id;
    std::int32_t attempt = 0;
    ASSERT_TRUE(store->start_trial(t.id, "g0", &attempt).ok());
    ASSERT_TRUE(store->append_report(t.id, attempt, 1, {{"val_acc", 0.25}}).ok());
    ASSERT_TRUE(store->append_report(t.id, attempt, 2, {{"val_acc", 0.75}}).ok());
    ASSERT_TRUE(
        store->finish_trial(t.id, attempt, TrialState::kCompleted, "", {{"test_acc", 0.7}}).ok());
  }
  for (bool read_only : {false, true}) {
    auto store = open_store(path, read_only);
    ASSERT_TRUE(store);
    std::optional<ExperimentRecord> e;
    ASSERT_TRUE(store->find_experiment("alpha", &e).ok());
    ASSERT_TRUE(e.has_value());
    EXPECT_EQ(e->seed, kBigSeed);
    std::vector<TrialRecord> trials;
    ASSERT_TRUE(store->list_trials(e->id, &trials).ok());
    ASSERT_EQ(trials.size(), 1u);
    EXPECT_EQ(trials[0].id, trial_id);
    EXPECT_EQ(trials[0].state, TrialState::kCompleted);
    EXPECT_EQ(trials[0].attempt, 1);
    EXPECT_EQ(trials[0].group, "g0");
    ASSERT_TRUE(std::holds_alternative<double>(trials[0].params.at("lr")));
    ASSERT_TRUE(std::holds_alternative<std::int64_t>(trials[0].params.at("layers")));
    EXPECT_DOUBLE_EQ(trials[0].final_metrics.at("test_acc"), 0.7);
    MetricSeries series;
    ASSERT_TRUE(store->metric_series(trial_id, &series).ok());
    ASSERT_EQ(series["val_acc"].size(), 2u);
    EXPECT_DOUBLE_EQ(series["val_acc"][1].second, 0.75);
  }
}

TEST(ExperimentStoreTest, ReadOnlyReaderSeesWritesOfOpenWriter) {
  TempDir dir;
  const std::string path = dir.file("store.db");
  auto writer = open_store(path);
  ASSERT_TRUE(writer);
  make_experiment(*writer, "alpha");
  auto reader = open_store(path, /*read_only=*/true);
  ASSERT_TRUE(reader);
  make_experiment(*writer, "beta");
  std::vector<ExperimentRecord> all;
  ASSERT_TRUE(reader->list_experiments(&all).ok());
  EXPECT_EQ(all.size(), 2u);
  ExperimentRecord refused;
  refused.name = "gamma";
  EXPECT_FALSE(reader->create_experiment(&refused).ok());
}

TEST(ExperimentStoreTest, ReadOnlyOpenOfMissingFileNamesPath) {
  TempDir dir;
  const std::string path = dir.file("missing.db");
  std::unique_ptr<ExperimentStore> store;
  Status s = ExperimentStore::Open(path, /*read_only=*/true, &store);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find(path), std::string::npos) << s.message();
  EXPECT_FALSE(store);
  EXPECT_FALSE(std::filesystem::exists(path));
}

TEST(ExperimentStoreTest, NonSqliteFileIsRefusedClearly) {
  TempDir dir;
  const std::string path = dir.file("notes.txt");
  {
    std::ofstream f(path);
    f << "this is not a database, just some text that is long enough to have a header\n";
    for (int i = 0; i < 100; ++i) f << "line " << i << "\n";
  }
  for (bool read_only : {false, true}) {
    std::unique_ptr<ExperimentStore> store;
    Status s = ExperimentStore::Open(path, read_only, &store);
    ASSERT_FALSE(s.ok());
    EXPECT_NE(s.message().find(path), std::string::npos) << s.message();
    EXPECT_NE(s.message().find("not a Trellis store"), std::string::npos) << s.message();
  }
}

TEST(ExperimentStoreTest, ForeignSqliteDatabaseIsRefused) {
  TempDir dir;
  const std::string path = dir.file("other.db");
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(db, "CREATE TABLE users (id INTEGER)", nullptr, nullptr, nullptr),
            SQLITE_OK);
  sqlite3_close(db);
  std::unique_ptr<ExperimentStore> store;
  Status s = ExperimentStore::Open(path, false, &store);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find(path), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("not a Trellis store"), std::string::npos) << s.message();
}

TEST(ExperimentStoreTest, NewerSchemaIsRefused) {
  TempDir dir;
  const std::string path = dir.file("store.db");
  { ASSERT_TRUE(open_store(path)); }
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(db, "UPDATE meta SET value = '999' WHERE key = 'schema_version'",
                         nullptr, nullptr, nullptr),
            SQLITE_OK);
  sqlite3_close(db);
  std::unique_ptr<ExperimentStore> store;
  Status s = ExperimentStore::Open(path, false, &store);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find(path), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("999"), std::string::npos) << s.message();
}

TEST(ExperimentStoreTest, ResolveExperimentListsExisting) {
  TempDir dir;
  auto store = open_store(dir.file("store.db"));
  ASSERT_TRUE(store);
  ExperimentRecord e;
  Status s = resolve_experiment(*store, "", &e);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("no experiments in"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("trellis run"), std::string::npos) << s.message();

  make_experiment(*store, "alpha");
  make_experiment(*store, "beta");
  ASSERT_TRUE(resolve_experiment(*store, "", &e).ok());
  EXPECT_EQ(e.name, "beta");
  ASSERT_TRUE(resolve_experiment(*store, "alpha", &e).ok());
  EXPECT_EQ(e.name, "alpha");
  s = resolve_experiment(*store, "alpah", &e);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("alpah"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("alpha, beta"), std::string::npos) << s.message();
}

TEST(TrialStateTest, NamesRoundTrip) {
  for (TrialState state : {TrialState::kPending, TrialState::kRunning, TrialState::kCompleted,
                           TrialState::kPruned, TrialState::kFailed}) {
    TrialState parsed = TrialState::kPending;
    ASSERT_TRUE(parse_trial_state(to_string(state), &parsed)) << to_string(state);
    EXPECT_EQ(parsed, state);
  }
  EXPECT_STREQ(to_string(TrialState::kPruned), "pruned");
  TrialState parsed;
  EXPECT_FALSE(parse_trial_state("done", &parsed));
}

}  // namespace
}  // namespace trellis::coordinator

namespace trellis::coordinator {
namespace {

using testing::TempDir;

// A trial trained through epoch 1 and paused there, as a scheduler leaves it.
TrialRecord paused_trial(ExperimentStore& store, std::int64_t experiment_id, std::int32_t number,
                         double val_acc) {
  TrialRecord t = make_trial(store, experiment_id, number, {{"lr", 0.01}});
  std::int32_t attempt = 0;
  EXPECT_TRUE(store.start_trial(t.id, "g", &attempt).ok());
  EXPECT_TRUE(store.append_report(t.id, attempt, 1, {{"val_acc", val_acc}}, true).ok());
  EXPECT_TRUE(store.finish_trial(t.id, attempt, TrialState::kPaused, "paused after epoch 1",
                                 {{"val_acc", val_acc}})
                  .ok());
  return t;
}

TEST(ExperimentStoreTest, APausedTrialContinuesFromItsCheckpointWithANewTarget) {
  TempDir dir;
  auto store = open_store(dir.file("store.db"));
  const ExperimentRecord e = make_experiment(*store, "asha");
  const TrialRecord t = paused_trial(*store, e.id, 0, 0.7);
  TrialRecord got;
  ASSERT_TRUE(store->get_trial(t.id, &got).ok());
  EXPECT_EQ(got.state, TrialState::kPaused);
  EXPECT_EQ(got.error, "paused after epoch 1");
  // Only a paused trial can be continued.
  EXPECT_FALSE(store->continue_trial(make_trial(*store, e.id, 1).id, 3).ok());
  ASSERT_TRUE(store->continue_trial(t.id, 3).ok());
  ASSERT_TRUE(store->get_trial(t.id, &got).ok());
  EXPECT_EQ(got.state, TrialState::kPending);
  EXPECT_EQ(got.target_epoch, 3);
  EXPECT_EQ(got.error, "");
  StartedAttempt started;
  ASSERT_TRUE(store->start_trial(t.id, "g", "{}", &started).ok());
  EXPECT_EQ(started.attempt, 2);
  EXPECT_TRUE(started.resume);
  EXPECT_EQ(started.resume_epoch, 1);
  EXPECT_EQ(started.warm_start, "");
  // The series continues across the pause.
  ASSERT_TRUE(store->append_report(t.id, 2, 2, {{"val_acc", 0.8}}).ok());
  MetricSeries series;
  ASSERT_TRUE(store->metric_series(t.id, &series).ok());
  EXPECT_EQ(series["val_acc"], (std::vector<std::pair<std::int32_t, double>>{{1, 0.7}, {2, 0.8}}));
}

TEST(ExperimentStoreTest, AnExploitRecordsTheLineageAndWarmStartsTheNextAttempt) {
  TempDir dir;
  auto store = open_store(dir.file("store.db"));
  const ExperimentRecord e = make_experiment(*store, "pbt");
  const TrialRecord donor = paused_trial(*store, e.id, 0, 0.9);
  const TrialRecord recipient = paused_trial(*store, e.id, 1, 0.2);
  LineageRecord exploit;
  exploit.trial_id = recipient.id;
  exploit.epoch = 1;
  exploit.donor_id = donor.id;
  exploit.donor_epoch = 1;
  exploit.params_before = {{"lr", 0.01}};
  exploit.params_after = {{"lr", 0.012}};
  exploit.reason = "bottom quantile";
  ASSERT_TRUE(store->exploit_trial(exploit, 2, "/ckpt/trial-0.ckpt.pbt-1").ok());
  TrialRecord got;
  ASSERT_TRUE(store->get_trial(recipient.id, &got).ok());
  EXPECT_EQ(got.state, TrialState::kPending);
  EXPECT_EQ(got.params, exploit.params_after);
  EXPECT_EQ(got.target_epoch, 2);
  StartedAttempt started;
  ASSERT_TRUE(store->start_trial(recipient.id, "g", "{}", &started).ok());
  EXPECT_TRUE(started.resume);
  EXPECT_EQ(started.resume_epoch, 1);
  EXPECT_EQ(started.warm_start, "/ckpt/trial-0.ckpt.pbt-1");
  // Once the trial checkpointed on its own, a retry resumes from that, not the donor's.
  ASSERT_TRUE(store->append_report(recipient.id, started.attempt, 2, {{"val_acc", 0.85}}, true).ok());
  ASSERT_TRUE(store->get_trial(recipient.id, &got).ok());
  EXPECT_EQ(got.warm_start, "");
  EXPECT_EQ(got.checkpoint_epoch, 2);
  std::vector<LineageRecord> lineage;
  ASSERT_TRUE(store->list_lineage(e.id, &lineage).ok());
  ASSERT_EQ(lineage.size(), 1u);
  EXPECT_EQ(lineage[0].donor_id, donor.id);
  EXPECT_EQ(lineage[0].params_before, exploit.params_before);
  EXPECT_EQ(lineage[0].params_after, exploit.params_after);
  EXPECT_EQ(lineage[0].reason, "bottom quantile");
  // An exploit of a trial that is not paused changes nothing.
  EXPECT_FALSE(store->exploit_trial(exploit, 3, "/elsewhere").ok());
}

TEST(ExperimentStoreTest, APausedTrialLeftAtTheEndIsPrunedWithItsMetrics) {
  TempDir dir;
  auto store = open_store(dir.file("store.db"));
  const ExperimentRecord e = make_experiment(*store, "end");
  const TrialRecord t = paused_trial(*store, e.id, 0, 0.4);
  EXPECT_FALSE(store->end_paused_trial(t.id, TrialState::kRunning, "no").ok());
  ASSERT_TRUE(store->end_paused_trial(t.id, TrialState::kPruned, "not promoted past epoch 1").ok());
  TrialRecord got;
  ASSERT_TRUE(store->get_trial(t.id, &got).ok());
  EXPECT_EQ(got.state, TrialState::kPruned);
  EXPECT_EQ(got.error, "not promoted past epoch 1");
  EXPECT_EQ(got.final_metrics["val_acc"], 0.4);
  MetricSeries series;
  ASSERT_TRUE(store->metric_series(t.id, &series).ok());
  EXPECT_EQ(series["val_acc"].size(), 1u);
}

// A store written by the previous schema (no paused state, no lineage) is upgraded in place
// on first open for writing, keeping every row.
TEST(ExperimentStoreTest, ASchemaOneStoreIsUpgradedKeepingItsTrials) {
  TempDir dir;
  const std::string path = dir.file("v1.db");
  {
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
    const char* v1 = R"sql(
      CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
      INSERT INTO meta VALUES ('application', 'trellis-experiment-store'), ('schema_version', '1');
      CREATE TABLE experiments (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE,
        spec_yaml TEXT NOT NULL, spec_hash TEXT NOT NULL, metric TEXT NOT NULL,
        mode TEXT NOT NULL CHECK (mode IN ('max', 'min')), seed INTEGER NOT NULL,
        state TEXT NOT NULL, created_at TEXT NOT NULL);
      CREATE TABLE trials (id INTEGER PRIMARY KEY,
        experiment_id INTEGER NOT NULL REFERENCES experiments(id), number INTEGER NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('pending', 'running', 'completed', 'pruned', 'failed')),
        params TEXT NOT NULL, seed INTEGER NOT NULL, attempt INTEGER NOT NULL DEFAULT 0,
        grp TEXT NOT NULL DEFAULT '', error TEXT NOT NULL DEFAULT '',
        started_at TEXT NOT NULL DEFAULT '', finished_at TEXT NOT NULL DEFAULT '',
        checkpoint_epoch INTEGER NOT NULL DEFAULT 0, resumable INTEGER NOT NULL DEFAULT 0,
        failures INTEGER NOT NULL DEFAULT 0, UNIQUE (experiment_id, number));
      CREATE TABLE attempts (trial_id INTEGER NOT NULL REFERENCES trials(id),
        attempt INTEGER NOT NULL, resume_epoch INTEGER NOT NULL, grp TEXT NOT NULL,
        provenance TEXT NOT NULL, started_at TEXT NOT NULL, PRIMARY KEY (trial_id, attempt))
        WITHOUT ROWID;
      CREATE TABLE metrics (trial_id INTEGER NOT NULL REFERENCES trials(id),
        attempt INTEGER NOT NULL, epoch INTEGER NOT NULL, name TEXT NOT NULL, value REAL,
        PRIMARY KEY (trial_id, attempt, epoch, name)) WITHOUT ROWID;
      CREATE TABLE finals (trial_id INTEGER NOT NULL REFERENCES trials(id), name TEXT NOT NULL,
        value REAL, PRIMARY KEY (trial_id, name)) WITHOUT ROWID;
      INSERT INTO experiments VALUES (1, 'old', 'name: old', 'h', 'val_acc', 'max', 3,
        'running', '2026-01-01T00:00:00.000Z');
      INSERT INTO trials (id, experiment_id, number, state, params, seed, attempt)
        VALUES (7, 1, 0, 'running', '{"lr": 0.5}', 9, 1);
      INSERT INTO attempts VALUES (7, 1, 0, 'g', '{}', '2026-01-01T00:00:00.000Z');
      INSERT INTO metrics VALUES (7, 1, 1, 'val_acc', 0.25);
    )sql";
    ASSERT_EQ(sqlite3_exec(db, v1, nullptr, nullptr, nullptr), SQLITE_OK) << sqlite3_errmsg(db);
    sqlite3_close(db);
  }
  std::unique_ptr<ExperimentStore> read_only;
  const Status refused = ExperimentStore::Open(path, true, &read_only);
  EXPECT_NE(refused.message().find("upgrades it"), std::string::npos) << refused.message();

  auto store = open_store(path);
  ASSERT_TRUE(store);
  TrialRecord got;
  ASSERT_TRUE(store->get_trial(7, &got).ok());
  EXPECT_EQ(got.state, TrialState::kRunning);
  EXPECT_EQ(got.attempt, 1);
  MetricSeries series;
  ASSERT_TRUE(store->metric_series(7, &series).ok());
  EXPECT_EQ(series["val_acc"].size(), 1u);
  // The new state and tables work on the upgraded file.
  ASSERT_TRUE(store->finish_trial(7, 1, TrialState::kPaused, "paused", {}).ok());
  std::vector<LineageRecord> lineage;
  EXPECT_TRUE(store->list_lineage(1, &lineage).ok());
  // Reopened, it is a current store.
  store.reset();
  EXPECT_TRUE(ExperimentStore::Open(path, true, &read_only).ok());
}

}  // namespace
}  // namespace trellis::coordinator
