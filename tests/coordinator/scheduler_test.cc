// Schedulers on hand-computed examples: what a free group gets next, when a trial is
// promoted, stopped or exploits another.

#include <gtest/gtest.h>

#include <cmath>
#include <set>

#include "coordinator/schedulers/asha_scheduler.h"
#include "coordinator/schedulers/fifo_scheduler.h"
#include "coordinator/schedulers/hyperband_scheduler.h"
#include "coordinator/schedulers/pbt_scheduler.h"

namespace trellis::coordinator {
namespace {

SchedulerOptions options_for(const std::string& type, int max_epochs, int min_epochs = 1,
                             int eta = 3) {
  SchedulerOptions o;
  o.spec.type = type;
  o.spec.min_epochs = min_epochs;
  o.spec.reduction_factor = eta;
  o.max_epochs = max_epochs;
  o.metric = "val_loss";
  o.maximize = false;
  return o;
}

// Starts what next() asks for as trial `id` and returns the job.
Job take(Scheduler& s, std::int64_t id, bool may_start_new = true) {
  Job job = s.next(may_start_new);
  s.on_assigned(job.kind == Job::Kind::kContinue ? job.trial : id, job, {});
  return job;
}

// A trial reports `loss` at `epoch` and pauses there.
void pause_at(Scheduler& s, std::int64_t id, int epoch, double loss) {
  EXPECT_EQ(s.on_report(id, epoch, loss), "");
  s.on_paused(id, epoch);
}

TEST(HyperbandBrackets, MatchThePapersTableForR81Eta3) {
  // Li et al. 2018, Table 1: (n_i, r_i) per rung for each bracket s.
  const std::vector<std::vector<std::pair<int, int>>> paper = {
      {{81, 1}, {27, 3}, {9, 9}, {3, 27}, {1, 81}},
      {{34, 3}, {11, 9}, {3, 27}, {1, 81}},
      {{15, 9}, {5, 27}, {1, 81}},
      {{8, 27}, {2, 81}},
      {{5, 81}}};
  const auto brackets = hyperband_brackets(81, 1, 3);
  ASSERT_EQ(brackets.size(), paper.size());
  for (std::size_t b = 0; b < paper.size(); ++b) {
    EXPECT_EQ(brackets[b].s, 4 - static_cast<int>(b));
    ASSERT_EQ(brackets[b].rungs.size(), paper[b].size()) << "bracket " << b;
    for (std::size_t i = 0; i < paper[b].size(); ++i) {
      EXPECT_EQ(brackets[b].rungs[i].trials, paper[b][i].first) << "bracket " << b << " rung " << i;
      EXPECT_EQ(brackets[b].rungs[i].epochs, paper[b][i].second) << "bracket " << b << " rung " << i;
    }
  }
}

TEST(AshaRungs, AreGeometricBelowTheLastEpochThenIt) {
  EXPECT_EQ(asha_rungs(1, 3, 9), (std::vector<std::int32_t>{1, 3, 9}));
  EXPECT_EQ(asha_rungs(1, 3, 10), (std::vector<std::int32_t>{1, 3, 9, 10}));
  EXPECT_EQ(asha_rungs(2, 2, 16), (std::vector<std::int32_t>{2, 4, 8, 16}));
  EXPECT_EQ(asha_rungs(1, 3, 1), (std::vector<std::int32_t>{1}));
}

// r = 1, eta = 3, R = 9: rungs at 1, 3, 9. Results arrive one by one; after each, the next
// job follows from "promote a paused trial in the top floor(n/3) of its rung, top rung first,
// else start a new trial".
TEST(AshaScheduler, PromotesOnAHandComputedExample) {
  AshaScheduler asha(options_for("asha", 9));
  for (std::int64_t id = 1; id <= 3; ++id) {
    const Job job = take(asha, id);
    ASSERT_EQ(job.kind, Job::Kind::kNew);
    EXPECT_EQ(job.until_epoch, 1);
  }
  pause_at(asha, 1, 1, 0.5);
  pause_at(asha, 2, 1, 0.3);
  // Two results: floor(2/3) = 0 promotable, so a new trial.
  EXPECT_EQ(take(asha, 4).kind, Job::Kind::kNew);
  pause_at(asha, 3, 1, 0.9);
  // Three results {0.3, 0.5, 0.9}: the top one, trial 2, goes to epoch 3.
  Job job = take(asha, 5);
  ASSERT_EQ(job.kind, Job::Kind::kContinue);
  EXPECT_EQ(job.trial, 2);
  EXPECT_EQ(job.until_epoch, 3);
  EXPECT_NE(job.reason.find("ranks 1 of 3"), std::string::npos) << job.reason;
  // Nothing else is promotable: floor(3/3) = 1 and trial 2 already went.
  EXPECT_EQ(take(asha, 5).kind, Job::Kind::kNew);  // trial 5 at rung 0
  pause_at(asha, 4, 1, 0.1);
  // {0.1, 0.3, 0.5, 0.9}: top 1 is trial 4.
  job = take(asha, 6);
  ASSERT_EQ(job.kind, Job::Kind::kContinue);
  EXPECT_EQ(job.trial, 4);
  pause_at(asha, 5, 1, 0.2);
  // Five results: top 1 is still trial 4 (promoted): a new trial 6.
  EXPECT_EQ(take(asha, 6).kind, Job::Kind::kNew);
  pause_at(asha, 6, 1, 0.4);
  // Six results: top 2 = {trial 4 (0.1), trial 5 (0.2)}; trial 5 goes up.
  job = take(asha, 7);
  ASSERT_EQ(job.kind, Job::Kind::kContinue);
  EXPECT_EQ(job.trial, 5);
  // Rung 1 fills: trial 2 at 0.25, trial 4 at 0.05, trial 5 at 0.15. Top 1 of 3: trial 4,
  // promoted to the last epoch ahead of anything in rung 0.
  pause_at(asha, 2, 3, 0.25);
  pause_at(asha, 4, 3, 0.05);
  pause_at(asha, 5, 3, 0.15);
  job = take(asha, 7);
  ASSERT_EQ(job.kind, Job::Kind::kContinue);
  EXPECT_EQ(job.trial, 4);
  EXPECT_EQ(job.until_epoch, 9);
  // No new trials allowed and trial 4 still running: wait; once it ends: nothing left.
  EXPECT_EQ(asha.next(false).kind, Job::Kind::kWait);
  EXPECT_EQ(asha.on_report(4, 9, 0.01), "");
  asha.on_ended(4);
  EXPECT_EQ(asha.next(false).kind, Job::Kind::kNone);
  // Why trial 1 stopped at epoch 1, with the rung's cutoff.
  const std::string why = asha.paused_reason(1);
  EXPECT_NE(why.find("not promoted past epoch 1"), std::string::npos) << why;
  EXPECT_NE(why.find("of the 6 trials"), std::string::npos) << why;
  EXPECT_NE(why.find("cutoff val_loss 0.2"), std::string::npos) << why;
}

TEST(AshaScheduler, AMaximisedMetricPromotesTheHighest) {
  SchedulerOptions o = options_for("asha", 3, 1, 3);
  o.metric = "val_acc";
  o.maximize = true;
  AshaScheduler asha(o);
  for (std::int64_t id = 1; id <= 3; ++id) take(asha, id);
  // The coordinator negates a maximised metric: accuracy 0.9 arrives as -0.9.
  pause_at(asha, 1, 1, -0.6);
  pause_at(asha, 2, 1, -0.9);
  pause_at(asha, 3, 1, -0.7);
  const Job job = take(asha, 4);
  ASSERT_EQ(job.kind, Job::Kind::kContinue);
  EXPECT_EQ(job.trial, 2);
  EXPECT_NE(job.reason.find("val_acc 0.9"), std::string::npos) << job.reason;
}

// R = 9, r = 1, eta = 3: brackets s=2 (9 trials at 1, 3 at 3, 1 at 9), s=1 (5 at 3, 1 at 9),
// s=0 (3 at 9).
TEST(HyperbandScheduler, FillsBracketsInOrderAndHalvesEachWhenItsRungIsComplete) {
  HyperbandScheduler hb(options_for("hyperband", 9));
  for (std::int64_t id = 1; id <= 9; ++id) {
    const Job job = take(hb, id);
    ASSERT_EQ(job.kind, Job::Kind::kNew);
    EXPECT_EQ(job.until_epoch, 1) << "trial " << id;
  }
  // Bracket s=2 is full; its rung is not complete, so a free group starts bracket s=1.
  Job job = take(hb, 10);
  ASSERT_EQ(job.kind, Job::Kind::kNew);
  EXPECT_EQ(job.until_epoch, 3);
  for (std::int64_t id = 1; id <= 8; ++id) pause_at(hb, id, 1, 0.1 * static_cast<double>(id));
  // Trial 9 has not reported: synchronous halving waits for it.
  EXPECT_EQ(take(hb, 11).kind, Job::Kind::kNew);  // bracket s=1 again
  pause_at(hb, 9, 1, 0.05);
  // Rung complete; the best 3 are trials 9 (0.05), 1 (0.1), 2 (0.2), promoted best first.
  for (std::int64_t expected : {9, 1, 2}) {
    job = take(hb, 12);
    ASSERT_EQ(job.kind, Job::Kind::kContinue);
    EXPECT_EQ(job.trial, expected);
    EXPECT_EQ(job.until_epoch, 3);
  }
  job = take(hb, 12);
  EXPECT_EQ(job.kind, Job::Kind::kNew);  // the rest of bracket s=1
  EXPECT_EQ(job.until_epoch, 3);
  const std::string why = hb.paused_reason(5);
  EXPECT_NE(why.find("not among the best 3 at epoch 1"), std::string::npos) << why;
}

TEST(MedianStoppingScheduler, StopsATrialWorseThanTheMedianAfterTheGracePeriod) {
  SchedulerOptions o = options_for("median", 5, /*min_epochs (grace)=*/2);
  o.spec.min_trials = 3;
  MedianStoppingScheduler median(o);
  for (std::int64_t id = 1; id <= 5; ++id) take(median, id);
  for (std::int64_t id = 1; id <= 3; ++id) {
    EXPECT_EQ(median.on_report(id, 1, 1.0 + static_cast<double>(id)), "");
    EXPECT_EQ(median.on_report(id, 2, 0.5 * static_cast<double>(id)), "");  // 0.5, 1.0, 1.5
  }
  // Epoch 1 is within the grace period however bad the trial.
  EXPECT_EQ(median.on_report(4, 1, 100.0), "");
  // Epoch 2: best 1.2 against the others' median 1.0: stopped, with the numbers.
  const std::string why = median.on_report(4, 2, 1.2);
  EXPECT_NE(why.find("median stopping rule at epoch 2"), std::string::npos) << why;
  EXPECT_NE(why.find("val_loss 1.2"), std::string::npos) << why;
  EXPECT_NE(why.find("median val_loss 1"), std::string::npos) << why;
  // Trial 5 at 0.9 beats the median of {0.5, 1.0, 1.5, 1.2} = 1.1.
  EXPECT_EQ(median.on_report(5, 1, 3.0), "");
  EXPECT_EQ(median.on_report(5, 2, 0.9), "");
}

TEST(FifoScheduler, RunsEveryTrialToTheEndThenEnds) {
  FifoScheduler fifo(options_for("fifo", 4));
  const Job job = take(fifo, 1);
  ASSERT_EQ(job.kind, Job::Kind::kNew);
  EXPECT_EQ(job.until_epoch, 4);
  EXPECT_EQ(fifo.next(false).kind, Job::Kind::kWait);
  fifo.on_ended(1);
  EXPECT_EQ(fifo.next(false).kind, Job::Kind::kNone);
}

class PbtSchedulerTest : public ::testing::Test {
 protected:
  static SchedulerOptions pbt_options() {
    SchedulerOptions o = options_for("pbt", 6);
    o.spec.interval = 2;
    o.spec.quantile = 0.25;
    o.spec.resample_probability = 0.25;
    o.seed = 5;
    Domain lr;
    lr.kind = Domain::Kind::kLogFloat;
    lr.low = 1e-4;
    lr.high = 1e-1;
    Domain schedule;
    schedule.kind = Domain::Kind::kCategorical;
    schedule.choices = {std::string("constant"), std::string("step"), std::string("cosine")};
    Domain act;
    act.kind = Domain::Kind::kCategorical;
    act.choices = {std::string("relu"), std::string("tanh"), std::string("gelu")};
    o.space = {{"lr", lr, {}}, {"lr_schedule", schedule, {}}, {"activation", act, {}}};
    return o;
  }
};

TEST_F(PbtSchedulerTest, TheBottomQuantileExploitsTheTopAndExplores) {
  PbtScheduler pbt(pbt_options());
  for (std::int64_t id = 1; id <= 4; ++id) {
    const Job job = pbt.next(true);
    ASSERT_EQ(job.kind, Job::Kind::kNew);
    EXPECT_EQ(job.until_epoch, 2);
    pbt.on_assigned(id, job, {{"lr", 0.01 * static_cast<double>(id)}, {"activation", std::string("tanh")}});
  }
  for (std::int64_t id = 1; id <= 4; ++id) pause_at(pbt, id, 2, 0.1 * static_cast<double>(id));
  // Population done: the trial furthest behind (lowest epoch, then id) continues first.
  Job job = pbt.next(false);
  ASSERT_EQ(job.kind, Job::Kind::kContinue);
  EXPECT_EQ(job.trial, 1);
  EXPECT_EQ(job.until_epoch, 4);
  EXPECT_LT(job.donor, 0) << "the best trial does not exploit";
  pbt.on_assigned(job.trial, job, {});
  // Trials 2 and 3 are in the middle: they continue as they are.
  for (std::int64_t id : {2, 3}) {
    job = pbt.next(false);
    ASSERT_EQ(job.trial, id);
    EXPECT_LT(job.donor, 0);
    pbt.on_assigned(id, job, {});
  }
  // Trial 4 (0.4) is the bottom 1 of 4: it takes trial 1's weights (the top 1 of 4).
  job = pbt.next(false);
  ASSERT_EQ(job.kind, Job::Kind::kContinue);
  ASSERT_EQ(job.trial, 4);
  EXPECT_EQ(job.donor, 1);
  EXPECT_EQ(job.donor_epoch, 2);
  EXPECT_NE(job.reason.find("bottom 1 of 4"), std::string::npos) << job.reason;
  // Explored from the donor's lr 0.01: perturbed by 0.8 or 1.2, or resampled in bounds.
  const double lr = std::get<double>(job.params.at("lr"));
  EXPECT_GE(lr, 1e-4);
  EXPECT_LT(lr, 1e-1);
  EXPECT_NE(lr, 0.04) << "the exploit keeps the recipient's own lr";
  // The decision is a function of (seed, trial, epoch): asked again, the same.
  const Job again = pbt.next(false);
  EXPECT_EQ(again.donor, job.donor);
  EXPECT_EQ(again.params, job.params);
}

TEST_F(PbtSchedulerTest, ExploreStaysInTheSpaceAndMovesCategoricalsToANeighbour) {
  PbtScheduler pbt(pbt_options());
  const ParamMap donor = {{"lr", 0.01},
                         {"lr_schedule", std::string("step")},
                         {"activation", std::string("tanh")},
                         {"batch_size", std::int64_t{32}}};
  int neighbours = 0;
  int perturbed = 0;
  for (std::uint64_t seed = 0; seed < 200; ++seed) {
    const ParamMap p = pbt.explore(donor, seed);
    EXPECT_EQ(p.at("batch_size"), donor.at("batch_size")) << "fixed hyperparameters are kept";
    const double lr = std::get<double>(p.at("lr"));
    EXPECT_GE(lr, 1e-4);
    EXPECT_LT(lr, 1e-1);
    if (std::abs(lr - 0.008) < 1e-12 || std::abs(lr - 0.012) < 1e-12) ++perturbed;
    // The weights were trained with tanh: the activation stays the donor's.
    EXPECT_EQ(p.at("activation"), donor.at("activation"));
    const auto& schedule = std::get<std::string>(p.at("lr_schedule"));
    EXPECT_TRUE(schedule == "constant" || schedule == "step" || schedule == "cosine") << schedule;
    if (schedule != "step") ++neighbours;
  }
  EXPECT_GT(neighbours, 100) << "a categorical moves to a neighbour when perturbed";
  // Perturbation is the rule, resampling the exception (probability 0.25).
  EXPECT_GT(perturbed, 120);
  EXPECT_LT(perturbed, 180);
  EXPECT_EQ(pbt.explore(donor, 7), pbt.explore(donor, 7));
}

// Without resampling, explore is exactly the perturbation: every float is the donor's times 0.8
// or 1.2 (clamped into [low, high)), an int moves by that factor rounded and at least 1, a
// categorical to the neighbouring choice, and what defines the weights stays the donor's.
TEST_F(PbtSchedulerTest, WithoutResamplingExploreIsExactlyThePerturbation) {
  SchedulerOptions o = pbt_options();
  o.spec.resample_probability = 0;
  Domain units;
  units.kind = Domain::Kind::kInt;
  units.low = 1;
  units.high = 40;
  o.space.push_back({"batch_size", units, {}});
  PbtScheduler pbt(o);
  const ParamMap donor = {{"lr", 0.01},
                         {"lr_schedule", std::string("step")},
                         {"activation", std::string("tanh")},
                         {"batch_size", std::int64_t{2}}};
  const ParamMap at_the_top = {{"lr", 0.09},
                               {"lr_schedule", std::string("cosine")},
                               {"activation", std::string("tanh")},
                               {"batch_size", std::int64_t{40}}};
  std::set<double> lrs, top_lrs;
  for (std::uint64_t seed = 0; seed < 100; ++seed) {
    const ParamMap p = pbt.explore(donor, seed);
    ASSERT_EQ(p.size(), donor.size());
    EXPECT_EQ(p.at("activation"), donor.at("activation"));
    const double lr = std::get<double>(p.at("lr"));
    EXPECT_TRUE(lr == 0.01 * 0.8 || lr == 0.01 * 1.2) << lr;
    lrs.insert(lr);
    const auto& schedule = std::get<std::string>(p.at("lr_schedule"));
    EXPECT_TRUE(schedule == "constant" || schedule == "cosine") << schedule;
    // 2 * 0.8 and 2 * 1.2 both round back to 2, so it moves by one either way.
    const std::int64_t batch = std::get<std::int64_t>(p.at("batch_size"));
    EXPECT_TRUE(batch == 1 || batch == 3) << batch;

    const ParamMap q = pbt.explore(at_the_top, seed);
    const double top_lr = std::get<double>(q.at("lr"));
    EXPECT_TRUE(top_lr == 0.09 * 0.8 || top_lr == std::nextafter(1e-1, 1e-4)) << top_lr;
    top_lrs.insert(top_lr);
    const auto& top_schedule = std::get<std::string>(q.at("lr_schedule"));
    EXPECT_TRUE(top_schedule == "step" || top_schedule == "cosine") << top_schedule;
    const std::int64_t top_batch = std::get<std::int64_t>(q.at("batch_size"));
    EXPECT_TRUE(top_batch == 32 || top_batch == 40) << top_batch;
  }
  // Both directions are drawn.
  EXPECT_EQ(lrs.size(), 2u);
  EXPECT_EQ(top_lrs.size(), 2u);
}

}  // namespace
}  // namespace trellis::coordinator
