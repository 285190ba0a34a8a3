// `trellis predict` and `trellis export-model` on models real sweeps kept: real `trellis run`
// processes, real files. Predictions are checked against what training measured (the trial's
// recorded test metrics), and exported ONNX against predict, in an independent runtime
// (onnxruntime-node) after Debian's ONNX checker.

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <sstream>

#include "tests/integration/binaries.h"
#include "tests/integration/process.h"
#include "tests/worker/idx_fixture.h"
#include "worker/checkpoint.h"

namespace trellis::testing {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using namespace std::chrono_literals;

// Debian's python3 (python3-onnx is installed for it), not whatever python3 is first on PATH.
const std::string kPython = "/usr/bin/python3";
const std::string kOnnxDir = TRELLIS_SOURCE_DIR "/tests/onnx";

bool in_ci() {
  const char* ci = std::getenv("CI");
  return ci != nullptr && std::string(ci) == "true";
}

// A CSV file as rows of fields, the header first.
std::vector<std::vector<std::string>> read_csv(const std::string& path) {
  std::vector<std::vector<std::string>> rows;
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    std::vector<std::string> fields;
    std::stringstream s(line);
    std::string field;
    while (std::getline(s, field, ',')) fields.push_back(field);
    rows.push_back(std::move(fields));
  }
  return rows;
}

bool close(double a, double b, double rel) { return std::abs(a - b) <= rel * std::max(std::abs(a), std::abs(b)); }

class ModelTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    setenv("OMPI_ALLOW_RUN_AS_ROOT", "1", 1);
    setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1", 1);
  }
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = worker::testing::fresh_dir(std::string("model_") + info->name());
    setenv("TRELLIS_HOME", (dir_ / "keys").c_str(), 1);
  }
  void TearDown() override {
    unsetenv("TRELLIS_HOME");
    if (!HasFailure()) fs::remove_all(dir_);
  }
  std::string file(const std::string& name) const { return (dir_ / name).string(); }

  // `trellis run` of `spec_text` into STORE with no checkpoints; returns the exported trials.
  json sweep(const std::string& name, const std::string& spec_text) {
    write_text(file(name + ".yaml"), spec_text);
    const std::string store = file(name + ".db");
    const Result r = run({kTrellis, "--store", store, "run", file(name + ".yaml"), "--groups", "1",
                          "--checkpoints", "none"},
                         file(name + "-run.log"), 600s);
    EXPECT_EQ(r.code, 0) << r.output;
    const Result e = run({kTrellis, "--store", store, "export", name, "--format", "json",
                          "--log-level", "warn"},
                         file("export.log"), 60s);
    EXPECT_EQ(e.code, 0) << e.output;
    return json::parse(e.output.substr(e.output.find('{')))["trials"];
  }

  Result trellis(const std::string& store, std::vector<std::string> args) {
    std::vector<std::string> argv = {kTrellis, "--store", store, "--log-level", "warn"};
    argv.insert(argv.end(), args.begin(), args.end());
    return run(argv, file("trellis.log"), 120s);
  }

  // The tools the ONNX checks need: Debian's python3-onnx and node with onnxruntime-node in
  // tests/onnx/node_modules. scripts/setup --test installs them, so in CI (CI=true) a missing
  // one fails the test; elsewhere it skips, saying what is missing.
  void require_onnx_tools() {
    std::string missing;
    if (run({kPython, "-c", "import onnx"}, file("py.log"), 60s).code != 0) missing += " python3-onnx";
    if (run({"node", "--version"}, file("node.log"), 60s).code != 0) missing += " node";
    if (!fs::exists(kOnnxDir + "/node_modules/onnxruntime-node/package.json"))
      missing += " onnxruntime-node (npm ci in tests/onnx)";
    if (missing.empty()) return;
    ASSERT_FALSE(in_ci()) << "missing:" << missing << " (scripts/setup --test installs them)";
    GTEST_SKIP() << "missing:" << missing << " (scripts/setup --test installs them)";
  }

  // The ONNX checker on `model`, full_check (shape inference over every node).
  void check_onnx(const std::string& model) {
    const Result r = run({kPython, kOnnxDir + "/check_model.py", model}, file("check.log"), 60s);
    EXPECT_EQ(r.code, 0) << model << ": " << r.output;
  }

  // Every output of `model` run by onnxruntime-node on `rows`.
  json run_onnx(const std::string& model, const std::vector<std::vector<float>>& rows) {
    json input = {{"rows", rows}};
    write_text(file("onnx-in.json"), input.dump());
    const Result r = run({"node", kOnnxDir + "/run_model.js", model, file("onnx-in.json"),
                          file("onnx-out.json")},
                         file("node-run.log"), 120s);
    EXPECT_EQ(r.code, 0) << r.output;
    if (r.code != 0) return nullptr;
    return json::parse(read_file(file("onnx-out.json")));
  }

  // `model` (a regression) run by onnxruntime on the first `n` rows of the csv `input` gives
  // the values `predicted` (predict's output on the same file) holds, to 1e-5.
  void expect_onnx_values(const std::string& model, const std::string& input,
                          const std::vector<std::vector<std::string>>& predicted, std::size_t n) {
    require_onnx_tools();
    if (IsSkipped()) return;
    check_onnx(model);
    const auto text = read_csv(input);
    std::vector<std::vector<float>> rows;
    for (std::size_t i = 1; i <= n; ++i) {
      std::vector<float> row;
      for (const std::string& f : text[i]) row.push_back(std::stof(f));
      rows.push_back(std::move(row));
    }
    const json ort = run_onnx(model, rows);
    ASSERT_FALSE(ort.is_null());
    ASSERT_EQ(ort["value"]["dims"], json({static_cast<int>(n), 1}));
    for (std::size_t i = 0; i < n; ++i) {
      const double got = ort["value"]["data"][i], want = std::stod(predicted[i + 1][1]);
      EXPECT_TRUE(close(got, want, 1e-5)) << "row " << i << ": onnxruntime " << got << ", predict " << want;
    }
  }

  json regression_sweep(int* kept);

  fs::path dir_;
};

