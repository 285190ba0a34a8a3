#include "common/sweep_spec.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <vector>

namespace trellis {
namespace {

// A valid spec whose dataset directory exists (the test's temp dir); `extra` is appended.
class SweepSpecTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("trellis_spec_" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::string spec(const std::string& search_extra = "", const std::string& tail = "") const {
    return "name: t\n"
           "dataset:\n"
           "  path: " + dir_.string() + "\n"
           "search:\n"
           "  seed: 3\n"
           "  trials: 4\n" + search_extra +
           "  space:\n"
           "    lr: {type: log_float, low: 1.0e-4, high: 1.0e-2}\n"
           "    hidden_units: {type: int, low: 16, high: 64}\n"
           "    activation: {type: categorical, values: [relu, tanh]}\n" + tail;
  }

  Status parse(const std::string& text, SweepSpec* out = nullptr) const {
    SweepSpec ignored;
    return parse_sweep_spec(text, "spec.yaml", out ? out : &ignored);
  }

  std::filesystem::path dir_;
};

TEST_F(SweepSpecTest, ParsesAValidSpec) {
  SweepSpec s;
  ASSERT_TRUE(parse(spec("", "train: {batch_size: 64, optimizer: sgd, momentum: 0.9}\n"
                             "resources: {ranks_per_trial: 2}\n"), &s).ok());
  EXPECT_EQ(s.name, "t");
  EXPECT_EQ(s.trials, 4);
  EXPECT_EQ(s.seed, 3u);
  EXPECT_EQ(s.ranks_per_trial, 2);
  EXPECT_EQ(s.metric, "val_acc");
  EXPECT_EQ(s.mode, "max");
  ASSERT_EQ(s.space.size(), 3u);
  EXPECT_EQ(s.space[0].domain.kind, Domain::Kind::kLogFloat);
  EXPECT_EQ(s.space[1].domain.kind, Domain::Kind::kInt);
  EXPECT_EQ(s.space[2].domain.choices.size(), 2u);
  EXPECT_EQ(std::get<std::int64_t>(s.fixed.at("batch_size")), 64);
  EXPECT_EQ(std::get<std::string>(s.fixed.at("optimizer")), "sgd");
  EXPECT_DOUBLE_EQ(std::get<double>(s.fixed.at("momentum")), 0.9);
  EXPECT_EQ(s.hash().size(), 16u);
}

TEST_F(SweepSpecTest, LossMetricDefaultsToMinimising) {
  SweepSpec s;
  ASSERT_TRUE(parse(spec() + "metric: val_loss\n", &s).ok());
  EXPECT_EQ(s.mode, "min");
}

void expect_error(const Status& s, std::initializer_list<const char*> parts) {
  ASSERT_FALSE(s.ok());
  for (const char* p : parts) EXPECT_NE(s.message().find(p), std::string::npos) << s.message();
}

TEST_F(SweepSpecTest, KeepModelsDefaultsToFiveAndTakesZeroOrMore) {
  SweepSpec s;
  ASSERT_TRUE(parse(spec(), &s).ok());
  EXPECT_EQ(s.keep_models, 5);
  ASSERT_TRUE(parse(spec() + "keep_models: 0\n", &s).ok());
  EXPECT_EQ(s.keep_models, 0);
  ASSERT_TRUE(parse(spec() + "keep_models: 12\n", &s).ok());
  EXPECT_EQ(s.keep_models, 12);
  expect_error(parse(spec() + "keep_models: -1\n"),
               {"spec.yaml:11:14", "keep_models", "integer >= 0", "-1"});
  expect_error(parse(spec() + "keep_model: 3\n"), {"did you mean 'keep_models'"});
}

TEST_F(SweepSpecTest, SyntaxErrorNamesFileAndLine) {
  expect_error(parse("name: t\nsearch: {trials: 3\n"), {"spec.yaml:", "YAML syntax error"});
}

TEST_F(SweepSpecTest, UnknownKeyNamesLineFieldAndSuggestion) {
  // spec() is 10 lines, so `epoch` sits on line 12.
  expect_error(parse(spec() + "train:\n  epoch: 3\n"),
               {"spec.yaml:12:3", "train", "unknown key 'epoch'", "did you mean 'epochs'"});
  expect_error(parse(spec() + "resorces: {ranks_per_trial: 2}\n"),
               {"spec.yaml:11:1", "did you mean 'resources'"});
}

TEST_F(SweepSpecTest, WrongTypeNamesLineAndField) {
  std::string text = spec();
  text.replace(text.find("trials: 4"), 9, "trials: eight");
  expect_error(parse(text), {"spec.yaml:6:11", "search.trials", "integer", "'eight'"});
  expect_error(parse(spec() + "train: {batch_size: 1.5}\n"), {"train.batch_size", "integer"});
  expect_error(parse(spec() + "train: {optimizer: rmsprop}\n"),
               {"spec.yaml:11:20", "train.optimizer", "must be one of", "'rmsprop'"});
}

TEST_F(SweepSpecTest, MissingDatasetNamesThePath) {
  std::string text = spec();
  text.replace(text.find(dir_.string()), dir_.string().size(), "/no/such/dataset");
  expect_error(parse(text), {"spec.yaml:3:9", "dataset.path", "'/no/such/dataset' does not exist"});
}

TEST_F(SweepSpecTest, CsvDatasetFilesAreCheckedAndFormatsNamed) {
  std::string text = spec();
  const std::string at = "dataset:\n";
  text.replace(text.find(at), at.size(), "dataset:\n  format: csv\n  label: y\n");
  expect_error(parse(text), {"dataset.train", "train.csv' does not exist"});
  std::ofstream(dir_ / "train.csv") << "y,a\n1,2\n";
  std::ofstream(dir_ / "test.csv") << "y,a\n1,2\n";
  SweepSpec s;
  ASSERT_TRUE(parse(text, &s).ok());
  EXPECT_EQ(s.dataset.format, "csv");
  EXPECT_EQ(s.dataset.label, "y");

  std::string parquet = spec();
  parquet.replace(parquet.find(at), at.size(), "dataset:\n  format: parket\n");
  expect_error(parse(parquet), {"spec.yaml:3:11", "dataset.format", "unknown value 'parket'",
                                "idx, csv, libsvm"});
}

// The dataset's task decides which metrics exist: regression reports rmse, mae and r2, never
// accuracy, and a spec without a metric optimises the task's own.
TEST_F(SweepSpecTest, TheMetricFollowsTheTask) {
  std::ofstream(dir_ / "train.csv") << "y,a\n1,2\n";
  std::ofstream(dir_ / "test.csv") << "y,a\n1,2\n";
  std::string text = spec();
  const std::string at = "dataset:\n";
  text.replace(text.find(at), at.size(), "dataset:\n  format: csv\n  label: y\n  task: regression\n");
  SweepSpec s;
  ASSERT_TRUE(parse(text, &s).ok());
  EXPECT_EQ(s.metric, "val_rmse");
  EXPECT_EQ(s.mode, "min");
  for (const char* name : {"val_rmse", "val_mae", "test_rmse", "test_mae"}) {
    ASSERT_TRUE(parse(text + "metric: " + name + "\n", &s).ok()) << name;
    EXPECT_EQ(s.mode, "min") << name;
  }
  ASSERT_TRUE(parse(text + "metric: val_r2\n", &s).ok());
  EXPECT_EQ(s.mode, "max");
  expect_error(parse(text + "metric: val_acc\n"),
               {"spec.yaml:", "metric.name", "'val_acc' is not reported for a regression dataset",
                "val_rmse, val_mae, val_r2"});
  expect_error(parse(spec() + "metric: val_r2\n"),
               {"metric.name", "'val_r2' is not reported for a classification dataset", "val_acc"});
  ASSERT_TRUE(parse(spec(), &s).ok());
  EXPECT_EQ(s.metric, "val_acc");
}

TEST_F(SweepSpecTest, TheSplitSeedIsTheExperimentsAndTestFractionNeedsOneFile) {
  std::ofstream(dir_ / "all.csv") << "y,a\n1,2\n";
  std::string text = spec();
  const std::string at = "dataset:\n";
  text.replace(text.find(at), at.size(),
               "dataset:\n  format: csv\n  label: y\n  train: all.csv\n  test_fraction: 0.25\n");
  SweepSpec s;
  ASSERT_TRUE(parse(text, &s).ok()) << parse(text).message();  // no test file is looked for
  EXPECT_DOUBLE_EQ(s.dataset.test_fraction, 0.25);
  EXPECT_EQ(s.dataset.split_seed, 3u) << "search.seed, the same for every trial";

  std::string both = text;
  both.replace(both.find("  test_fraction"), 0, "  test: all.csv\n");
  expect_error(parse(both), {"dataset.test_fraction", "names a test file ('all.csv')",
                             "either test or test_fraction, not both"});
  std::string idx = spec();
  idx.replace(idx.find(at), at.size(), "dataset:\n  test_fraction: 0.2\n");
  expect_error(parse(idx), {"dataset.test_fraction", "idx datasets come with their test files"});
  std::string range = text;
  range.replace(range.find("0.25"), 4, "1.5");
  expect_error(parse(range), {"dataset.test_fraction", "must be in (0, 1)"});
}

TEST_F(SweepSpecTest, MissingRequiredKeys) {
  expect_error(parse("name: t\nsearch: {trials: 2}\n"), {"missing required key 'dataset'"});
  expect_error(parse(spec("", "").replace(spec().find("  trials: 4\n"), 12, "")),
               {"missing required key 'trials'"});
}

TEST_F(SweepSpecTest, RefusesContradictoryDomainsNamingTheParameter) {
  const auto with_space = [&](const std::string& line) {
    return "name: t\ndataset: {path: " + dir_.string() + "}\nsearch:\n  trials: 2\n  space:\n" +
           line;
  };
  expect_error(parse(with_space("    lr: {type: float, low: 0.1, high: 0.01}\n")),
               {"search.space.lr", "low < high"});
  expect_error(parse(with_space("    lr: {type: log_float, low: 0, high: 0.01}\n")),
               {"search.space.lr", "low > 0"});
  expect_error(parse(with_space("    activation: {type: categorical, values: []}\n")),
               {"search.space.activation", "non-empty"});
  expect_error(parse(with_space("    hidden_unit: {type: int, low: 1, high: 4}\n")),
               {"unknown hyperparameter 'hidden_unit'", "did you mean 'hidden_units'"});
  expect_error(parse(with_space("    hidden_units: {type: int, low: 0, high: 4}\n")),
               {"search.space.hidden_units", "outside"});
  expect_error(parse(with_space("    lr: {type: uniform, low: 0, high: 1}\n")),
               {"search.space.lr.type", "unknown type 'uniform'"});
}

TEST_F(SweepSpecTest, AHyperparameterIsFixedOrSearchedNotBoth) {
  expect_error(parse(spec() + "train: {lr: 0.1}\n"), {"train.lr", "also in search.space"});
}

TEST_F(SweepSpecTest, ListsOfHiddenSizesBecomeTheirText) {
  SweepSpec s;
  std::string text = spec();
  text.replace(text.find("    hidden_units:"), std::string("    hidden_units:").size(),
               "    hidden: {type: categorical, values: [[256, 128], [64], 32]}\n    hidden_units:");
  ASSERT_TRUE(parse(text + "train: {model: mlp}\n", &s).ok()) << parse(text).message();
  const auto& choices = s.space[1].domain.choices;
  ASSERT_EQ(choices.size(), 3u);
  EXPECT_EQ(std::get<std::string>(choices[0]), "256,128");
  EXPECT_EQ(std::get<std::string>(choices[1]), "64");
  EXPECT_EQ(std::get<std::int64_t>(choices[2]), 32);
  expect_error(parse(spec() + "train: {hidden: [256, x]}\n"), {"train.hidden", "'x'"});
}

// A cnn's YAML layer list travels as its comma-joined text and a bad layer is refused before
// any trial, named by position and text (the message README.md quotes).
TEST_F(SweepSpecTest, ACnnLayerListIsCheckedNamingTheBadLayer) {
  SweepSpec s;
  ASSERT_TRUE(parse(spec() + "train: {model: cnn, layers: [conv 8 3x3, relu, pool 2]}\n", &s).ok());
  expect_error(parse(spec() + "train: {model: cnn, layers: [conv 32 3x3, rleu]}\n"),
               {"train.layers", "hyperparameter 'layers': layer 2 'rleu' of 'conv 32 3x3,rleu': "
                                "unknown layer 'rleu' (conv, relu, pool, maxpool, avgpool, flatten, "
                                "dense)"});
}

TEST_F(SweepSpecTest, QuotedNumbersStayStrings) {
  // "128" quoted is a string, so batch_size refuses it.
  expect_error(parse(spec() + "train: {batch_size: \"128\"}\n"), {"train.batch_size"});
}

// A spec whose search section is exactly `search` (each line indented by two spaces).
std::string with_search(const std::filesystem::path& dir, const std::string& search) {
  return "name: t\ndataset: {path: " + dir.string() + "}\nsearch:\n" + search;
}

TEST_F(SweepSpecTest, AlgorithmsAreKnownAndATypoGetsASuggestion) {
  for (const auto& algorithm : search_algorithms()) {
    SweepSpec s;
    std::string text = spec("  algorithm: " + algorithm + "\n");
    if (algorithm == "grid") text.replace(text.find("1.0e-2}"), 7, "1.0e-2, points: 3}");
    ASSERT_TRUE(parse(text, &s).ok()) << algorithm << ": " << parse(text).message();
    EXPECT_EQ(s.algorithm, algorithm);
  }
  expect_error(parse(spec("  algorithm: sobl\n")),
               {"spec.yaml:7:14", "search.algorithm", "unknown algorithm 'sobl'",
                "did you mean 'sobol'"});
}

TEST_F(SweepSpecTest, ConditionsTakeOneValueOrAList) {
  SweepSpec s;
  const std::string text = with_search(dir_,
      "  trials: 4\n"
      "  space:\n"
      "    optimizer: {type: categorical, values: [sgd, adam, adamw]}\n"
      "    momentum: {type: float, low: 0.5, high: 0.99, when: {optimizer: sgd}}\n"
      "    weight_decay: {type: log_float, low: 1.0e-6, high: 1.0e-2,\n"
      "                   when: {optimizer: [sgd, adamw]}}\n");
  ASSERT_TRUE(parse(text, &s).ok()) << parse(text).message();
  ASSERT_EQ(s.space.size(), 3u);
  EXPECT_TRUE(s.space[0].when.empty());
  ASSERT_EQ(s.space[1].when.size(), 1u);
  EXPECT_EQ(s.space[1].when[0].parent, "optimizer");
  EXPECT_EQ(s.space[1].when[0].values, (std::vector<ParamValue>{std::string("sgd")}));
  EXPECT_EQ(s.space[2].when[0].values,
            (std::vector<ParamValue>{std::string("sgd"), std::string("adamw")}));
}

TEST_F(SweepSpecTest, ABadConditionIsRefusedAtItsParametersLine) {
  const auto space = [&](const std::string& when) {
    return with_search(dir_,
        "  trials: 4\n"
        "  space:\n"
        "    optimizer: {type: categorical, values: [sgd, adam]}\n"
        "    momentum: {type: float, low: 0.5, high: 0.99, when: " + when + "}\n");
  };
  expect_error(parse(space("{optimiser: sgd}")),
               {"spec.yaml:7:5", "search.space", "'momentum'", "unknown parameter 'optimiser'"});
  expect_error(parse(space("{optimizer: rmsprop}")),
               {"spec.yaml:7:5", "'momentum'", "rmsprop", "never takes"});
  expect_error(parse(space("{momentum: 0.6}")), {"spec.yaml:7:5", "'momentum'", "itself"});
  expect_error(parse(space("sgd")), {"search.space.momentum.when", "mapping"});
}

TEST_F(SweepSpecTest, GridTrialsDefaultToTheGridsSizeAndCapIt) {
  const auto grid = [&](const std::string& trials) {
    return with_search(dir_,
        "  algorithm: grid\n" + trials +
        "  space:\n"
        "    optimizer: {type: categorical, values: [sgd, adam]}\n"
        "    momentum: {type: float, low: 0.5, high: 0.9, points: 3, when: {optimizer: sgd}}\n"
        "    hidden_units: {type: int, low: 16, high: 19}\n");
  };
  const int size = (3 + 1) * 4;  // sgd with 3 momenta, adam without momentum; 4 hidden sizes
  SweepSpec s;
  ASSERT_TRUE(parse(grid(""), &s).ok()) << parse(grid("")).message();
  EXPECT_EQ(s.trials, size);
  ASSERT_TRUE(parse(grid("  trials: 5\n"), &s).ok());
  EXPECT_EQ(s.trials, 5);
  ASSERT_TRUE(parse(grid("  trials: 1000\n"), &s).ok());
  EXPECT_EQ(s.trials, size);
  EXPECT_EQ(s.space[1].domain.grid_points, 3);
  // Without a grid, trials stays required.
  std::string random = grid("");
  random.replace(random.find("algorithm: grid"), 15, "algorithm: random");
  expect_error(parse(random), {"missing required key 'trials'"});
}

TEST_F(SweepSpecTest, GridNeedsPointsOnFloatsOnly) {
  const auto one = [&](const std::string& param) {
    return with_search(dir_, "  algorithm: grid\n  space:\n    " + param + "\n");
  };
  expect_error(parse(one("lr: {type: log_float, low: 1.0e-4, high: 1.0e-2}")),
               {"spec.yaml:6:9", "search.space.lr", "needs 'points'"});
  expect_error(parse(one("hidden_units: {type: int, low: 1, high: 4, points: 2}")),
               {"search.space.hidden_units.points", "only a float"});
  expect_error(parse(one("lr: {type: float, low: 0.1, high: 0.2, points: 0}")),
               {"search.space.lr.points", ">= 1"});
  // The grid's top point is `high` itself, which must be a value the trainer takes.
  expect_error(parse(one("dropout: {type: float, low: 0, high: 1, points: 3}")),
               {"search.space.dropout", "outside"});
}

TEST_F(SweepSpecTest, BudgetEpochsIsAPositiveInteger) {
  SweepSpec s;
  ASSERT_TRUE(parse(spec("  budget_epochs: 40\n"), &s).ok());
  EXPECT_EQ(s.budget_epochs, 40);
  ASSERT_TRUE(parse(spec(), &s).ok());
  EXPECT_EQ(s.budget_epochs, 0);
  expect_error(parse(spec("  budget_epochs: 0\n")),
               {"spec.yaml:7:18", "search.budget_epochs", ">= 1"});
}

TEST(SweepSpecFile, MissingFileNamesThePath) {
  SweepSpec s;
  const Status st = load_sweep_spec("/no/such/spec.yaml", &s);
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find("/no/such/spec.yaml"), std::string::npos);
}

TEST(SweepSpecFile, TheShippedExampleLoads) {
  SweepSpec s;
  const Status st = load_sweep_spec(TRELLIS_SOURCE_DIR "/examples/fashion-mlp.yaml", &s);
  ASSERT_TRUE(st.ok()) << st.message();
  EXPECT_GE(s.trials, 8);
  EXPECT_EQ(s.algorithm, "random");
}

}  // namespace
}  // namespace trellis

