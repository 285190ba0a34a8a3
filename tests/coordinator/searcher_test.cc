// The four searchers: grid coverage, Sobol's known points and net property, TPE against random
// search on standard functions, and every searcher's determinism under a restart.

#include "coordinator/search/searcher.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <set>

#include "bench/hpo_functions.h"
#include "common/search_grid.h"
#include "common/sweep_spec.h"
#include "coordinator/search/sobol_searcher.h"

namespace trellis::coordinator {
namespace {

std::unique_ptr<Searcher> make(const std::string& algorithm, const std::vector<SearchParam>& space,
                               std::uint64_t seed = 7) {
  std::unique_ptr<Searcher> s;
  const Status st = make_searcher(algorithm, space, seed, &s);
  EXPECT_TRUE(st.ok()) << st.message();
  return s;
}

Domain points(Domain d, int n) {
  d.grid_points = n;
  return d;
}

std::string describe(const ParamMap& params) {
  std::string out;
  for (const auto& [k, v] : params) out += k + "=" + to_string(v) + " ";
  return out;
}

// A space with every kind of domain and two parameters that exist only under sgd.
std::vector<SearchParam> mixed_space() {
  const std::vector<Condition> sgd = {{"optimizer", {std::string("sgd")}}};
  return {
      {"momentum", points({Domain::Kind::kFloat, 0.5, 0.9, {}}, 3), sgd},
      {"optimizer", {Domain::Kind::kCategorical, 0, 0,
                     {std::string("sgd"), std::string("adam"), std::string("adamw")}}, {}},
      {"lr", points({Domain::Kind::kLogFloat, 1e-4, 1e-1, {}}, 4), {}},
      {"hidden_units", {Domain::Kind::kInt, 1, 3, {}}, {}},
      {"nesterov",
       {Domain::Kind::kCategorical, 0, 0, {std::string("true"), std::string("false")}},
       sgd},
  };
}

bool sgd(const ParamMap& p) { return std::get<std::string>(p.at("optimizer")) == "sgd"; }

TEST(Searchers, NamesAreTheSpecsAlgorithmsAndUnknownOnesAreRefused) {
  EXPECT_EQ(searcher_names(), search_algorithms());
  for (const auto& name : searcher_names()) EXPECT_NE(make(name, mixed_space()), nullptr) << name;
  std::unique_ptr<Searcher> s;
  EXPECT_FALSE(make_searcher("bayes", mixed_space(), 1, &s).ok());
  auto bad = mixed_space();
  bad[0].when[0].parent = "optimiser";
  const Status st = make_searcher("random", bad, 1, &s);
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find("'momentum'"), std::string::npos) << st.message();
}

TEST(GridSearcher, CoversTheGridOnceWithInactiveParametersCollapsed) {
  const auto space = mixed_space();
  const auto s = make("grid", space);
  // Under sgd: momentum x nesterov x lr x hidden_units; under the other two: lr x hidden_units.
  const std::int64_t shared = 4 * 3;
  const std::int64_t expected = 3 * 2 * shared + 2 * shared;
  ASSERT_EQ(s->size(), expected);
  std::set<std::string> seen;
  for (std::int32_t n = 0; n < expected; ++n) {
    const auto p = s->propose(n);
    ASSERT_TRUE(p.has_value()) << n;
    EXPECT_EQ(p->count("momentum"), sgd(*p) ? 1u : 0u) << describe(*p);
    EXPECT_EQ(p->count("nesterov"), sgd(*p) ? 1u : 0u) << describe(*p);
    for (const SearchParam& param : space) {
      if (!p->count(param.name)) continue;
      const auto values = grid_values(param.domain);
      EXPECT_NE(std::find(values.begin(), values.end(), p->at(param.name)), values.end())
          << describe(*p);
    }
    EXPECT_TRUE(seen.insert(describe(*p)).second) << "twice: " << describe(*p);
  }
  // Distinct, each from the grid and as many as the grid has: every point exactly once.
  EXPECT_EQ(static_cast<std::int64_t>(seen.size()), expected);
  EXPECT_FALSE(s->propose(static_cast<std::int32_t>(expected)).has_value());
  EXPECT_FALSE(s->propose(static_cast<std::int32_t>(expected) + 5).has_value());
}

TEST(GridSearcher, RefusesAFloatWithoutPointsNamingIt) {
  auto space = mixed_space();
  space[2].domain.grid_points = 0;
  std::unique_ptr<Searcher> s;
  const Status st = make_searcher("grid", space, 1, &s);
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find("'lr'"), std::string::npos) << st.message();
}