std::vector<float> column_floats(const std::vector<std::vector<std::string>>& csv, std::size_t row) {
  std::vector<float> out;
  for (std::size_t c = 2; c < csv[row].size(); ++c) out.push_back(std::stof(csv[row][c]));
  return out;
}

// For each activation, an MLP trained by a real sweep (no checkpoints: the kept model is all
// there is): predict on the trial's own test files reproduces the test accuracy and loss the
// trial recorded, and its ONNX export, valid by the checker, gives predict's probabilities
// and classes in onnxruntime.
TEST_F(ModelTest, AnMlpPredictsItsTestFilesAsTrainingMeasuredAndItsOnnxAgrees) {
  const fs::path data = dir_ / "data";
  fs::create_directories(data);
  const worker::testing::IdxData test = worker::testing::make_pattern_data(300, 8, 2);
  worker::testing::write_dataset(data, worker::testing::make_pattern_data(1200, 8, 1), test,
                                 /*gz=*/true);
  const json trials = sweep("mlp", "name: mlp\n"
                                   "dataset: {name: patterns, path: " + data.string() + "}\n"
                                   "metric: {name: val_acc, mode: max}\n"
                                   "search:\n  algorithm: grid\n  seed: 3\n  space:\n"
                                   "    activation: {type: categorical, values: [relu, tanh, gelu]}\n"
                                   "train: {epochs: 2, batch_size: 32, lr: 0.01, hidden: [16, 12]}\n"
                                   "resources: {ranks_per_trial: 1}\n"
                                   "keep_models: 3\n");
  ASSERT_EQ(trials.size(), 3u);
  EXPECT_FALSE(fs::exists(dir_ / "checkpoints")) << "--checkpoints none wrote checkpoints";
  const std::string store = file("mlp.db");
  std::set<std::string> activations;
  for (const json& t : trials) {
    ASSERT_EQ(t["state"], "completed") << t.dump();
    const int number = t["id"];
    activations.insert(t["params"]["activation"].get<std::string>());
    const std::string out = file("pred-" + std::to_string(number) + ".csv");
    // The dataset directory: its t10k images, the very rows the trial was tested on.
    const Result r = trellis(store, {"predict", "mlp", "--trial", std::to_string(number), "--input",
                                     data.string(), "-o", out});
    ASSERT_EQ(r.code, 0) << r.output;
    const auto csv = read_csv(out);
    ASSERT_EQ(csv.size(), test.labels.size() + 1) << r.output;
    ASSERT_EQ(csv[0].size(), 12u);
    EXPECT_EQ(csv[0][0], "row");
    EXPECT_EQ(csv[0][1], "class");
    EXPECT_EQ(csv[0][11], "p9");
    std::int64_t correct = 0;
    double loss = 0;
    for (std::size_t i = 0; i < test.labels.size(); ++i) {
      const auto& row = csv[i + 1];
      EXPECT_EQ(row[0], std::to_string(i));
      const int y = test.labels[i];
      if (std::stoi(row[1]) == y) ++correct;
      const std::vector<float> p = column_floats(csv, i + 1);
      double sum = 0;
      for (float v : p) sum += v;
      EXPECT_NEAR(sum, 1.0, 1e-5) << "row " << i;
      loss -= std::log(static_cast<double>(p[static_cast<std::size_t>(y)]));
    }
    const double rows = static_cast<double>(test.labels.size());
    EXPECT_EQ(static_cast<double>(correct) / rows, t["final"]["test_acc"].get<double>())
        << "trial " << number << " (" << t["params"]["activation"] << ")";
    EXPECT_TRUE(close(loss / rows, t["final"]["test_loss"].get<double>(), 1e-5))
        << loss / rows << " vs " << t["final"]["test_loss"];

    // ONNX, on the first 50 test images as the reader sees them (pixels / 255).
    const std::string model = file("mlp-" + std::to_string(number) + ".onnx");
    const Result e = trellis(store, {"export-model", "mlp", "--trial", std::to_string(number), "-o", model});
    ASSERT_EQ(e.code, 0) << e.output;
    require_onnx_tools();
    if (IsSkipped()) continue;  // the predictions of the other trials are still checked
    check_onnx(model);
    std::vector<std::vector<float>> images;
    for (std::size_t i = 0; i < 50; ++i) {
      std::vector<float> image(64);
      for (std::size_t k = 0; k < 64; ++k)
        image[k] = static_cast<float>(test.pixels[i * 64 + k]) * (1.0f / 255.0f);
      images.push_back(std::move(image));
    }
    const json ort = run_onnx(model, images);
    ASSERT_FALSE(ort.is_null());
    ASSERT_EQ(ort["probabilities"]["dims"], json({50, 10}));
    ASSERT_EQ(ort["class"]["dims"], json({50}));
    for (std::size_t i = 0; i < 50; ++i) {
      EXPECT_EQ(ort["class"]["data"][i].get<int>(), std::stoi(csv[i + 1][1])) << "row " << i;
      const std::vector<float> p = column_floats(csv, i + 1);
      for (std::size_t c = 0; c < 10; ++c) {
        const double got = ort["probabilities"]["data"][i * 10 + c];
        EXPECT_TRUE(close(got, p[c], 1e-5)) << "row " << i << " class " << c << ": onnxruntime "
                                            << got << ", predict " << p[c];
      }
    }
  }
  EXPECT_EQ(activations, (std::set<std::string>{"relu", "tanh", "gelu"}));

  // Without --trial: the best, i.e. the first trial `trellis trials` ranks.
  const Result best = trellis(store, {"predict", "mlp", "--input", data.string(), "-o", file("best.csv")});
  ASSERT_EQ(best.code, 0) << best.output;
  int best_number = 0;
  double best_acc = -1;
  for (const json& t : trials)
    if (t["final"]["val_acc"].get<double>() > best_acc)
      best_acc = t["final"]["val_acc"], best_number = t["id"];
  EXPECT_NE(best.output.find("trial " + std::to_string(best_number) + " (rank 1)"), std::string::npos)
      << best.output;
  EXPECT_EQ(read_file(file("best.csv")), read_file(file("pred-" + std::to_string(best_number) + ".csv")));
}