namespace trellis {
namespace {

class SchedulerSpecTest : public SweepSpecTest {};

TEST_F(SchedulerSpecTest, ParsesASchedulerAndGivesItTheTrialsEpochs) {
  SweepSpec s;
  ASSERT_TRUE(parse(spec() + "train: {epochs: 9}\n"
                             "scheduler: {type: asha, min_epochs: 1, reduction_factor: 3}\n"
                             "resources: {max_concurrent_trials: 4}\n",
                    &s)
                  .ok());
  EXPECT_EQ(s.scheduler.type, "asha");
  EXPECT_EQ(s.scheduler.max_epochs, 9);
  EXPECT_EQ(s.max_concurrent_trials, 4);
  // scheduler.max_epochs alone sets the trials' epochs.
  ASSERT_TRUE(parse(spec() + "scheduler: {type: hyperband, max_epochs: 27}\n", &s).ok());
  EXPECT_EQ(std::get<std::int64_t>(s.fixed.at("epochs")), 27);
  ASSERT_TRUE(parse(spec() + "scheduler: median\n", &s).ok());
  EXPECT_EQ(s.scheduler.type, "median");
}

TEST_F(SchedulerSpecTest, ContradictionsAreRefusedNamingTheField) {
  expect_error(parse(spec() + "scheduler: {type: ashha}\n"),
               {"spec.yaml:11:19", "scheduler.type", "did you mean 'asha'"});
  expect_error(parse(spec() + "train: {epochs: 5}\nscheduler: {type: asha, max_epochs: 9}\n"),
               {"scheduler.max_epochs", "train.epochs is 5"});
  expect_error(parse(spec() + "train: {epochs: 3}\nscheduler: {type: asha, min_epochs: 4}\n"),
               {"scheduler.min_epochs", "more than the 3 epochs"});
  expect_error(parse(spec() + "scheduler: {type: pbt, quantile: 0.7}\n"),
               {"scheduler.quantile", "must be in"});
  expect_error(parse(spec() + "scheduler: {type: asha, reduction_factor: 1}\n"),
               {"scheduler.reduction_factor"});
  expect_error(parse(spec("", "    epochs: {type: int, low: 1, high: 9}\n") +
                     "scheduler: {type: asha}\n"),
               {"scheduler.type", "'epochs' cannot be searched"});
  expect_error(parse(spec() + "resources: {max_concurrent_trials: 0}\n"),
               {"resources.max_concurrent_trials"});
}

}  // namespace
}  // namespace trellis