// Sobol over `dims` floats on [0, 1), where domain_value(u) = u: the sequence itself.
std::vector<SearchParam> unit_cube(int dims) {
  std::vector<SearchParam> space;
  for (int d = 0; d < dims; ++d)
    space.push_back({"x" + std::to_string(d), {Domain::Kind::kFloat, 0, 1, {}}, {}});
  return space;
}

std::vector<std::vector<double>> sobol_points(SobolSearcher& s, int dims, int count) {
  std::vector<std::vector<double>> out;
  for (int n = 0; n < count; ++n) {
    const ParamMap p = *s.propose(n);
    std::vector<double> x;
    for (int d = 0; d < dims; ++d) x.push_back(std::get<double>(p.at("x" + std::to_string(d))));
    out.push_back(std::move(x));
  }
  return out;
}

TEST(SobolSearcher, UnscrambledStartsWithTheKnownPoints) {
  SobolSearcher s(unit_cube(4), 1, /*scramble=*/false);
  const auto x = sobol_points(s, 4, 8);
  // Dimensions 1 and 2, and 3 and 4 worked out by hand from Joe & Kuo's (s, a, m): (2, 1, 1 3)
  // and (3, 1, 1 3 1).
  const double known[4][8] = {{0, 0.5, 0.75, 0.25, 0.375, 0.875, 0.625, 0.125},
                              {0, 0.5, 0.25, 0.75, 0.375, 0.875, 0.125, 0.625},
                              {0, 0.5, 0.25, 0.75, 0.625, 0.125, 0.875, 0.375},
                              {0, 0.5, 0.25, 0.75, 0.875, 0.375, 0.625, 0.125}};
  for (int d = 0; d < 4; ++d)
    for (int n = 0; n < 8; ++n)
      EXPECT_EQ(x[n][d], known[d][n]) << "dimension " << d + 1 << " point " << n;
}

// The first 2^k points put exactly one point in each of the 2^k intervals [j/2^k, (j+1)/2^k)
// of every dimension, and (dimensions 1 and 2 form a (0, 2)-sequence) in each of the 2^k
// boxes of every split 2^i x 2^(k-i) of the unit square.
void expect_net(const std::vector<std::vector<double>>& x, int k) {
  const std::size_t count = std::size_t{1} << k;
  for (std::size_t d = 0; d < x[0].size(); ++d) {
    std::set<std::int64_t> cells;
    for (std::size_t n = 0; n < count; ++n)
      cells.insert(static_cast<std::int64_t>(std::ldexp(x[n][d], k)));
    EXPECT_EQ(cells.size(), count) << "dimension " << d + 1 << ", 2^" << k << " points";
  }
  for (int i = 0; i <= k; ++i) {
    std::set<std::pair<std::int64_t, std::int64_t>> boxes;
    for (std::size_t n = 0; n < count; ++n)
      boxes.emplace(static_cast<std::int64_t>(std::ldexp(x[n][0], i)),
                    static_cast<std::int64_t>(std::ldexp(x[n][1], k - i)));
    EXPECT_EQ(boxes.size(), count) << "split 2^" << i << " x 2^" << k - i;
  }
}