// Rows of y = 0.015 x0 - 20 (x1 - 5) + 0.5 x2 + 3 + noise; the label column sits between features, and
// the features have very different scales (x3 is constant), so the model's input scaling is
// exercised.
std::string regression_csv(int rows, std::uint64_t seed, bool with_label) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> u(0, 1);
  std::normal_distribution<double> noise(0, 0.1);
  std::ostringstream out;
  out << (with_label ? "x0,x1,y,x2,x3\n" : "x0,x1,x2,x3\n");
  for (int i = 0; i < rows; ++i) {
    const double x0 = 100 * u(rng), x1 = 5 + 0.1 * noise(rng), x2 = 2 * u(rng) - 1;
    const double y = 0.015 * x0 - 2 * (x1 - 5) * 10 + 0.5 * x2 + 3 + noise(rng);
    out << x0 << "," << x1 << ",";
    if (with_label) out << y << ",";
    out << x2 << ",7\n";
  }
  return out.str();
}

// The regression sweep of two linear trials, the better kept (keep_models: 1), without
// checkpoints: its data in DIR/reg (test.csv with its label column) and DIR/unlabelled.csv (the
// same test rows without it). Returns the exported trials; *kept is the kept trial's number.
json ModelTest::regression_sweep(int* kept) {
  const fs::path data = dir_ / "reg";
  fs::create_directories(data);
  write_text((data / "train.csv").string(), regression_csv(600, 1, true));
  write_text((data / "test.csv").string(), regression_csv(200, 2, true));
  write_text(file("unlabelled.csv"), regression_csv(200, 2, false));
  const json trials = sweep("reg", "name: reg\n"
                                   "dataset: {name: reg, format: csv, label: y, task: regression, "
                                   "path: " + data.string() + "}\n"
                                   "metric: {name: val_loss, mode: min}\n"
                                   "search:\n  seed: 5\n  trials: 2\n  space:\n"
                                   "    lr: {type: log_float, low: 3.0e-2, high: 1.0e-1}\n"
                                   "train: {model: linear, epochs: 12, batch_size: 16}\n"
                                   "resources: {ranks_per_trial: 1}\n"
                                   "keep_models: 1\n");
  EXPECT_EQ(trials.size(), 2u);
  if (trials.size() != 2u) return trials;
  *kept = trials[0]["final"]["val_loss"].get<double>() <= trials[1]["final"]["val_loss"].get<double>() ? 0 : 1;
  return trials;
}

