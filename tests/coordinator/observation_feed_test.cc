// The feed that makes proposals a function of the spec and the seed: exactly the first results
// of the trials below k - lag, whatever order results came in and however many groups ran.
// The parallel sweeps here are simulated in-process (no sockets): G groups, trial lengths drawn
// from a timing seed, every trial stopping twice (a first rung, then a later result), so the
// order in which results reach the coordinator differs from run to run.

#include "coordinator/search/observation_feed.h"

#include <gtest/gtest.h>

#include <cmath>
#include <queue>
#include <random>
#include <set>
#include <tuple>

#include "coordinator/search/random_searcher.h"
#include "coordinator/search/tpe_searcher.h"

namespace trellis::coordinator {
namespace {

std::vector<SearchParam> plane() {
  return {{"lr", {Domain::Kind::kFloat, -2, 2, {}}, {}},
          {"momentum", {Domain::Kind::kFloat, -2, 2, {}}, {}}};
}

double at(const ParamMap& p, const char* name) { return std::get<double>(p.at(name)); }
double loss_of(const ParamMap& p) {
  return std::pow(at(p, "lr") - 0.7, 2) + std::pow(at(p, "momentum") + 0.3, 2);
}

// Records what it was shown; proposes nothing of interest.
class RecordingSearcher : public Searcher {
 public:
  std::optional<ParamMap> propose(std::int32_t) override { return ParamMap{}; }
  void observe(std::int32_t number, const ParamMap&, double loss) override {
    seen[number] = loss;
  }
  bool uses_observations(std::int32_t number) const override { return number >= startup; }
  std::int32_t startup = 0;  // proposals below it are drawn without results
  std::map<std::int32_t, double> seen;
};

struct Sweep {
  std::vector<ParamMap> proposals;  // by trial number
  int waits = 0;                    // times a free group found the next proposal not ready
};

// `trials` TPE proposals made by `groups` groups. Each trial first stops after a random time
// (its first result: loss_of), then trains on and stops again later with another value, which
// must not reach the searcher. With `bypass`, results go straight to the searcher as they come,
// as a coordinator without the feed would do.
Sweep simulate(int groups, int trials, int lag, std::uint64_t timing_seed, bool bypass = false) {
  TpeOptions options;
  options.startup_trials = 4;
  TpeSearcher searcher(plane(), 11, options);
  ObservationFeed feed(lag);
  std::mt19937_64 timing(timing_seed);
  std::uniform_real_distribution<double> length(1.0, 6.0);
  struct Stop {
    double at;
    std::int32_t number;
    bool last;
    int group;
    bool operator>(const Stop& o) const { return std::tie(at, number) > std::tie(o.at, o.number); }
  };
  std::priority_queue<Stop, std::vector<Stop>, std::greater<>> stops;
  std::vector<bool> busy(groups, false);
  Sweep out;
  double now = 0;
  std::int32_t next = 0;
  for (;;) {
    for (int g = 0; g < groups && next < trials; ++g) {
      if (busy[g]) continue;
      if (!bypass && !feed.ready(next, searcher)) {
        ++out.waits;
        break;
      }
      feed.release(next, &searcher);
      out.proposals.push_back(*searcher.propose(next));
      const double first = now + length(timing);
      stops.push({first, next, false, g});
      stops.push({first + length(timing), next, true, g});
      busy[g] = true;
      ++next;
    }
    if (stops.empty()) break;
    const Stop s = stops.top();
    stops.pop();
    now = s.at;
    const ParamMap& params = out.proposals[s.number];
    // The later result is better and arrives at a time that depends on the timing seed.
    const double loss = s.last ? loss_of(params) * 0.25 : loss_of(params);
    if (bypass) {
      searcher.observe(s.number, params, loss);
    } else {
      feed.stopped(s.number, params, loss);
    }
    if (s.last) busy[s.group] = false;
  }
  EXPECT_EQ(out.proposals.size(), static_cast<std::size_t>(trials)) << "the sweep deadlocked";
  return out;
}

class ParallelSweep : public ::testing::TestWithParam<std::tuple<int, int>> {};

TEST_P(ParallelSweep, ProposalsAreThoseOfOneGroupWhateverTheTiming) {
  const auto [groups, lag] = GetParam();
  constexpr int kTrials = 24;
  const Sweep alone = simulate(1, kTrials, lag, 1);
  for (std::uint64_t timing = 1; timing <= 4; ++timing) {
    const Sweep parallel = simulate(groups, kTrials, lag, timing);
    for (int k = 0; k < kTrials; ++k)
      EXPECT_EQ(parallel.proposals[k], alone.proposals[k])
          << "trial " << k << ", " << groups << " groups, lag " << lag << ", timing " << timing;
  }
}

INSTANTIATE_TEST_SUITE_P(GroupsAndLags, ParallelSweep,
                         ::testing::Combine(::testing::Values(2, 3, 5), ::testing::Values(0, 1, 4)),
                         [](const auto& info) {
                           return std::to_string(std::get<0>(info.param)) + "Groups_Lag" +
                                  std::to_string(std::get<1>(info.param));
                         });

// The property above is not a given: results fed as they arrive make the same sweep's
// proposals depend on the timing.
TEST(ObservationFeed, WithoutItParallelProposalsDependOnTiming) {
  constexpr int kTrials = 24;
  const Sweep alone = simulate(1, kTrials, 0, 1, /*bypass=*/true);
  int differing = 0;
  for (std::uint64_t timing = 1; timing <= 4; ++timing)
    differing += simulate(3, kTrials, 0, timing, /*bypass=*/true).proposals != alone.proposals;
  EXPECT_GT(differing, 0);
}

TEST(ObservationFeed, AProposalSeesExactlyTheFirstResultsBelowItsLag) {
  RecordingSearcher searcher;
  ObservationFeed feed(2);
  feed.stopped(3, {}, 30.0);  // ahead of its turn
  feed.stopped(1, {}, 10.0);
  EXPECT_FALSE(feed.ready(3, searcher)) << "trial 0 has not stopped";
  EXPECT_EQ(feed.first_unstopped(), 0);
  feed.stopped(0, {}, 0.5);
  feed.stopped(0, {}, 0.1);  // a later result of the same trial: ignored
  EXPECT_TRUE(feed.ready(3, searcher));
  EXPECT_TRUE(feed.ready(4, searcher));
  EXPECT_FALSE(feed.ready(5, searcher)) << "trial 2 has not stopped";
  EXPECT_EQ(feed.first_unstopped(), 2);
  feed.release(3, &searcher);
  EXPECT_EQ(searcher.seen, (std::map<std::int32_t, double>{{0, 0.5}}));
  feed.stopped(2, {}, std::nullopt);  // failed: stopped, shows nothing
  EXPECT_EQ(feed.first_unstopped(), 4);
  EXPECT_TRUE(feed.ready(6, searcher));
  feed.release(6, &searcher);
  EXPECT_EQ(searcher.seen, (std::map<std::int32_t, double>{{0, 0.5}, {1, 10.0}, {3, 30.0}}));
}

TEST(ObservationFeed, AResultThatCameAfterAStartupDrawStillReachesLaterProposals) {
  RecordingSearcher searcher;
  searcher.startup = 2;
  ObservationFeed feed(0);
  ASSERT_TRUE(feed.ready(1, searcher));
  feed.release(1, &searcher);  // trial 0 is still training
  feed.stopped(1, {}, 2.5);
  feed.stopped(0, {}, 1.5);
  ASSERT_TRUE(feed.ready(2, searcher));
  feed.release(2, &searcher);
  EXPECT_EQ(searcher.seen, (std::map<std::int32_t, double>{{0, 1.5}, {1, 2.5}}));
}

TEST(ObservationFeed, AProposalThatUsesNoResultsNeverWaits) {
  ObservationFeed feed(0);
  RandomSearcher random(plane(), 3);
  EXPECT_TRUE(feed.ready(50, random));
  TpeOptions options;
  options.startup_trials = 5;
  TpeSearcher tpe(plane(), 3, options);
  EXPECT_TRUE(feed.ready(4, tpe)) << "a startup draw is random";
  EXPECT_FALSE(feed.ready(5, tpe));
}

}  // namespace
}  // namespace trellis::coordinator
