// The trial state machine alone: decisions for free groups, the states a trial goes through,
// the budgets, and a restart's replay reaching the same decisions. No store, no socket, no
// process: the real searchers and schedulers, driven event by event.

#include "coordinator/trial_book.h"

#include <gtest/gtest.h>

#include "common/seed.h"

namespace trellis::coordinator {
namespace {

SweepSpec spec_of(const std::string& algorithm, int trials, const std::string& scheduler = "fifo") {
  SweepSpec spec;
  spec.name = "book";
  spec.algorithm = algorithm;
  spec.seed = 17;
  spec.trials = trials;
  spec.metric = "val_loss";
  spec.mode = "min";
  spec.space = {{"lr", {Domain::Kind::kLogFloat, 1e-4, 1e-1, {}}, {}}};
  spec.fixed = {{"epochs", 3.0}};
  spec.scheduler.type = scheduler;
  return spec;
}

std::unique_ptr<TrialBook> make_book(const SweepSpec& spec) {
  SchedulerOptions options;
  options.spec = spec.scheduler;
  options.max_epochs = 3;
  options.metric = spec.metric;
  options.maximize = false;
  options.space = spec.space;
  options.seed = spec.seed;
  std::unique_ptr<Scheduler> scheduler;
  EXPECT_TRUE(make_scheduler(options, &scheduler).ok());
  std::unique_ptr<Searcher> searcher;
  EXPECT_TRUE(make_searcher(spec.algorithm, spec.space, spec.seed, &searcher).ok());
  return std::make_unique<TrialBook>(spec, options, std::move(searcher), std::move(scheduler));
}

Decision next(TrialBook& book) {
  Decision d;
  const Status s = book.next(&d);
  EXPECT_TRUE(s.ok()) << s.message();
  return d;
}

// Proposes, stores (as id 100 + number) and starts the next new trial; its id.
std::int64_t start_new(TrialBook& book) {
  const Decision d = next(book);
  EXPECT_EQ(d.kind, Decision::Kind::kNew);
  const std::int64_t id = 100 + d.number;
  book.proposed(id, d);
  book.started(id);
  return id;
}

// A Done after reports of losses `losses` (epochs 1, 2, ...).
void finish(TrialBook& book, std::int64_t id, const std::vector<double>& losses, bool ok = true) {
  for (std::size_t e = 0; e < losses.size(); ++e)
    (void)book.reported(id, static_cast<std::int32_t>(e + 1), losses[e]);
  book.attempt_ended(id, book.end_of(id, ok, ok ? "" : "diverged"), std::nullopt);
}

TEST(TrialBook, NewTrialsTakeTheSearchersParametersTheFixedOnesAndADerivedSeed) {
  const SweepSpec spec = spec_of("random", 2);
  auto book = make_book(spec);
  const Decision d = next(*book);
  ASSERT_EQ(d.kind, Decision::Kind::kNew);
  EXPECT_EQ(d.number, 0);
  EXPECT_EQ(d.seed, derive_seed(17, {0}));
  EXPECT_EQ(std::get<double>(d.params.at("epochs")), 3.0);
  EXPECT_EQ(d.params.count("lr"), 1u);
  EXPECT_EQ(d.job.kind, Job::Kind::kNew);
}

TEST(TrialBook, ATrialGoesFromProposedToCompletedAndTheSweepFinishes) {
  auto book = make_book(spec_of("random", 2));
  const std::int64_t a = start_new(*book);
  const std::int64_t b = start_new(*book);
  EXPECT_EQ(next(*book).kind, Decision::Kind::kWait) << "the budget of 2 is proposed";
  EXPECT_EQ(book->find(a)->state, TrialState::kRunning);
  EXPECT_EQ(book->progress().running, 2);
  finish(*book, a, {0.5, 0.4, 0.3});
  EXPECT_EQ(book->find(a), nullptr) << "an ended trial is forgotten";
  EXPECT_EQ(next(*book).kind, Decision::Kind::kWait);
  finish(*book, b, {0.9, 0.8}, /*ok=*/false);
  EXPECT_EQ(next(*book).kind, Decision::Kind::kFinished);
  EXPECT_TRUE(book->finished());
  EXPECT_EQ(book->progress().completed, 1);
  EXPECT_EQ(book->progress().failed, 1);
  EXPECT_EQ(book->progress().running, 0);
  EXPECT_EQ(book->progress().epochs_assigned, 6);
}

TEST(TrialBook, ARequeuedTrialRunsFirstAndOneLostTooOftenFails) {
  auto book = make_book(spec_of("random", 3));
  const std::int64_t a = start_new(*book);
  const std::int64_t b = start_new(*book);
  book->requeued(b, /*failed=*/false);
  EXPECT_EQ(book->find(b)->state, TrialState::kPending);
  const Decision again = next(*book);
  ASSERT_EQ(again.kind, Decision::Kind::kStart);
  EXPECT_EQ(again.trial, b);
  book->started(b);
  book->requeued(a, /*failed=*/true);
  EXPECT_EQ(book->find(a), nullptr);
  EXPECT_EQ(book->progress().failed, 1);
  EXPECT_EQ(next(*book).kind, Decision::Kind::kNew) << "the third trial is still to come";
}

TEST(TrialBook, TheConcurrencyLimitAndTheEpochBudgetHoldBackNewWork) {
  SweepSpec spec = spec_of("random", 10);
  spec.max_concurrent_trials = 1;
  spec.budget_epochs = 7;  // two trials of 3 epochs fit, a third does not
  auto book = make_book(spec);
  const std::int64_t a = start_new(*book);
  EXPECT_EQ(next(*book).kind, Decision::Kind::kWait) << "one trial at a time";
  finish(*book, a, {0.5, 0.4, 0.3});
  const std::int64_t b = start_new(*book);
  finish(*book, b, {0.5, 0.4, 0.3});
  EXPECT_EQ(next(*book).kind, Decision::Kind::kFinished);
  EXPECT_EQ(book->progress().proposed, 2);
  EXPECT_EQ(book->progress().epochs_assigned, 6);
}

TEST(TrialBook, AnAttemptEndsPausedPrunedCompletedOrFailedForItsReason) {
  auto book = make_book(spec_of("random", 4, "asha"));
  const std::int64_t id = start_new(*book);
  EXPECT_EQ(book->find(id)->target_epoch, 1) << "ASHA's first rung";
  const AttemptEnd paused = book->end_of(id, true, "");
  EXPECT_EQ(paused.state, TrialState::kPaused);
  EXPECT_EQ(paused.epoch, 1);
  EXPECT_EQ(paused.why, "paused after epoch 1 for the asha scheduler");
  const AttemptEnd failed = book->end_of(id, false, "loss is nan");
  EXPECT_EQ(failed.state, TrialState::kFailed);
  EXPECT_EQ(failed.why, "loss is nan");

  auto fifo = make_book(spec_of("random", 1));
  const std::int64_t whole = start_new(*fifo);
  EXPECT_EQ(fifo->end_of(whole, true, "").state, TrialState::kCompleted);
}

// ASHA: three trials paused at the first rung; the best is promoted, and the promotion is a
// continuation of the same trial, trained on to the next rung, that then completes.
TEST(TrialBook, AnAshaPromotionContinuesThePausedTrialToItsNextRung) {
  SweepSpec spec = spec_of("random", 3, "asha");
  spec.scheduler.min_epochs = 1;
  spec.scheduler.reduction_factor = 3;
  auto book = make_book(spec);
  const double losses[] = {0.7, 0.2, 0.9};
  std::vector<std::int64_t> ids;
  for (double loss : losses) {
    const std::int64_t id = start_new(*book);
    finish(*book, id, {loss});
    EXPECT_EQ(book->find(id)->state, TrialState::kPaused);
    ids.push_back(id);
  }
  EXPECT_EQ(book->progress().paused, 3);
  const Decision promote = next(*book);
  ASSERT_EQ(promote.kind, Decision::Kind::kContinue);
  EXPECT_EQ(promote.trial, ids[1]) << "the lowest loss";
  EXPECT_EQ(promote.job.until_epoch, 3);
  book->continued(promote.job);
  EXPECT_EQ(book->find(ids[1])->state, TrialState::kPending);
  EXPECT_EQ(book->progress().paused, 2);
  book->started(ids[1]);
  finish(*book, ids[1], {0.2, 0.15, 0.1});
  EXPECT_EQ(book->progress().completed, 1);
  EXPECT_EQ(book->progress().epochs_assigned, 3 + 2);
}

TEST(TrialBook, AStopReasonFromTheSchedulerPrunesTheTrialAtItsDone) {
  SweepSpec spec = spec_of("random", 4, "median");
  spec.scheduler.min_epochs = 1;
  spec.scheduler.min_trials = 2;
  auto book = make_book(spec);
  const std::int64_t a = start_new(*book);
  const std::int64_t b = start_new(*book);
  const std::int64_t c = start_new(*book);
  finish(*book, a, {0.1, 0.1, 0.1});
  finish(*book, b, {0.2, 0.2, 0.2});
  const std::string reason = book->reported(c, 1, 5.0);
  EXPECT_FALSE(reason.empty()) << "worse than the median at epoch 1";
  EXPECT_TRUE(book->reported(c, 2, 6.0).empty()) << "a trial is stopped once";
  const AttemptEnd end = book->end_of(c, true, "");
  EXPECT_EQ(end.state, TrialState::kPruned);
  EXPECT_EQ(end.why, reason);
}

// With TPE learning from results, a proposal waits for the results below its lag.
TEST(TrialBook, AProposalThatNeedsALateResultMakesTheGroupWait) {
  SweepSpec spec = spec_of("tpe", 20);
  spec.lag = 0;
  auto book = make_book(spec);
  std::vector<std::int64_t> ids;
  for (int k = 0; k < 10; ++k) ids.push_back(start_new(*book));  // TPE's startup draws
  const Decision wait = next(*book);
  EXPECT_EQ(wait.kind, Decision::Kind::kWaitForResults);
  EXPECT_EQ(wait.number, 10);
  for (std::size_t k = 0; k < ids.size(); ++k)
    finish(*book, ids[k], {1.0 + static_cast<double>(k), 0.5, 0.25});
  EXPECT_EQ(next(*book).kind, Decision::Kind::kNew);
}

// Runs one decision of `book` to its end: the job is entered, started, reports a loss per
// epoch (a function of the trial and the epoch) and ends. `replay`, when given, hears the same
// story the way a restarted coordinator does (Coordinator::replay_story): through apply_*.
// False when the decision was not work.
bool run_one(TrialBook& book, const Decision& d, TrialBook* replay,
             std::map<std::int64_t, TrialBook::Trial>* ended) {
  std::int64_t id = d.trial;
  std::int32_t from = 0;
  if (d.kind == Decision::Kind::kNew) {
    id = 100 + d.number;
    book.proposed(id, d);
    if (replay != nullptr) {
      replay->apply_assigned(id, d.job, d.params);
      replay->add_epochs_assigned(book.effective_target(d.params, d.job.until_epoch));
    }
  } else if (d.kind == Decision::Kind::kContinue) {
    const TrialBook::Trial& paused = *book.find(id);
    from = book.effective_target(paused.params, paused.target_epoch);
    book.continued(d.job);
    const TrialBook::Trial& t = *book.find(id);
    if (replay != nullptr) {
      replay->apply_assigned(id, d.job, t.params);
      replay->add_epochs_assigned(book.effective_target(t.params, d.job.until_epoch) - from);
    }
  } else {
    return false;
  }
  book.started(id);
  const TrialBook::Trial t = *book.find(id);
  const std::int32_t reached = book.effective_target(t.params, t.target_epoch);
  double loss = 0;
  for (std::int32_t epoch = from + 1; epoch <= reached; ++epoch) {
    loss = 0.1 * static_cast<double>((id * 7 + epoch * 3) % 11) / epoch;
    (void)book.reported(id, epoch, loss);
    if (replay != nullptr) (void)replay->apply_report(id, epoch, loss);
  }
  const AttemptEnd end = book.end_of(id, true, "");
  book.attempt_ended(id, end, std::nullopt);
  if (replay != nullptr) {
    if (end.state == TrialState::kPaused) {
      replay->apply_paused(id, t.number, t.params, end.epoch, loss);
    } else {
      replay->apply_ended(id, t.number, t.params, end.state == TrialState::kFailed, loss);
    }
  }
  if (end.state != TrialState::kPaused) {
    TrialBook::Trial done = t;
    done.state = end.state;
    (*ended)[id] = done;
  }
  return true;
}

// A restarted coordinator hears the story through apply_* and then restores each trial from
// the store: from then on it decides exactly as the book that lived through it.
class ReplayedBook : public ::testing::TestWithParam<const char*> {};

TEST_P(ReplayedBook, DecidesAsTheLiveOneToTheEndOfTheSweep) {
  SweepSpec spec = spec_of("tpe", 20, GetParam());
  spec.lag = 1;
  spec.fixed = {{"epochs", 9.0}};
  auto live = make_book(spec);
  auto replayed = make_book(spec);
  std::map<std::int64_t, TrialBook::Trial> ended;
  for (int step = 0; step < 14; ++step)
    ASSERT_TRUE(run_one(*live, next(*live), replayed.get(), &ended)) << "step " << step;
  std::map<std::int64_t, TrialBook::Trial> all = ended;  // what the store lists, by id
  for (const auto& [id, t] : live->trials()) all[id] = t;
  for (const auto& [id, t] : all) replayed->restore(id, t);
  replayed->restored();
  EXPECT_EQ(replayed->progress().proposed, live->progress().proposed);
  EXPECT_EQ(replayed->progress().paused, live->progress().paused);
  EXPECT_EQ(replayed->progress().completed, live->progress().completed);
  EXPECT_EQ(replayed->progress().epochs_assigned, live->progress().epochs_assigned);
  std::map<std::int64_t, TrialBook::Trial> ignored;
  int decisions = 0;
  while (!live->finished()) {
    Decision a, b;
    ASSERT_TRUE(live->next(&a).ok());
    ASSERT_TRUE(replayed->next(&b).ok());
    ASSERT_EQ(a.kind, b.kind) << "decision " << decisions;
    EXPECT_EQ(a.trial, b.trial) << "decision " << decisions;
    EXPECT_EQ(a.number, b.number) << "decision " << decisions;
    EXPECT_EQ(a.params, b.params) << "decision " << decisions;
    EXPECT_EQ(a.job.until_epoch, b.job.until_epoch) << "decision " << decisions;
    EXPECT_EQ(a.job.params, b.job.params) << "decision " << decisions;
    if (a.kind == Decision::Kind::kFinished) break;
    ++decisions;
    ASSERT_TRUE(run_one(*live, a, nullptr, &ignored)) << "decision " << decisions;
    ASSERT_TRUE(run_one(*replayed, b, nullptr, &ignored)) << "decision " << decisions;
  }
  EXPECT_GT(decisions, 2) << "the sweep was over before the comparison";
  EXPECT_EQ(replayed->progress().completed, live->progress().completed);
}

INSTANTIATE_TEST_SUITE_P(Schedulers, ReplayedBook, ::testing::Values("asha", "hyperband", "pbt", "fifo"));

}  // namespace
}  // namespace trellis::coordinator