// A linear regression: predict on the test file (label column and all) reproduces the test
// loss the trial recorded, the same rows without the label column give the same values, and
// the ONNX export agrees.
TEST_F(ModelTest, ALinearRegressionPredictsItsTestFileAsTrainingMeasured) {
  int kept = 0;
  const json trials = regression_sweep(&kept);
  ASSERT_EQ(trials.size(), 2u);
  const fs::path data = dir_ / "reg";
  const std::string store = file("reg.db");
  const json& t = trials[static_cast<std::size_t>(kept)];
  const std::string out = file("pred.csv");
  const Result r = trellis(store, {"predict", "reg", "--input", (data / "test.csv").string(), "-o", out});
  ASSERT_EQ(r.code, 0) << r.output;
  const auto csv = read_csv(out);
  const auto truth = read_csv((data / "test.csv").string());
  ASSERT_EQ(csv.size(), 201u);
  ASSERT_EQ(csv[0], (std::vector<std::string>{"row", "value"}));
  double squared = 0;
  for (std::size_t i = 1; i < csv.size(); ++i) {
    const double e = std::stod(csv[i][1]) - static_cast<double>(std::stof(truth[i][2]));
    squared += e * e;
  }
  const double mse = squared / 200;
  // The trainer's test_loss is the mean squared error; once regression reports test_rmse, that
  // is the un-standardised check.
  const json& final = t["final"];
  if (final.contains("test_rmse")) {
    EXPECT_TRUE(close(std::sqrt(mse), final["test_rmse"].get<double>(), 1e-5)) << final.dump();
  } else {
    EXPECT_TRUE(close(mse, final["test_loss"].get<double>(), 1e-5)) << mse << " vs " << final.dump();
  }
  EXPECT_LT(mse, 1.0) << "the model did not learn the line";

  const Result plain = trellis(store, {"predict", "reg", "--input", file("unlabelled.csv"), "-o", file("plain.csv")});
  ASSERT_EQ(plain.code, 0) << plain.output;
  EXPECT_EQ(read_file(file("plain.csv")), read_file(out));

  const std::string model = file("reg.onnx");
  const Result e = trellis(store, {"export-model", "reg", "-o", model});
  ASSERT_EQ(e.code, 0) << e.output;
  expect_onnx_values(model, file("unlabelled.csv"), csv, 40);
}