namespace trellis {
namespace {

// The name becomes a checkpoint directory (DIR/NAME/trial-N.ckpt): nothing in it may climb out.
TEST_F(SweepSpecTest, ExperimentNamesThatCouldLeaveTheCheckpointDirectoryAreRefused) {
  const auto named = [&](const std::string& name) {
    std::string text = spec();
    text.replace(0, text.find('\n'), "name: " + name);
    return parse(text);
  };
  // The value starts at line 1, column 7.
  expect_error(named("../../x"), {"spec.yaml:1:7: name:", "'../../x' has '/' at character 3",
                                  "checkpoint directory"});
  expect_error(named("a/b"), {"spec.yaml:1:7: name:", "'/' at character 2"});
  expect_error(named("\"\""), {"spec.yaml:1:7: name:", "must not be empty"});
  expect_error(named(".hidden"), {"spec.yaml:1:7: name:", "starts with '.'"});
  expect_error(named("-x"), {"spec.yaml:1:7: name:", "starts with '-'"});
  expect_error(named("a..b"), {"spec.yaml:1:7: name:", "contains '..'"});
  expect_error(named("\"my sweep\""), {"spec.yaml:1:7: name:", "' ' at character 3"});
  expect_error(named("\"a\\\\b\""), {"spec.yaml:1:7: name:", "'\\' at character 2"});
  expect_error(named("\"tab\\there\""), {"spec.yaml:1:7: name:", "byte 0x09 at character 4"});
  expect_error(named(std::string(kMaxExperimentName + 1, 'a')),
               {"spec.yaml:1:7: name:", "is 129 characters long", "1 to 128"});

  const std::vector<std::string> safe = {"t", "fashion-mlp", "run_2.v3", "A1-b_c.d",
                                         std::string(kMaxExperimentName, 'z')};
  for (const std::string& ok : safe) {
    const Status st = named(ok);
    ASSERT_TRUE(st.ok()) << ok << ": " << st.message();
  }
}

TEST(SweepSpecFile, EveryShippedExampleHasASafeName) {
  for (const char* example : {"fashion-mlp", "fashion-mlp-accurate", "fashion-asha-tpe", "fashion-cnn"}) {
    SweepSpec s;
    const Status st =
        load_sweep_spec(std::string(TRELLIS_SOURCE_DIR "/examples/") + example + ".yaml", &s);
    ASSERT_TRUE(st.ok()) << example << ": " << st.message();
    EXPECT_EQ(s.name, example);
  }
}

}  // namespace
}  // namespace trellis
