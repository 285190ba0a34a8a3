#include "coordinator/trial_table.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <limits>
#include <sstream>

#include "tests/coordinator/temp_store.h"

namespace trellis::coordinator {
namespace {

using testing::TempDir;

// Five trials of an experiment optimising val_acc (max):
//   0: final val_acc 0.80, val_loss 0.50 (last epoch)
//   1: no report at all (pending)
//   2: last epoch val_acc 0.95, val_loss 0.20 (running)
//   3: final val_acc 0.60, val_loss 0.90
//   4: reports only val_loss 0.10, no val_acc (pruned)
class TrialTableTest : public ::testing::Test {
 protected:
  void SetUp() override {
    Status s = ExperimentStore::Open(dir_.file("store.db"), false, &store_);
    ASSERT_TRUE(s.ok()) << s.message();
    experiment_.name = "sweep";
    experiment_.metric = "val_acc";
    experiment_.mode = "max";
    ASSERT_TRUE(store_->create_experiment(&experiment_).ok());
    for (int n = 0; n < 5; ++n) {
      TrialRecord t;
      t.experiment_id = experiment_.id;
      t.number = n;
      t.params = {{"lr", 0.001 * (n + 1)}, {"opt", std::string(n % 2 ? "sgd" : "adam")}};
      ASSERT_TRUE(store_->add_trial(&t).ok());
      id_.push_back(t.id);
    }
    run(0, {{1, 0.70, 0.6}, {2, 0.75, 0.5}}, TrialState::kCompleted, {{"val_acc", 0.80}});
    run(2, {{1, 0.90, 0.3}, {2, 0.95, 0.2}}, std::nullopt, {});
    run(3, {{1, 0.60, 0.9}}, TrialState::kCompleted, {{"val_acc", 0.60}});
    std::int32_t attempt = 0;
    ASSERT_TRUE(store_->start_trial(id_[4], "g", &attempt).ok());
    ASSERT_TRUE(store_->append_report(id_[4], attempt, 1, {{"val_loss", 0.1}}).ok());
    ASSERT_TRUE(store_->finish_trial(id_[4], attempt, TrialState::kPruned, "not promoted past epoch 1", {}).ok());
  }

  struct Epoch {
    std::int32_t epoch;
    double acc;
    double loss;
  };
  void run(int n, const std::vector<Epoch>& epochs, std::optional<TrialState> end,
           const MetricMap& finals) {
    std::int32_t attempt = 0;
    ASSERT_TRUE(store_->start_trial(id_[n], "g", &attempt).ok());
    for (const auto& e : epochs) {
      ASSERT_TRUE(store_->append_report(id_[n], attempt, e.epoch,
                                        {{"val_acc", e.acc}, {"val_loss", e.loss}})
                      .ok());
    }
    if (end) {
      ASSERT_TRUE(store_->finish_trial(id_[n], attempt, *end, "", finals).ok());
    }
  }

  std::vector<std::int32_t> order(const std::string& metric) {
    std::vector<RankedTrial> ranked;
    Status s = rank_trials(*store_, experiment_, metric, &ranked);
    EXPECT_TRUE(s.ok()) << s.message();
    std::vector<std::int32_t> numbers;
    for (const auto& r : ranked) numbers.push_back(r.trial.number);
    return numbers;
  }