// The contract with a trainer that standardises the regression target: a model file with
// "target.mean" and "target.std" predicts the standardised target, and predict and the ONNX
// export report value * std + mean. The kept model is given the two buffers here, as such a
// trainer writes them.
TEST_F(ModelTest, AStandardisedTargetIsReportedInItsOwnUnits) {
  int kept = 0;
  ASSERT_EQ(regression_sweep(&kept).size(), 2u);
  const std::string store = file("reg.db");
  const std::string unlabelled = file("unlabelled.csv");
  ASSERT_EQ(trellis(store, {"predict", "reg", "--input", unlabelled, "-o", file("scaled.csv")}).code, 0);

  // The trainer standardised the target: the kept model says how. The same model told its
  // target was not scaled gives the network's own output.
  const std::string model_file = store + ".models/reg/trial-" + std::to_string(kept) + ".model";
  const std::string original = read_file(model_file);
  worker::Checkpoint model;
  ASSERT_TRUE(worker::read_checkpoint(model_file, &model).ok());
  const std::vector<float>* mean = model.find("target.mean");
  const std::vector<float>* std_dev = model.find("target.std");
  ASSERT_TRUE(mean && std_dev && mean->size() == 1 && std_dev->size() == 1);
  const float target_mean = mean->front(), target_std = std_dev->front();
  EXPECT_GT(target_std, 0.0f);
  for (auto& [name, values] : model.buffers) {
    if (name == "target.mean") values = {0.0f};
    if (name == "target.std") values = {1.0f};
  }
  ASSERT_TRUE(worker::write_checkpoint(model_file, model).ok());
  const Result r = trellis(store, {"predict", "reg", "--input", unlabelled, "-o", file("raw.csv")});
  ASSERT_EQ(r.code, 0) << r.output;
  write_text(model_file, original);
  const auto raw = read_csv(file("raw.csv")), scaled = read_csv(file("scaled.csv"));
  ASSERT_EQ(scaled.size(), raw.size());
  for (std::size_t i = 1; i < raw.size(); ++i)
    EXPECT_FLOAT_EQ(std::stof(scaled[i][1]), std::stof(raw[i][1]) * target_std + target_mean)
        << "row " << i;

  const std::string onnx = file("scaled.onnx");
  ASSERT_EQ(trellis(store, {"export-model", "reg", "-o", onnx}).code, 0);
  expect_onnx_values(onnx, unlabelled, scaled, 20);
}

// Every way predict and export-model can be asked the wrong thing fails naming what is wrong,
// and writes nothing.
TEST_F(ModelTest, PredictAndExportRefuseWhatTheyCannotDoNamingWhy) {
  int kept = 0;
  ASSERT_EQ(regression_sweep(&kept).size(), 2u);
  const std::string store = file("reg.db");
  const int other = 1 - kept;
  const auto refused = [&](std::vector<std::string> args, std::vector<std::string> needles) {
    const Result bad = trellis(store, args);
    EXPECT_EQ(bad.code, 1) << bad.output;
    for (const std::string& needle : needles)
      EXPECT_NE(bad.output.find(needle), std::string::npos) << "'" << needle << "' in: " << bad.output;
  };
  refused({"predict", "reg", "--trial", std::to_string(other), "--input", file("unlabelled.csv"), "-o", file("x.csv")},
          {"trial " + std::to_string(other) + "'s model was not kept", "keep_models",
           "trial(s) " + std::to_string(kept)});
  refused({"export-model", "reg", "--trial", std::to_string(other), "-o", file("x.onnx")},
          {"was not kept"});
  write_text(file("wide.csv"), "a,b,c,d,e\n1,2,3,4,5\n");
  refused({"predict", "reg", "--input", file("wide.csv"), "-o", file("x.csv")},
          {file("wide.csv") + ":1: 5 feature columns", "the model takes 4"});
  write_text(file("short.csv"), "x0,x1,x2,x3\n1,2,3,4\n1,2,3\n");
  refused({"predict", "reg", "--input", file("short.csv"), "-o", file("x.csv")},
          {file("short.csv") + ":3: expected 4 fields, got 3"});
  write_text(file("wide.libsvm"), "0 1:1 2:1\n0 5:1\n");
  refused({"predict", "reg", "--input", file("wide.libsvm"), "-o", file("x.csv")},
          {file("wide.libsvm") + ":2", "5"});
  refused({"predict", "reg", "--input", file("nowhere.csv"), "-o", file("x.csv")},
          {file("nowhere.csv")});
  EXPECT_FALSE(fs::exists(file("x.csv"))) << "a refused predict wrote its output";

  // A kept model listed without its file (it was too large to send).
  const std::string index_path = store + ".models/reg/index.json";
  const std::string index_text = read_file(index_path);
  json index = json::parse(index_text);
  const std::string model_file = store + ".models/reg/" + index["models"][0]["file"].get<std::string>();
  index["models"][0]["file"] = nullptr;
  write_text(index_path, index.dump());
  refused({"predict", "reg", "--input", file("unlabelled.csv"), "-o", file("x.csv")},
          {"trial " + std::to_string(kept) + " ranks 1", "did not arrive"});
  write_text(index_path, index_text);

  // A corrupt model file: named.
  std::string bytes = read_file(model_file);
  bytes[bytes.size() / 2] = static_cast<char>(bytes[bytes.size() / 2] ^ 0x5a);
  write_text(model_file, bytes);
  refused({"predict", "reg", "--input", file("unlabelled.csv"), "-o", file("x.csv")}, {model_file});
  refused({"export-model", "reg", "-o", file("x.onnx")}, {model_file});
  EXPECT_FALSE(fs::exists(file("x.onnx")));
}

}  // namespace
}  // namespace trellis::testing
