#include "common/shard_plan.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <set>
#include <stdexcept>
#include <vector>

namespace trellis {
namespace {

constexpr std::int64_t kRows = 10007;  // prime: no shard count divides it
constexpr double kValFraction = 0.1;
constexpr std::uint64_t kSeed = 42;
constexpr int kBatch = 100;

TEST(ShardPlan, RankRangesTileTheFile) {
  for (int ranks : {1, 2, 3, 4, 5, 6, 7, 8, 16}) {
    const ShardPlan plan(kRows, kValFraction, kSeed, kBatch, ranks);
    EXPECT_EQ(plan.shards() % ranks, 0) << ranks;
    std::int64_t expected_begin = 0;
    for (int r = 0; r < ranks; ++r) {
      const RowRange range = plan.rank_rows(r);
      EXPECT_EQ(range.begin, expected_begin) << "ranks " << ranks << " rank " << r;
      EXPECT_GT(range.size(), 0);
      expected_begin = range.end;
    }
    EXPECT_EQ(expected_begin, kRows) << ranks;
  }
}

// Rows used by step `step` of `epoch`, over all ranks, sorted; each rank only uses rows inside
// its own range.
std::vector<std::int64_t> step_rows(const ShardPlan& plan, int epoch, std::int64_t step) {
  std::vector<std::int64_t> rows;
  for (int r = 0; r < plan.ranks(); ++r) {
    const RowRange range = plan.rank_rows(r);
    const auto steps = plan.rank_epoch_rows(r, epoch);
    EXPECT_EQ(static_cast<std::int64_t>(steps.size()), plan.steps_per_epoch());
    EXPECT_LE(static_cast<int>(steps[step].size()), plan.max_step_rows(r));
    for (std::int64_t row : steps[step]) {
      EXPECT_GE(row, range.begin);
      EXPECT_LT(row, range.end);
      rows.push_back(row);
    }
  }
  std::sort(rows.begin(), rows.end());
  return rows;
}

TEST(ShardPlan, StepsUseTheSameRowsWhateverTheRankCount) {
  const ShardPlan one(kRows, kValFraction, kSeed, kBatch, 1);
  const ShardPlan two(kRows, kValFraction, kSeed, kBatch, 2);
  const ShardPlan four(kRows, kValFraction, kSeed, kBatch, 4);
  ASSERT_EQ(one.steps_per_epoch(), two.steps_per_epoch());
  ASSERT_EQ(one.steps_per_epoch(), four.steps_per_epoch());
  ASSERT_GE(one.steps_per_epoch(), 3);
  std::set<std::int64_t> seen;
  for (int epoch : {1, 2}) {
    for (std::int64_t s = 0; s < 3; ++s) {
      const auto rows = step_rows(one, epoch, s);
      EXPECT_EQ(static_cast<int>(rows.size()), kBatch);
      EXPECT_EQ(std::adjacent_find(rows.begin(), rows.end()), rows.end()) << "duplicate row";
      EXPECT_EQ(rows, step_rows(two, epoch, s)) << "epoch " << epoch << " step " << s;
      EXPECT_EQ(rows, step_rows(four, epoch, s)) << "epoch " << epoch << " step " << s;
      if (epoch == 1) {
        for (auto r : rows) EXPECT_TRUE(seen.insert(r).second) << "row reused within an epoch";
      }
    }
  }
  // Another epoch shuffles differently.
  EXPECT_NE(step_rows(one, 1, 0), step_rows(one, 2, 0));
}

TEST(ShardPlan, ValidationRowsAreDisjointFromTrainingRows) {
  const ShardPlan plan(kRows, kValFraction, kSeed, kBatch, 4);
  std::int64_t covered = 0;
  for (int v = 0; v < plan.shards(); ++v) {
    const auto& train = plan.shard_train_rows(v);
    const auto& val = plan.shard_validation_rows(v);
    std::vector<std::int64_t> both;
    std::set_intersection(train.begin(), train.end(), val.begin(), val.end(),
                          std::back_inserter(both));
    EXPECT_TRUE(both.empty()) << "shard " << v;
    for (auto row : val) EXPECT_TRUE(is_validation_row(kSeed, row, kValFraction));
    for (auto row : train) EXPECT_FALSE(is_validation_row(kSeed, row, kValFraction));
    covered += static_cast<std::int64_t>(train.size() + val.size());
    // An epoch order is a permutation of the shard's training rows.
    auto order = plan.epoch_order(v, 3);
    std::sort(order.begin(), order.end());
    EXPECT_EQ(order, train);
  }
  EXPECT_EQ(covered, kRows);
  EXPECT_EQ(plan.train_rows() + plan.validation_rows(), kRows);
  EXPECT_NEAR(static_cast<double>(plan.validation_rows()) / kRows, kValFraction, 0.02);
}

// Any batch size, even one smaller than the shard count: every training row is used exactly
// once per epoch except the fewer than `batch` that would only fill a partial last step.
TEST(ShardPlan, AnEpochUsesEveryTrainingRowOnce) {
  for (int batch : {1, 7, 48, 130, 1000}) {
    const ShardPlan plan(kRows, kValFraction, kSeed, batch, 3);
    EXPECT_EQ(plan.steps_per_epoch(), plan.train_rows() / batch) << batch;
    std::vector<std::int64_t> used;
    for (int r = 0; r < plan.ranks(); ++r)
      for (const auto& step : plan.rank_epoch_rows(r, 1)) used.insert(used.end(), step.begin(), step.end());
    std::sort(used.begin(), used.end());
    EXPECT_EQ(std::adjacent_find(used.begin(), used.end()), used.end()) << batch;
    EXPECT_EQ(static_cast<std::int64_t>(used.size()), plan.steps_per_epoch() * batch) << batch;
    EXPECT_GT(static_cast<std::int64_t>(used.size()), plan.train_rows() - batch) << batch;
  }
}

// Shards are interleaved in proportion to their sizes: in any step each shard gives its
// proportional count of rows give or take one, so a rank's part of a step is within one row
// per owned shard of its share of the data, and no rank is starved while another is loaded.
TEST(ShardPlan, StepsAreSplitInProportionToTheRanksData) {
  const ShardPlan plan(kRows, kValFraction, kSeed, 128, 4);
  for (int r = 0; r < 4; ++r) {
    const auto [first, last] = plan.rank_shards(r);
    std::int64_t own = 0;
    for (int v = first; v < last; ++v) own += static_cast<std::int64_t>(plan.shard_train_rows(v).size());
    const double share = 128.0 * static_cast<double>(own) / static_cast<double>(plan.train_rows());
    for (const auto& step : plan.rank_epoch_rows(r, 2))
      EXPECT_NEAR(static_cast<double>(step.size()), share, last - first) << "rank " << r;
  }
}

// A plan built from every shard's counts and only its own shards' rows (how byte-sharded text
// files are planned) hands each rank the same rows as the plan that knows every row.
TEST(ShardPlan, PlanFromCountsMatchesPlanFromRows) {
  for (int ranks : {1, 2, 3, 4}) {
    const ShardPlan full(kRows, kValFraction, kSeed, kBatch, ranks);
    ShardCounts counts;
    for (int v = 0; v < full.shards(); ++v) {
      counts.train.push_back(full.shard_train_count(v));
      counts.validation.push_back(full.shard_validation_count(v));
    }
    EXPECT_EQ(virtual_shards(ranks), full.shards());
    for (int r = 0; r < ranks; ++r) {
      const auto [first, last] = full.rank_shards(r);
      std::vector<std::vector<std::int64_t>> train, val;
      for (int v = first; v < last; ++v) {
        train.push_back(full.shard_train_rows(v));
        val.push_back(full.shard_validation_rows(v));
      }
      const ShardPlan partial(counts, r, train, val, kSeed, kBatch, ranks);
      EXPECT_EQ(partial.steps_per_epoch(), full.steps_per_epoch());
      EXPECT_EQ(partial.train_rows(), full.train_rows());
      EXPECT_EQ(partial.validation_rows(), full.validation_rows());
      EXPECT_EQ(partial.max_step_rows(r), full.max_step_rows(r));
      EXPECT_EQ(partial.rank_epoch_rows(r, 2), full.rank_epoch_rows(r, 2)) << ranks << " " << r;
      EXPECT_EQ(partial.rank_rows(r).size(), 0) << "no file rows in a count-built plan";
    }
    // Counts that disagree with the rows are refused, not indexed past.
    const auto [first, last] = full.rank_shards(0);
    std::vector<std::vector<std::int64_t>> train(last - first), val(last - first);
    EXPECT_THROW(ShardPlan(counts, 0, train, val, kSeed, kBatch, ranks), std::invalid_argument);
  }
}

}  // namespace
}  // namespace trellis