  TempDir dir_;
  std::unique_ptr<ExperimentStore> store_;
  ExperimentRecord experiment_;
  std::vector<std::int64_t> id_;
};

TEST(HigherIsBetterTest, FollowsModeThenName) {
  ExperimentRecord e;
  e.metric = "val_loss";
  e.mode = "min";
  EXPECT_FALSE(higher_is_better(e, "val_loss"));
  e.mode = "max";  // the experiment's own mode wins over the name
  EXPECT_TRUE(higher_is_better(e, "val_loss"));
  EXPECT_FALSE(higher_is_better(e, "train_loss"));
  EXPECT_FALSE(higher_is_better(e, "top1_err"));
  EXPECT_FALSE(higher_is_better(e, "epoch_s"));
  EXPECT_TRUE(higher_is_better(e, "samples_per_s"));  // a rate, not a duration
  EXPECT_TRUE(higher_is_better(e, "test_acc"));
}

TEST_F(TrialTableTest, RanksMaxMetricWithMissingLast) {
  // 2 (0.95 last epoch) > 0 (0.80 final, beats its last epoch 0.75) > 3 (0.60); 1 and 4 have no
  // val_acc and follow in number order.
  EXPECT_EQ(order("val_acc"), (std::vector<std::int32_t>{2, 0, 3, 1, 4}));
  std::vector<RankedTrial> ranked;
  ASSERT_TRUE(rank_trials(*store_, experiment_, "val_acc", &ranked).ok());
  ASSERT_EQ(ranked.size(), 5u);
  ASSERT_TRUE(ranked[1].value.has_value());
  EXPECT_DOUBLE_EQ(*ranked[1].value, 0.80);
  EXPECT_FALSE(ranked[3].value.has_value());
  EXPECT_FALSE(ranked[4].value.has_value());
}

TEST_F(TrialTableTest, RanksMinMetricWithMissingLast) {
  // val_loss goes down: 4 (0.1) < 2 (0.2) < 0 (0.5) < 3 (0.9); 1 has nothing.
  EXPECT_EQ(order("val_loss"), (std::vector<std::int32_t>{4, 2, 0, 3, 1}));
  // The experiment's mode applies to its own metric even when the name suggests otherwise.
  ExperimentRecord by_loss = experiment_;
  by_loss.metric = "val_loss";
  by_loss.mode = "max";
  std::vector<RankedTrial> ranked;
  ASSERT_TRUE(rank_trials(*store_, by_loss, "val_loss", &ranked).ok());
  std::vector<std::int32_t> numbers;
  for (const auto& r : ranked) numbers.push_back(r.trial.number);
  EXPECT_EQ(numbers, (std::vector<std::int32_t>{3, 0, 2, 4, 1}));
}

TEST_F(TrialTableTest, UnknownMetricKeepsNumberOrder) {
  EXPECT_EQ(order("nope"), (std::vector<std::int32_t>{0, 1, 2, 3, 4}));
}

TEST_F(TrialTableTest, PrintsHeaderAndRankedRows) {
  std::ostringstream out;
  Status s = print_trials(*store_, {}, out);
  ASSERT_TRUE(s.ok()) << s.message();
  const std::string text = out.str();
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  ASSERT_EQ(lines.size(), 2u + 5u) << text;

  EXPECT_NE(lines[0].find("sweep"), std::string::npos) << lines[0];
  EXPECT_NE(lines[0].find("running"), std::string::npos) << lines[0];
  EXPECT_NE(lines[0].find("5 trials"), std::string::npos) << lines[0];
  EXPECT_NE(lines[0].find("2 completed"), std::string::npos) << lines[0];
  EXPECT_NE(lines[0].find("1 pruned"), std::string::npos) << lines[0];
  EXPECT_NE(lines[0].find("1 pending"), std::string::npos) << lines[0];
  EXPECT_NE(lines[0].find("sorted by val_acc (max"), std::string::npos) << lines[0];

  std::istringstream header(lines[1]);
  std::vector<std::string> columns;
  for (std::string c; header >> c;) columns.push_back(c);
  // A trial stopped early says why, in the last column.
  EXPECT_EQ(columns, (std::vector<std::string>{"rank", "trial", "state", "val_acc", "val_loss",
                                               "epochs_run", "lr", "opt", "why"}));

  auto fields = [&](std::size_t i) {
    std::istringstream row(lines[i]);
    std::vector<std::string> f;
    for (std::string c; row >> c;) f.push_back(c);
    return f;
  };
  EXPECT_EQ(fields(2), (std::vector<std::string>{"1", "2", "running", "0.9500", "0.2000", "2",
                                                 "0.003", "adam"}));
  EXPECT_EQ(fields(3), (std::vector<std::string>{"2", "0", "completed", "0.8000", "0.5000", "2",
                                                 "0.001", "adam"}));
  EXPECT_EQ(fields(4)[1], "3");
  EXPECT_EQ(fields(5)[0], "-");  // unvalued: listed, not ranked
  EXPECT_EQ(fields(5)[1], "1");
  EXPECT_EQ(fields(5)[2], "pending");
  EXPECT_EQ(fields(6)[1], "4");
  EXPECT_EQ(fields(6)[4], "0.1000");
  EXPECT_NE(lines[6].find("not promoted past epoch 1"), std::string::npos) << lines[6];
  EXPECT_EQ(fields(3).size(), 8u) << "a completed trial has nothing to explain";

  // Aligned: every row has the header's column start for "state".
  const auto state_col = lines[1].find("state");
  for (std::size_t i = 2; i < lines.size(); ++i) {
    EXPECT_NE(lines[i].substr(state_col, 3), "   ") << lines[i];
    EXPECT_EQ(lines[i][state_col - 1], ' ') << lines[i];
  }
}

TEST_F(TrialTableTest, SortMetricAndLimit) {
  std::ostringstream out;
  TrialTableOptions options;
  options.experiment = "sweep";
  options.sort_metric = "val_loss";
  options.limit = 2;
  ASSERT_TRUE(print_trials(*store_, options, out).ok());
  const std::string text = out.str();
  EXPECT_NE(text.find("sorted by val_loss (min"), std::string::npos) << text;
  std::vector<std::vector<std::string>> rows;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    std::istringstream row(line);
    std::vector<std::string> f;
    for (std::string c; row >> c;) f.push_back(c);
    rows.push_back(f);
  }
  // header, columns, 2 rows, "more", and how the metric is spread over all of them
  ASSERT_EQ(rows.size(), 1u + 1u + 2u + 2u) << text;
  EXPECT_EQ(rows[1][3], "val_loss");
  EXPECT_EQ(rows[2][0], "1");
  EXPECT_EQ(rows[2][1], "4");
  EXPECT_EQ(rows[3][0], "2");
  EXPECT_EQ(rows[3][1], "2");
  EXPECT_EQ(rows[2][2], "pruned");
  EXPECT_EQ(rows[3][2], "running");  // trials 0 and 3 (completed) are cut off
  EXPECT_NE(text.find("3 more"), std::string::npos) << text;
  EXPECT_NE(text.find("val_loss over 4 trials with a value: best 0.1000, median 0.5000, worst "
                      "0.9000"),
            std::string::npos)
      << text;
}

// A sweep of 2,500 trials: every tenth never started, every tenth+8 still running (ranked by its
// last epoch), the rest completed with a final val_acc; trial 7 diverged (final NaN). Values
// are distinct, so the expected order is known exactly.
class ManyTrialsTest : public ::testing::Test {
 protected:
  static constexpr int kTrials = 2500;
  static double value(int n) { return ((n * 7919) % kTrials) / double(kTrials); }