TEST(SobolSearcher, ScrambledIsDeterministicPerSeedAndStaysANet) {
  constexpr int kDims = 21, kLog2 = 10;
  SobolSearcher plain(unit_cube(kDims), 3, false), a(unit_cube(kDims), 3), b(unit_cube(kDims), 3),
      other(unit_cube(kDims), 4);
  const auto xp = sobol_points(plain, kDims, 1 << kLog2), xa = sobol_points(a, kDims, 1 << kLog2),
             xb = sobol_points(b, kDims, 1 << kLog2), xo = sobol_points(other, kDims, 1 << kLog2);
  EXPECT_EQ(xa, xb);
  EXPECT_NE(xa, xo);
  EXPECT_NE(xa, xp);
  for (const auto& point : xa)
    for (double v : point) {
      EXPECT_GE(v, 0);
      EXPECT_LT(v, 1);
    }
  for (int k = 1; k <= kLog2; ++k) {
    expect_net(xp, k);
    expect_net(xa, k);
  }
}

TEST(SobolSearcher, DropsInactiveParameters) {
  const auto s = make("sobol", mixed_space());
  bool saw_sgd = false, saw_other = false;
  for (std::int32_t n = 0; n < 32; ++n) {
    const ParamMap p = *s->propose(n);
    (sgd(p) ? saw_sgd : saw_other) = true;
    EXPECT_EQ(p.count("momentum"), sgd(p) ? 1u : 0u) << describe(p);
  }
  EXPECT_TRUE(saw_sgd && saw_other);
}

// Runs `algorithm` for `trials` sequential trials on `fn` and returns the best value found.
double best_of(const std::string& algorithm, const bench::HpoFunction& fn, std::uint64_t seed,
               int trials) {
  std::vector<SearchParam> space;
  for (std::size_t d = 0; d < fn.bounds.size(); ++d)
    space.push_back({"x" + std::to_string(d),
                     {Domain::Kind::kFloat, fn.bounds[d][0], fn.bounds[d][1], {}},
                     {}});
  const auto s = make(algorithm, space, seed);
  double best = INFINITY;
  for (std::int32_t n = 0; n < trials; ++n) {
    const ParamMap p = *s->propose(n);
    std::vector<double> x;
    for (std::size_t d = 0; d < fn.bounds.size(); ++d)
      x.push_back(std::get<double>(p.at("x" + std::to_string(d))));
    const double y = fn.f(x);
    best = std::min(best, y);
    s->observe(n, p, y);
  }
  return best;
}

// On every function, over 20 seeds of 50 trials, TPE's median best is lower than random
// search's and TPE does better on most seeds. Both searchers draw their first 10 trials from the
// same seeded stream, so each seed is a paired comparison. Measured at this budget (median best,
// TPE vs random; seeds where TPE is lower): branin 0.450 vs 1.224, 19/20; hartmann6 -2.748 vs
// -1.889, 16/20; rosenbrock4 90.7 vs 3070, 20/20. Over 100 seeds: 85, 91 and 98 of 100.
TEST(TpeSearcher, FindsLowerValuesThanRandomSearch) {
  constexpr int kSeeds = 20, kTrials = 50;
  for (const auto& fn : bench::hpo_functions()) {
    std::vector<double> tpe, random;
    int tpe_lower = 0;
    for (std::uint64_t seed = 0; seed < kSeeds; ++seed) {
      tpe.push_back(best_of("tpe", fn, seed, kTrials));
      random.push_back(best_of("random", fn, seed, kTrials));
      if (tpe.back() < random.back()) ++tpe_lower;
    }
    std::sort(tpe.begin(), tpe.end());
    std::sort(random.begin(), random.end());
    // Median over seeds, as the regret's spread is wide.
    EXPECT_LT(tpe[kSeeds / 2 - 1] + tpe[kSeeds / 2], random[kSeeds / 2 - 1] + random[kSeeds / 2])
        << fn.name;
    EXPECT_GT(tpe_lower, kSeeds / 2) << fn.name;
  }
}