  void SetUp() override {
    Status s = ExperimentStore::Open(dir_.file("store.db"), false, &store_);
    ASSERT_TRUE(s.ok()) << s.message();
    experiment_.name = "big";
    experiment_.metric = "val_acc";
    ASSERT_TRUE(store_->create_experiment(&experiment_).ok());
    ASSERT_TRUE(store_->begin_batch().ok());  // one commit, as the coordinator would
    for (int n = 0; n < kTrials; ++n) {
      TrialRecord t;
      t.experiment_id = experiment_.id;
      t.number = n;
      t.params = {{"lr", 0.001 * (n + 1)}, {"epochs", std::int64_t{5}}};
      ASSERT_TRUE(store_->add_trial(&t).ok());
      if (n % 10 == 9) continue;
      std::int32_t attempt = 0;
      ASSERT_TRUE(store_->start_trial(t.id, "g", &attempt).ok());
      const int epochs = n % 10 == 8 ? 3 : 5;
      for (int e = 1; e <= epochs; ++e) {
        const double acc = value(n) - 0.01 * (epochs - e);
        const MetricMap metrics = {{"val_acc", acc}, {"val_loss", 1 - acc}};
        ASSERT_TRUE(store_->append_report(t.id, attempt, e, metrics).ok());
      }
      if (n % 10 == 8) continue;
      const double final = n == 7 ? std::numeric_limits<double>::quiet_NaN() : value(n);
      ASSERT_TRUE(store_->finish_trial(t.id, attempt, TrialState::kCompleted, "",
                                       {{"val_acc", final}})
                      .ok());
    }
    ASSERT_TRUE(store_->commit_batch().ok());

    for (int n = 0; n < kTrials; ++n) {
      if (n % 10 == 9 || n == 7) {
        unvalued_.push_back(n);
      } else {
        valued_.push_back(n);
      }
    }
    std::sort(valued_.begin(), valued_.end(), [](int a, int b) { return value(a) > value(b); });
  }

  // The whitespace-separated fields of each line of `text`.
  static std::vector<std::vector<std::string>> lines_of(const std::string& text) {
    std::vector<std::vector<std::string>> out;
    std::istringstream in(text);
    for (std::string line; std::getline(in, line);) {
      std::istringstream words(line);
      std::vector<std::string> f;
      for (std::string w; words >> w;) f.push_back(w);
      out.push_back(f);
    }
    return out;
  }