TEST(TpeSearcher, ProposesEveryKindInsideItsDomainAndHonoursConditions) {
  const auto space = mixed_space();
  const auto s = make("tpe", space);
  bool saw_sgd = false, saw_other = false;
  for (std::int32_t n = 0; n < 40; ++n) {
    const ParamMap p = *s->propose(n);
    (sgd(p) ? saw_sgd : saw_other) = true;
    EXPECT_EQ(p.count("momentum"), sgd(p) ? 1u : 0u) << describe(p);
    EXPECT_EQ(p.count("nesterov"), sgd(p) ? 1u : 0u) << describe(p);
    const double lr = std::get<double>(p.at("lr"));
    EXPECT_TRUE(lr >= 1e-4 && lr < 1e-1) << lr;
    const std::int64_t units = std::get<std::int64_t>(p.at("hidden_units"));
    EXPECT_TRUE(units >= 1 && units <= 3) << units;
    if (sgd(p)) {
      const double m = std::get<double>(p.at("momentum"));
      EXPECT_TRUE(m >= 0.5 && m < 0.9) << m;
    }
    // A loss that prefers sgd with high momentum and a small lr: the model has to learn from
    // the sgd trials alone for momentum.
    const double loss = std::log10(lr) + (sgd(p) ? -std::get<double>(p.at("momentum")) : 0);
    s->observe(n, p, loss);
  }
  EXPECT_TRUE(saw_sgd && saw_other);
}

// Two searchers with the same seed, given the same results in different orders, propose the
// same trials: what a coordinator restarted on its store relies on.
TEST(Searchers, SameSeedAndResultsInAnyOrderGiveTheSameProposals) {
  for (const std::string& algorithm : searcher_names()) {
    const auto first = make(algorithm, mixed_space(), 11);
    std::vector<std::pair<std::int32_t, ParamMap>> done;
    for (std::int32_t n = 0; n < 24; ++n) {
      const ParamMap p = *first->propose(n);
      const double loss = std::get<double>(p.at("lr")) * static_cast<double>(
                              std::get<std::int64_t>(p.at("hidden_units")));
      first->observe(n, p, loss);
      done.emplace_back(n, p);
    }
    const auto restarted = make(algorithm, mixed_space(), 11);
    std::reverse(done.begin(), done.end());
    std::stable_partition(done.begin(), done.end(), [](const auto& d) { return d.first % 3 == 0; });
    for (const auto& [n, p] : done) {
      const double loss = std::get<double>(p.at("lr")) * static_cast<double>(
                              std::get<std::int64_t>(p.at("hidden_units")));
      restarted->observe(n, p, loss);
    }
    for (std::int32_t n = 24; n < 30; ++n) {
      const auto a = first->propose(n), b = restarted->propose(n);
      ASSERT_EQ(a.has_value(), b.has_value()) << algorithm;
      if (a) {
        EXPECT_EQ(*a, *b) << algorithm << " trial " << n;
      }
    }
    // Nor on which trials were asked for before it.
    const auto fresh = make(algorithm, mixed_space(), 11);
    const auto busy = make(algorithm, mixed_space(), 11);
    for (std::int32_t n = 0; n < 10; ++n) (void)busy->propose(n);
    EXPECT_EQ(fresh->propose(5), busy->propose(5)) << algorithm;
  }
}

TEST(Searchers, TpeProposalsFollowTheResults) {
  // Same seed, different results: past the startup trials the proposals differ, unlike the
  // searchers that ignore results.
  const auto a = make("tpe", mixed_space(), 2), b = make("tpe", mixed_space(), 2);
  for (std::int32_t n = 0; n < 12; ++n) {
    const ParamMap p = *a->propose(n);
    a->observe(n, p, std::get<double>(p.at("lr")));
    b->observe(n, p, -std::get<double>(p.at("lr")));
  }
  bool differ = false;
  for (std::int32_t n = 12; n < 16; ++n) differ |= *a->propose(n) != *b->propose(n);
  EXPECT_TRUE(differ);
}

}  // namespace
}  // namespace trellis::coordinator