  TempDir dir_;
  std::unique_ptr<ExperimentStore> store_;
  ExperimentRecord experiment_;
  std::vector<int> valued_;    // best first
  std::vector<int> unvalued_;  // number order
};

TEST_F(ManyTrialsTest, ShowsTheBestRowsAndSaysHowTheRestAreSpread) {
  std::ostringstream out;
  ASSERT_TRUE(print_trials(*store_, {}, out).ok());
  const std::string text = out.str();
  const auto lines = lines_of(text);
  // summary, shared params, columns, kDefaultTrialRows rows, "more", spread
  ASSERT_EQ(lines.size(), 3u + kDefaultTrialRows + 2u) << text;
  EXPECT_NE(text.find("2500 trials (2000 completed, 250 running, 250 pending)"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("same in every trial: epochs=5"), std::string::npos) << text;
  EXPECT_EQ(lines[2], (std::vector<std::string>{"rank", "trial", "state", "val_acc", "val_loss",
                                                "epochs_run", "lr"}));
  for (int i = 0; i < kDefaultTrialRows; ++i) {
    const auto& row = lines[3 + i];
    const int n = valued_[i];
    EXPECT_EQ(row[0], std::to_string(i + 1)) << text;
    EXPECT_EQ(row[1], std::to_string(n)) << text;
    EXPECT_EQ(row[2], n % 10 == 8 ? "running" : "completed") << text;
    EXPECT_EQ(row[5], n % 10 == 8 ? "3" : "5") << text;
  }
  EXPECT_EQ(lines[3][3], "0.9996");  // 2499/2500, the best value there is
  EXPECT_NE(text.find("(2480 more; --limit N shows the best N, --all every trial)"),
            std::string::npos)
      << text;
  // Trial 0 has the worst value there is, 0.
  char spread[160];
  std::snprintf(spread, sizeof spread,
                "val_acc over %zu trials with a value: best 0.9996, median %.4f, worst 0\n",
                valued_.size(), value(valued_[valued_.size() / 2]));
  EXPECT_NE(text.find(spread), std::string::npos) << spread << text;
}

TEST_F(ManyTrialsTest, LimitZeroListsEveryTrialInRankOrder) {
  std::ostringstream out;
  TrialTableOptions options;
  options.limit = 0;
  ASSERT_TRUE(print_trials(*store_, options, out).ok());
  const auto lines = lines_of(out.str());
  ASSERT_EQ(lines.size(), 3u + kTrials);
  std::vector<int> expected = valued_;
  expected.insert(expected.end(), unvalued_.begin(), unvalued_.end());
  for (int i = 0; i < kTrials; ++i) {
    const auto& row = lines[3 + i];
    ASSERT_EQ(row[1], std::to_string(expected[i])) << "row " << i;
    EXPECT_EQ(row[0], i < static_cast<int>(valued_.size()) ? std::to_string(i + 1) : "-");
  }
  // Unvalued: the diverged trial still shows its epochs, a pending one none.
  EXPECT_EQ(lines[3 + valued_.size()][1], "7");
  EXPECT_EQ(lines[3 + valued_.size()][5], "5");
  EXPECT_EQ(lines[3 + valued_.size() + 1][1], "9");
  EXPECT_EQ(lines[3 + valued_.size() + 1][2], "pending");
  EXPECT_EQ(lines[3 + valued_.size() + 1][5], "0");
}

TEST(TrialTableErrorsTest, EmptyStoreAndUnknownExperiment) {
  TempDir dir;
  const std::string path = dir.file("store.db");
  std::unique_ptr<ExperimentStore> store;
  ASSERT_TRUE(ExperimentStore::Open(path, false, &store).ok());
  std::ostringstream out;
  Status s = print_trials(*store, {}, out);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("no experiments in " + path), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("trellis run SPEC"), std::string::npos) << s.message();

  ExperimentRecord e;
  e.name = "real";
  e.metric = "val_acc";
  ASSERT_TRUE(store->create_experiment(&e).ok());
  TrialTableOptions options;
  options.experiment = "imaginary";
  s = print_trials(*store, options, out);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("imaginary"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("real"), std::string::npos) << s.message();

  // An experiment without trials still prints its header.
  out.str("");
  ASSERT_TRUE(print_trials(*store, {}, out).ok());
  EXPECT_NE(out.str().find("0 trials"), std::string::npos) << out.str();
}

}  // namespace
}  // namespace trellis::coordinator
