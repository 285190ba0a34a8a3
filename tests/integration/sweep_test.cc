// End-to-end tests with real processes: `trellis serve` / `trellis run`, `mpirun` worker
// groups, ZeroMQ on loopback, SQLite files, all in a temp dir removed afterwards.

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <zmq.hpp>

#include <algorithm>
#include <charconv>
#include <map>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>

#include "common/protocol.h"
#include "tests/integration/binaries.h"
#include "tests/integration/process.h"
#include "tests/worker/idx_fixture.h"
#include "worker/checkpoint.h"

namespace trellis::testing {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using namespace std::chrono_literals;


class SweepTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    setenv("OMPI_ALLOW_RUN_AS_ROOT", "1", 1);
    setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1", 1);
  }

  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = worker::testing::fresh_dir(std::string("sweep_") + info->name());
    data_ = dir_ / "data";
    fs::create_directories(data_);
    worker::testing::write_dataset(data_, worker::testing::make_pattern_data(1200, 8, 1),
                                   worker::testing::make_pattern_data(300, 8, 2), /*gz=*/true);
    // `trellis run` makes its CURVE keys here, not in the user's ~/.trellis.
    setenv("TRELLIS_HOME", (dir_ / "keys").c_str(), 1);
  }
  void TearDown() override {
    unsetenv("TRELLIS_HOME");
    if (!HasFailure()) fs::remove_all(dir_);
  }

  // A spec of `trials` trials of `ranks` ranks; `space` lines go under search.space.
  // `extra`: more top-level YAML (a scheduler: section).
  std::string write_spec(const std::string& name, int trials, int ranks, const std::string& space,
                         const std::string& train = "epochs: 2, batch_size: 32",
                         const std::string& extra = "") {
    const std::string path = (dir_ / (name + ".yaml")).string();
    write_text(path, "name: " + name + "\n"
                     "dataset: {name: patterns, path: " + data_.string() + "}\n"
                     "metric: {name: val_acc, mode: max}\n"
                     "search:\n  seed: 11\n  trials: " + std::to_string(trials) + "\n" +
                     (space.empty() ? "" : "  space:\n" + space) +
                     "train: {" + train + "}\n"
                     "resources: {ranks_per_trial: " + std::to_string(ranks) + "}\n" + extra);
    return path;
  }

  std::string file(const std::string& name) const { return (dir_ / name).string(); }

  json export_json(const std::string& store, const std::string& experiment) {
    const Result r = run({kTrellis, "--store", store, "export", experiment, "--format", "json"},
                         file("export.log"), 60s);
    EXPECT_EQ(r.code, 0) << r.output;
    // The log file holds stdout and stderr; the JSON object is the part from the first brace.
    return json::parse(r.output.substr(r.output.find('{')));
  }

  fs::path dir_, data_;
};

const std::string kSpace =
    "    lr: {type: log_float, low: 1.0e-3, high: 1.0e-2}\n"
    "    hidden_units: {type: int, low: 8, high: 32}\n"
    "    activation: {type: categorical, values: [relu, tanh]}\n";

// Sends raw frames to the coordinator the way a confused or hostile client would.
void send_garbage(const std::string& endpoint, std::string* refusal) {
  zmq::context_t context;
  zmq::socket_t socket(context, zmq::socket_type::dealer);
  socket.set(zmq::sockopt::linger, 0);
  socket.connect(endpoint);
  socket.send(zmq::str_buffer("this is not msgpack"), zmq::send_flags::none);
  const std::string good = encode(Hello{"x", 1, "h", 1, ""});
  socket.send(zmq::buffer(good.substr(0, good.size() / 2)), zmq::send_flags::none);
  std::string other_version = good;
  other_version[1] = static_cast<char>(kProtocolVersion + 1);  // [version, ...]: 2nd byte
  socket.send(zmq::buffer(other_version), zmq::send_flags::none);
  socket.set(zmq::sockopt::rcvtimeo, 10000);
  zmq::message_t reply;
  if (socket.recv(reply)) {
    Message m;
    if (decode(reply.data(), reply.size(), &m).ok() && std::holds_alternative<Refuse>(m))
      *refusal = std::get<Refuse>(m).reason;
  }
}

TEST_F(SweepTest, ServeWithAnMpirunWorkerGroupCompletesTheSweep) {
  const std::string spec = write_spec("served", 3, 2, kSpace);
  const std::string store = file("served.db");
  const std::string endpoint = "tcp://127.0.0.1:" + std::to_string(free_loopback_port());
  // Plaintext on loopback, so the raw garbage below reaches the coordinator's frame handling.
  Process serve({kTrellis, "--store", store, "serve", spec, "--bind", endpoint, "--insecure"},
                file("serve.log"));

  // Garbage first: the coordinator must drop it, refuse the stale version, and keep serving.
  std::string refusal;
  send_garbage(endpoint, &refusal);
  EXPECT_NE(refusal.find("version"), std::string::npos) << "no Refuse for a wrong version";

  Process workers({"mpirun", "-np", "2", "--oversubscribe", "--bind-to", "none", kWorker,
                   "--connect", endpoint, "--insecure"},
                  file("workers.log"));
  ASSERT_EQ(serve.wait(300s), 0) << serve.log() << workers.log();
  ASSERT_EQ(workers.wait(60s), 0) << workers.log();
  EXPECT_NE(serve.log().find("dropped a frame"), std::string::npos) << serve.log();

  const json exported = export_json(store, "served");
  EXPECT_EQ(exported["experiment"]["name"], "served");
  ASSERT_EQ(exported["trials"].size(), 3u);
  for (const json& t : exported["trials"]) {
    EXPECT_EQ(t["state"], "completed") << t.dump();
    for (const char* metric : {"train_loss", "val_loss", "val_acc"}) {
      ASSERT_EQ(t["metrics"][metric].size(), 2u) << metric << " " << t.dump();
      EXPECT_EQ(t["metrics"][metric][0][0], 1);
      EXPECT_EQ(t["metrics"][metric][1][0], 2);
    }
    EXPECT_TRUE(t["final"].contains("test_acc")) << t.dump();
    EXPECT_TRUE(t["params"]["hidden_units"].is_number_integer());
    EXPECT_TRUE(t["params"]["lr"].is_number_float());
  }

  // The ranking lists the trial with the best val_acc first.
  int best = -1;
  double best_acc = -1;
  for (const json& t : exported["trials"]) {
    const double acc = t["final"]["val_acc"];
    if (acc > best_acc) best_acc = acc, best = t["id"];
  }
  const Result table = run({kTrellis, "--store", store, "trials", "served", "--sort", "val_acc"},
                           file("trials.log"), 60s);
  ASSERT_EQ(table.code, 0) << table.output;
  // What the spec fixed is said once; the columns show what the search varied.
  EXPECT_NE(table.output.find("same in every trial: batch_size=32 epochs=2"), std::string::npos)
      << table.output;
  std::istringstream lines(table.output);
  std::string line;
  bool found_first_row = false;
  while (std::getline(lines, line)) {
    std::istringstream words(line);
    std::string rank;
    int trial = -1;
    if (words >> rank >> trial && rank == "1") {
      EXPECT_EQ(trial, best) << table.output;
      found_first_row = true;
      break;
    }
  }
  EXPECT_TRUE(found_first_row) << table.output;
}

TEST_F(SweepTest, OneRankAndTwoRanksReachTheSameValidationLoss) {
  std::map<int, json> runs;
  for (int ranks : {1, 2}) {
    const std::string spec = write_spec("agree", 1, ranks, "",
                                        "epochs: 3, batch_size: 40, lr: 0.01, hidden_units: 16");
    const std::string store = file("agree" + std::to_string(ranks) + ".db");
    const Result r = run({kTrellis, "--store", store, "run", spec, "--groups", "1"},
                         file("agree" + std::to_string(ranks) + ".log"), 300s);
    ASSERT_EQ(r.code, 0) << r.output;
    runs[ranks] = export_json(store, "agree")["trials"][0];
    ASSERT_EQ(runs[ranks]["state"], "completed") << runs[ranks].dump();
  }
  const json& one = runs[1]["metrics"]["val_loss"];
  const json& two = runs[2]["metrics"]["val_loss"];
  ASSERT_EQ(one.size(), 3u);
  ASSERT_EQ(two.size(), 3u);
  for (int e = 0; e < 3; ++e) {
    const double a = one[e][1], b = two[e][1];
    EXPECT_LE(std::abs(a - b), 1e-4 * std::abs(a)) << "epoch " << e + 1 << ": " << a << " vs " << b;
  }
  // The group really trained: loss went down from epoch 1 to 3.
  EXPECT_LT(static_cast<double>(one[2][1]), static_cast<double>(one[0][1]));
}

TEST_F(SweepTest, RunningACompletedSweepAgainChangesNothing) {
  const std::string spec = write_spec("again", 2, 1, kSpace, "epochs: 1, batch_size: 32");
  const std::string store = file("again.db");
  ASSERT_EQ(run({kTrellis, "--store", store, "run", spec}, file("first.log")).code, 0);
  const json before = export_json(store, "again");
  // The global options after the subcommand, as people type them.
  const Result second =
      run({kTrellis, "run", spec, "--store", store, "--log-level", "info"}, file("second.log"));
  ASSERT_EQ(second.code, 0) << second.output;
  EXPECT_EQ(second.output.find("started worker group"), std::string::npos) << second.output;
  EXPECT_EQ(export_json(store, "again")["trials"], before["trials"]);
  for (const std::vector<std::string>& command :
       {std::vector<std::string>{"trials", "again"}, {"export", "again", "--format", "csv"},
        {"events", "again"}, {"status", "again"}}) {
    std::vector<std::string> before_it = {kTrellis, "--store", store, "--log-level", "warn"};
    before_it.insert(before_it.end(), command.begin(), command.end());
    std::vector<std::string> after_it = {kTrellis};
    after_it.insert(after_it.end(), command.begin(), command.end());
    after_it.insert(after_it.end(), {"--store", store, "--log-level", "warn"});
    const Result a = run(before_it, file("before.log"));
    const Result b = run(after_it, file("after.log"));
    EXPECT_EQ(a.code, 0) << a.output;
    EXPECT_EQ(b.code, 0) << command[0] << ": " << b.output;
    EXPECT_EQ(b.output, a.output) << command[0];
  }
}

// The epochs of a trial's series, in order.
std::vector<int> epochs_of(const json& trial) {
  std::vector<int> epochs;
  for (const json& point : trial["metrics"]["val_acc"]) epochs.push_back(point[0]);
  return epochs;
}

// The model files on a shelf (STORE.models/EXPERIMENT), by trial number.
std::map<int, worker::Checkpoint> shelf_models(const std::string& store, const std::string& name) {
  std::map<int, worker::Checkpoint> models;
  const fs::path dir = store + ".models/" + name;
  if (!fs::is_directory(dir)) return models;
  for (const auto& f : fs::directory_iterator(dir)) {
    const std::string file = f.path().filename().string();
    if (file == "index.json") continue;
    worker::Checkpoint c;
    EXPECT_TRUE(worker::read_checkpoint(f.path().string(), &c).ok()) << file;
    models[std::stoi(file.substr(file.find('-') + 1))] = std::move(c);
  }
  return models;
}

// A regression sweep on a one-file dataset (test_fraction) through the real binaries: every
// table speaks rmse, mae and r2 in the target's units and shows no accuracy column, every
// trial records the experiment's split, and the kept models carry the target scaling.
TEST_F(SweepTest, ARegressionSweepShowsErrorsAndNoAccuracy) {
  {
    std::ofstream out(data_ / "houses.csv");
    out << "rooms,age,price\n";
    for (int i = 0; i < 500; ++i) {
      const double rooms = 1 + i % 7, age = (i * 13) % 40;
      out << rooms << "," << age << "," << 50000 + 30000 * rooms - 800 * age + (i * 7919) % 5000
          << "\n";
    }
  }
  const std::string spec = file("houses.yaml");
  write_text(spec,
             "name: houses\n"
             "dataset: {format: csv, path: " + data_.string() + ", train: houses.csv, label: price,\n"
             "          task: regression, test_fraction: 0.2}\n"
             "search:\n  seed: 11\n  trials: 3\n"
             "  space:\n    lr: {type: log_float, low: 1.0e-2, high: 1.0e-1}\n"
             "train: {model: linear, epochs: 2, batch_size: 32}\n"
             "keep_models: 2\n");
  const std::string store = file("houses.db");
  const Result ran = run({kTrellis, "--store", store, "run", spec}, file("run.log"));
  ASSERT_EQ(ran.code, 0) << ran.output;

  const auto output_of = [&](std::vector<std::string> args) {
    args.insert(args.begin(), {kTrellis, "--store", store, "--log-level", "warn"});
    const Result r = run(args, file("cmd.log"), 60s);
    EXPECT_EQ(r.code, 0) << r.output;
    return r.output;
  };
  const std::string trials = output_of({"trials", "houses"});
  EXPECT_NE(trials.find("sorted by val_rmse (min, lower is better)"), std::string::npos) << trials;
  const std::string header = trials.substr(trials.find("rank"));
  for (const char* column : {"val_rmse", "test_rmse", "val_mae", "val_r2", "val_loss"})
    EXPECT_NE(header.find(column), std::string::npos) << column << "\n" << trials;
  EXPECT_EQ(trials.find("acc"), std::string::npos) << trials;

  const std::string show = output_of({"show", "houses", "0"});
  for (const char* m : {"test_rmse=", "test_mae=", "test_r2=", "val_rmse", "val_r2"})
    EXPECT_NE(show.find(m), std::string::npos) << m << "\n" << show;
  EXPECT_EQ(show.find("_acc"), std::string::npos) << show;
  const std::string compare = output_of({"compare", "houses", "0", "1", "2", "--all"});
  EXPECT_NE(compare.find("final.test_rmse"), std::string::npos) << compare;
  EXPECT_EQ(compare.find("_acc"), std::string::npos) << compare;
  const std::string csv = output_of({"export", "houses", "--format", "csv"});
  EXPECT_NE(csv.find("val_r2"), std::string::npos) << csv;
  EXPECT_EQ(csv.find("acc"), std::string::npos) << csv;

  const json exported = export_json(store, "houses");
  ASSERT_EQ(exported["trials"].size(), 3u);
  for (const json& t : exported["trials"]) {
    EXPECT_EQ(t["state"], "completed") << t.dump();
    const json split = t["provenance"]["split"];
    EXPECT_EQ(split["seed"], 11) << "the experiment's seed, not the trial's: " << t.dump();
    EXPECT_DOUBLE_EQ(split["test_fraction"].get<double>(), 0.2);
    // In the target's units (prices of 10^5), not the standardised ones (about 1).
    EXPECT_GT(t["final"]["test_rmse"].get<double>(), 100.0) << t.dump();
    EXPECT_LE(t["final"]["val_r2"].get<double>(), 1.0);
  }
  const auto models = shelf_models(store, "houses");
  ASSERT_EQ(models.size(), 2u);
  for (const auto& [number, model] : models) {
    ASSERT_NE(model.find("target.mean"), nullptr) << "trial " << number;
    ASSERT_NE(model.find("target.std"), nullptr);
    EXPECT_GT(model.find("target.mean")->front(), 100000.0f);
  }
}

// The best `keep_models` completed trials (by the sweep's metric, as `trellis trials` ranks)
// leave their final models beside the store: the weights of their last epoch, the very ones
// their checkpoint holds, with their final metrics; the other trials leave none.
TEST_F(SweepTest, TheBestTrialsModelsAreKeptBesideTheStore) {
  const std::string spec = write_spec("shelf", 5, 1, kSpace, "epochs: 2, batch_size: 32",
                                      "keep_models: 2\n");
  const std::string store = file("shelf.db");
  const Result r = run({kTrellis, "--store", store, "run", spec, "--groups", "1"},
                       file("run.log"), 300s);
  ASSERT_EQ(r.code, 0) << r.output;
  const json trials = export_json(store, "shelf")["trials"];
  ASSERT_EQ(trials.size(), 5u);
  std::vector<std::pair<double, int>> ranked;  // -val_acc, number
  for (const json& t : trials) {
    ASSERT_EQ(t["state"], "completed") << t.dump();
    ranked.emplace_back(-t["final"]["val_acc"].get<double>(), t["id"].get<int>());
  }
  std::sort(ranked.begin(), ranked.end());
  const std::map<int, worker::Checkpoint> models = shelf_models(store, "shelf");
  ASSERT_EQ(models.size(), 2u) << r.output;
  std::ifstream in(store + ".models/shelf/index.json");
  const json index = json::parse(in);
  for (int rank = 0; rank < 2; ++rank) {
    const int number = ranked[static_cast<std::size_t>(rank)].second;
    ASSERT_EQ(models.count(number), 1u) << "trial " << number << " ranks " << rank + 1;
    const worker::Checkpoint& model = models.at(number);
    EXPECT_EQ(index["models"][rank]["number"], number);
    EXPECT_EQ(index["models"][rank]["params"], trials[static_cast<std::size_t>(number)]["params"]);
    EXPECT_EQ(model.epoch, 2);
    worker::Checkpoint last;
    const std::string base = file("checkpoints/shelf/trial-" + std::to_string(number) + ".ckpt");
    ASSERT_TRUE(worker::read_checkpoint(base + ".epoch-2", &last).ok());
    ASSERT_NE(model.find("params"), nullptr);
    EXPECT_EQ(*model.find("params"), *last.find("params")) << "trial " << number;
    for (const auto& [buffer, values] : model.buffers)
      EXPECT_TRUE(buffer == "params" || buffer.rfind("scale.", 0) == 0)
          << buffer << ": a model carries no optimizer state";
    for (const auto& [metric, value] : model.metrics)
      EXPECT_EQ(value, trials[static_cast<std::size_t>(number)]["final"][metric].get<double>())
          << metric;
    EXPECT_EQ(model.metrics.size(), trials[static_cast<std::size_t>(number)]["final"].size());
  }
}

// The shortest text that reads back to `v`, as trellis prints numbers.
std::string format_exact(double v) {
  char buf[64];
  const auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);
  return std::string(buf, end);
}

// `trellis compare` shows the rows where trials differ, and every row with --all; `show`
// gives one trial's parameters, each epoch's metrics and where its model is kept; a trial
// that does not exist is named with the range that does.
TEST_F(SweepTest, CompareAndShowReadTheStoreAsTheExportHasIt) {
  const std::string spec = write_spec("side", 3, 1, kSpace, "epochs: 2, batch_size: 32",
                                      "keep_models: 1\n");
  const std::string store = file("side.db");
  ASSERT_EQ(run({kTrellis, "--store", store, "run", spec, "--groups", "1"}, file("run.log"), 300s)
                .code,
            0);
  const json trials = export_json(store, "side")["trials"];
  const auto compared = [&](std::vector<std::string> extra) {
    std::vector<std::string> argv = {kTrellis, "compare", "side", "0", "2", "--format", "json",
                                     "--store", store, "--log-level", "warn"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    const Result r = run(argv, file("compare.log"));
    EXPECT_EQ(r.code, 0) << r.output;
    std::map<std::string, json> rows;
    const json doc = json::parse(r.output);
    for (const json& row : doc["rows"]) rows[row["field"].get<std::string>()] = row["values"];
    return rows;
  };
  const std::map<std::string, json> differing = compared({});
  const std::map<std::string, json> every = compared({"--all"});
  // What the export says of the two trials, field by field.
  for (const auto& [name, value] : trials[0]["params"].items()) {
    const json pair = {value, trials[2]["params"][name]};
    ASSERT_EQ(every.count("params." + name), 1u) << name;
    EXPECT_EQ(every.at("params." + name), pair) << name;
    EXPECT_EQ(differing.count("params." + name), value != trials[2]["params"][name] ? 1u : 0u)
        << name;
  }
  EXPECT_EQ(differing.count("params.batch_size"), 0u) << "fixed in train:, the same for both";
  for (const auto& [name, value] : trials[0]["final"].items())
    EXPECT_EQ(every.at("final." + name), (json{value, trials[2]["final"][name]})) << name;
  EXPECT_EQ(every.at("state"), (json{"completed", "completed"}));

  // What decided the numbers, from each trial's Done: the same files, the same build and
  // BLAS, the same layout for every trial of this sweep, so no such row differs.
  const std::string hash = trials[0]["provenance"].value("dataset_hash", "");
  EXPECT_EQ(hash.rfind("crc32:", 0), 0u) << trials[0].dump();
  for (const json& t : trials) {
    const json p = t["provenance"];
    EXPECT_EQ(p.value("dataset_hash", ""), hash) << "the same files: " << p.dump();
    EXPECT_GT(p.value("dataset_bytes", 0), 0) << p.dump();
    EXPECT_EQ(p.value("dataset_files", 0), 4) << "idx: train and test, images and labels";
    ASSERT_TRUE(p.contains("build") && p.contains("blas") && p.contains("rank_layout")) << p.dump();
    const json build = p["build"];
    EXPECT_TRUE(build["git_dirty"].is_boolean()) << p.dump();
    EXPECT_FALSE(build.value("git_revision", "").empty()) << p.dump();
    EXPECT_FALSE(build.value("compiler", "").empty()) << p.dump();
    const json blas = p["blas"];
    EXPECT_FALSE(blas.value("library", "").empty()) << p.dump();
    EXPECT_GE(blas.value("threads", 0), 1) << p.dump();
    EXPECT_GE(p.value("eigen_threads", 0), 1) << p.dump();
    EXPECT_EQ(p["rank_layout"]["ranks"], 1) << p.dump();
    EXPECT_EQ(p["rank_layout"]["nodes"], 1) << p.dump();
  }
  for (const char* field : {"provenance.dataset_hash", "provenance.dataset_bytes",
                            "provenance.build.git_revision", "provenance.build.git_dirty",
                            "provenance.build.compiler", "provenance.blas.library",
                            "provenance.blas.core", "provenance.blas.threads",
                            "provenance.eigen_threads", "provenance.rank_layout.ranks"}) {
    ASSERT_EQ(every.count(field), 1u) << field;
    EXPECT_EQ(every.at(field)[0], every.at(field)[1]) << field;
    EXPECT_EQ(differing.count(field), 0u) << field;
  }

  const Result table = run({kTrellis, "--store", store, "compare", "side", "0", "1", "2"},
                           file("table.log"));
  ASSERT_EQ(table.code, 0) << table.output;
  EXPECT_EQ(table.output.rfind("trial", 0), 0u) << table.output;
  EXPECT_NE(table.output.find("params.lr"), std::string::npos) << table.output;

  const Result missing = run({kTrellis, "--store", store, "compare", "side", "0", "7"},
                             file("missing.log"));
  EXPECT_EQ(missing.code, 1);
  EXPECT_NE(missing.output.find("experiment 'side' has no trial 7 (its trials are numbered 0 to 2)"),
            std::string::npos)
      << missing.output;

  // The best trial by val_acc (ties by number) is the one whose model is kept.
  int best = 0;
  for (int i = 1; i < 3; ++i)
    if (trials[i]["final"]["val_acc"].get<double>() > trials[best]["final"]["val_acc"].get<double>())
      best = i;
  for (int i = 0; i < 3; ++i) {
    const Result shown = run({kTrellis, "show", "side", std::to_string(i), "--format", "json",
                              "--store", store},
                             file("show.log"));
    ASSERT_EQ(shown.code, 0) << shown.output;
    json doc = json::parse(shown.output.substr(shown.output.find('{')));
    const std::string model = doc["model"];
    doc.erase("model");
    EXPECT_EQ(doc, trials[i]) << "show's document is the export's";
    if (i == best)
      EXPECT_EQ(model, store + ".models/side/trial-" + std::to_string(i) +
                           ".model (rank 1 of the 1 best)");
    else
      EXPECT_NE(model.find("not kept: only the best 1 completed trials' models are"),
                std::string::npos)
          << model;
  }
  const Result text = run({kTrellis, "--store", store, "show", "side", "1"}, file("text.log"));
  ASSERT_EQ(text.code, 0) << text.output;
  EXPECT_NE(text.output.find("trial 1 of 'side': completed, 2 epoch(s)"), std::string::npos)
      << text.output;
  // Each epoch's val_acc, as the export has it, on the epoch's line.
  for (const json& point : trials[1]["metrics"]["val_acc"]) {
    const std::regex line("\n" + std::to_string(point[0].get<int>()) + " [^\n]*" +
                          std::regex_replace(format_exact(point[1].get<double>()),
                                             std::regex(R"([.])"), R"(\.)"));
    EXPECT_TRUE(std::regex_search(text.output, line)) << text.output;
  }
}

// 64 x 2048 x 2048 weights (17 MB) do not fit a message: the trial completes all the same, the
// worker and the coordinator say why its model is missing, and the index lists it without one.
TEST_F(SweepTest, AModelTooLargeForAMessageIsNamedAndTheTrialStillCompletes) {
  const std::string spec =
      write_spec("large", 1, 1, "", "epochs: 1, batch_size: 100, hidden: [2048, 2048]");
  const std::string store = file("large.db");
  const Result r = run({kTrellis, "--store", store, "run", spec, "--groups", "1"},
                       file("run.log"), 300s);
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_EQ(export_json(store, "large")["trials"][0]["state"], "completed");
  EXPECT_NE(r.output.find("trial 0 completed without its model: the final model is 16 MiB, more "
                          "than a message to the coordinator carries (15 MiB)"),
            std::string::npos)
      << r.output;
  std::ifstream in(store + ".models/large/index.json");
  const json index = json::parse(in);
  ASSERT_EQ(index["models"].size(), 1u);
  EXPECT_TRUE(index["models"][0]["file"].is_null());
  EXPECT_TRUE(shelf_models(store, "large").empty());
}

// One group, so the order of results, and with it every decision, is fixed: 6 trials reach
// rung 1 (epoch 1), the best floor(6/3) = 2 are promoted to epoch 3 and resume from their
// epoch-1 checkpoints; the other 4 end pruned with the reason.
TEST_F(SweepTest, AshaPausesTrialsAndPromotesTheBestFromTheirCheckpoints) {
  const std::string spec = write_spec(
      "asha", 6, 1, kSpace, "batch_size: 32",
      "scheduler: {type: asha, min_epochs: 1, reduction_factor: 3, max_epochs: 3}\n");
  const std::string store = file("asha.db");
  const Result r = run({kTrellis, "--store", store, "run", spec, "--groups", "1"}, file("run.log"));
  ASSERT_EQ(r.code, 0) << r.output;
  const json exported = export_json(store, "asha");
  ASSERT_EQ(exported["trials"].size(), 6u);
  std::vector<std::pair<double, int>> at_rung;  // (val_acc at epoch 1, trial)
  int epochs_trained = 0;
  std::vector<int> completed;
  for (const json& t : exported["trials"]) {
    at_rung.emplace_back(t["metrics"]["val_acc"][0][1], t["id"]);
    epochs_trained += static_cast<int>(epochs_of(t).size());
    if (t["state"] == "completed") {
      completed.push_back(t["id"]);
      EXPECT_EQ(epochs_of(t), (std::vector<int>{1, 2, 3})) << t.dump();
      EXPECT_EQ(t["attempt"], 2) << "a promotion continues the trial in a second attempt";
      EXPECT_EQ(t["target_epoch"], 3);
      EXPECT_TRUE(t["final"].contains("test_acc"));
    } else {
      EXPECT_EQ(t["state"], "pruned") << t.dump();
      EXPECT_EQ(epochs_of(t), (std::vector<int>{1})) << t.dump();
      EXPECT_NE(t["error"].get<std::string>().find("not promoted past epoch 1"), std::string::npos)
          << t.dump();
      EXPECT_TRUE(t["final"].contains("val_acc")) << "a pruned trial keeps its metrics";
    }
  }
  // The promoted are the two best at epoch 1; 6 + 2*2 epochs instead of 18.
  std::sort(at_rung.rbegin(), at_rung.rend());
  std::sort(completed.begin(), completed.end());
  std::vector<int> best_two = {at_rung[0].second, at_rung[1].second};
  std::sort(best_two.begin(), best_two.end());
  EXPECT_EQ(completed, best_two) << r.output;
  EXPECT_EQ(epochs_trained, 10);
  EXPECT_NE(r.output.find("resuming after epoch 1"), std::string::npos) << r.output;

  // The story, read back: each trial proposed once and started only after, paused at the rung,
  // the two best promoted from epoch 1 and started again, every trial ended once, and the
  // sweep's end last.
  const json& events = exported["events"];
  std::map<int, std::vector<std::string>> story;  // trial -> kinds, in order
  std::vector<int> promoted;
  for (const json& e : events) {
    if (e["trial"].is_null()) continue;
    story[e["trial"].get<int>()].push_back(e["kind"]);
    if (e["kind"] == "trial_promoted") {
      promoted.push_back(e["trial"]);
      EXPECT_EQ(e["data"]["from_epoch"], 1);
      EXPECT_EQ(e["data"]["until_epoch"], 3);
    }
  }
  ASSERT_EQ(story.size(), 6u) << events.dump();
  std::sort(promoted.begin(), promoted.end());
  EXPECT_EQ(promoted, best_two) << events.dump();
  for (const auto& [trial, kinds] : story) {
    const bool was_promoted =
        std::find(best_two.begin(), best_two.end(), trial) != best_two.end();
    const std::vector<std::string> want =
        was_promoted ? std::vector<std::string>{"trial_proposed", "attempt_started", "trial_paused",
                                                "trial_promoted", "attempt_started", "trial_ended"}
                     : std::vector<std::string>{"trial_proposed", "attempt_started", "trial_paused",
                                                "trial_ended"};
    EXPECT_EQ(kinds, want) << "trial " << trial;
  }
  ASSERT_FALSE(events.empty());
  EXPECT_EQ(events.front()["kind"], "coordinator_started");
  EXPECT_EQ(events.back()["kind"], "sweep_finished");
  for (std::size_t i = 1; i < events.size(); ++i)
    EXPECT_LT(events[i - 1]["seq"], events[i]["seq"]);

  // `trellis events` prints the same story, a line per event.
  const Result listed = run({kTrellis, "--store", store, "events", "asha"}, file("events.log"), 60s);
  ASSERT_EQ(listed.code, 0) << listed.output;
  EXPECT_EQ(static_cast<std::size_t>(std::count(listed.output.begin(), listed.output.end(), '\n')),
            events.size())
      << listed.output;
  EXPECT_NE(listed.output.find("trial_promoted"), std::string::npos) << listed.output;
}

// The weights of a trial's checkpoint file.
std::vector<float> checkpoint_weights(const fs::path& path) {
  worker::Checkpoint c;
  const Status s = worker::read_checkpoint(path.string(), &c);
  EXPECT_TRUE(s.ok()) << s.message();
  const std::vector<float>* params = c.find("params");
  EXPECT_NE(params, nullptr) << path;
  return params == nullptr ? std::vector<float>{} : *params;
}

// Largest elementwise difference; infinite when the shapes differ.
double max_difference(const std::vector<float>& a, const std::vector<float>& b) {
  if (a.size() != b.size()) return INFINITY;
  double most = 0;
  for (std::size_t i = 0; i < a.size(); ++i)
    most = std::max(most, std::abs(static_cast<double>(a[i]) - static_cast<double>(b[i])));
  return most;
}

// One group and 4 trials of PBT with a 1-epoch interval: all 4 reach epoch 1 before anyone
// continues, so the worst of them (the bottom quarter) takes the best one's weights there.
// resample_probability 0 makes the explore step exactly a perturbation. The learning rates are
// so small that an epoch moves no weight by more than ~1e-4 (Adam steps are about lr each, ~35
// of them), so the recipient's weights after its next epoch are still the donor's to within
// that, and far from its own, which came from another initialisation.
TEST_F(SweepTest, PbtExploitsTheBestTrialAndRecordsTheLineage) {
  const double low = 1e-7, high = 1e-6;
  const std::string spec = write_spec(
      "pbt", 4, 1,
      "    lr: {type: log_float, low: 1.0e-7, high: 1.0e-6}\n"
      "    hidden_units: {type: int, low: 8, high: 32}\n"
      "    activation: {type: categorical, values: [relu, tanh]}\n",
      "batch_size: 32",
      "scheduler: {type: pbt, interval: 1, quantile: 0.25, resample_probability: 0, "
      "max_epochs: 3}\n");
  const std::string store = file("pbt.db");
  const Result r = run({kTrellis, "--store", store, "run", spec, "--groups", "1"}, file("run.log"));
  ASSERT_EQ(r.code, 0) << r.output;
  const json exported = export_json(store, "pbt");
  ASSERT_EQ(exported["trials"].size(), 4u);
  double best = -1, worst = 2;
  int best_trial = -1, worst_trial = -1;
  for (const json& t : exported["trials"]) {
    EXPECT_EQ(t["state"], "completed") << t.dump();
    EXPECT_EQ(epochs_of(t), (std::vector<int>{1, 2, 3})) << t.dump();
    const double acc = t["metrics"]["val_acc"][0][1];
    if (acc > best) best = acc, best_trial = t["id"];
    if (acc < worst) worst = acc, worst_trial = t["id"];
  }
  ASSERT_NE(best_trial, worst_trial) << "tied trials make the test meaningless";
  const json& recipient = exported["trials"][worst_trial];
  const json& donor = exported["trials"][best_trial];
  ASSERT_GE(recipient["lineage"].size(), 1u) << recipient.dump();
  const json& exploit = recipient["lineage"][0];
  EXPECT_EQ(exploit["epoch"], 1);
  EXPECT_EQ(exploit["donor"], best_trial);
  EXPECT_EQ(exploit["donor_epoch"], 1);
  EXPECT_NE(exploit["params_after"], exploit["params_before"]);
  EXPECT_NE(exploit["reason"].get<std::string>().find("bottom 1 of 4"), std::string::npos);
  if (recipient["lineage"].size() == 1) EXPECT_EQ(recipient["params"], exploit["params_after"]);

  // The donor's hyperparameters when it reached epoch 1: the best there is never exploited
  // at epoch 1, but may be later, and then its own lineage holds what it had before.
  const json& donor_params =
      donor["lineage"].empty() ? donor["params"] : donor["lineage"][0]["params_before"];
  const json& after = exploit["params_after"];
  // Everything but lr is the donor's: hidden_units and activation define the weights, batch_size
  // is fixed. lr is the donor's times 0.8 or 1.2, kept inside [low, high).
  ASSERT_EQ(after.size(), donor_params.size()) << after.dump() << donor_params.dump();
  for (const auto& [name, value] : donor_params.items()) {
    if (name == "lr") continue;
    EXPECT_EQ(after[name], value) << name << ": " << after.dump() << " vs " << donor_params.dump();
  }
  const double donor_lr = donor_params["lr"], lr = after["lr"];
  const double top = std::nextafter(high, low);
  const double down = std::clamp(donor_lr * 0.8, low, top), up = std::clamp(donor_lr * 1.2, low, top);
  EXPECT_TRUE(lr == down || lr == up)
      << "lr " << lr << " is neither " << down << " nor " << up << " (donor " << donor_lr << ")";

  // The recipient trained epoch 2 from the donor's weights: its epoch-2 checkpoint is the
  // donor's epoch-1 snapshot moved by one epoch of tiny steps, and not its own epoch 1.
  const fs::path checkpoints = dir_ / "checkpoints" / "pbt";
  const auto base = [&](int trial) { return "trial-" + std::to_string(trial) + ".ckpt"; };
  const std::vector<float> donor_1 = checkpoint_weights(checkpoints / (base(best_trial) + ".pbt-1"));
  const std::vector<float> own_1 = checkpoint_weights(checkpoints / (base(worst_trial) + ".pbt-1"));
  const std::vector<float> after_2 =
      checkpoint_weights(checkpoints / (base(worst_trial) + ".epoch-2"));
  ASSERT_FALSE(donor_1.empty());
  ASSERT_GT(max_difference(own_1, donor_1), 1e-2) << "the two trials started alike";
  EXPECT_LT(max_difference(after_2, donor_1), 1e-3);
  EXPECT_GT(max_difference(after_2, own_1), 1e-2);
}

// On a cluster the checkpoints go to the compute nodes' scratch, which the login node does not
// mount. Here the worker group runs in a mount namespace of its own with a private tmpfs over
// scratch/: the coordinator sees an empty directory there from start to end. PBT continues
// trials from their own checkpoints and exploits other trials' snapshots, so every way a
// coordinator once touched a checkpoint file is exercised; the sweep must equal, trial for
// trial and bit for bit, the same spec run with checkpoints the coordinator can see.
TEST_F(SweepTest, CheckpointsTheCoordinatorCannotSeeChangeNoTrial) {
  const fs::path scratch = dir_ / "scratch";
  fs::create_directories(scratch);
  const Result probe = run({"unshare", "--mount", "--propagation", "private", "sh", "-c",
                            "mount -t tmpfs tmpfs \"$0\"", scratch.string()},
                           file("probe.log"), 30s);
  if (probe.code != 0)
    GTEST_SKIP() << "cannot hide a directory in a mount namespace here (unshare --mount and a "
                    "tmpfs mount need CAP_SYS_ADMIN): "
                 << probe.output;
  const std::string spec = write_spec(
      "hidden", 6, 1, kSpace, "batch_size: 32",
      "scheduler: {type: pbt, interval: 1, quantile: 0.34, max_epochs: 3}\n");
  const Result seen = run({kTrellis, "--store", file("seen.db"), "run", spec, "--groups", "1",
                           "--insecure"},
                          file("seen.log"));
  ASSERT_EQ(seen.code, 0) << seen.output;

  const std::string store = file("hidden.db");
  const std::string endpoint = "tcp://127.0.0.1:" + std::to_string(free_loopback_port());
  Process serve({kTrellis, "--store", store, "serve", spec, "--bind", endpoint, "--insecure",
                 "--checkpoints", (scratch / "checkpoints").string()},
                file("serve.log"));
  Process group({"unshare", "--mount", "--propagation", "private", "sh", "-c",
                 "mount -t tmpfs tmpfs \"$0\" && exec \"$@\"", scratch.string(), "mpirun",
                 "-np", "1", "--bind-to", "none", kWorker, "--connect", endpoint, "--insecure"},
                file("group.log"));
  ASSERT_EQ(serve.wait(300s), 0) << serve.log() << group.log();
  ASSERT_EQ(group.wait(60s), 0) << group.log();
  EXPECT_TRUE(fs::is_empty(scratch)) << "the worker's checkpoints leaked to the coordinator's view";

  const json want = export_json(file("seen.db"), "hidden");
  const json got = export_json(store, "hidden");
  ASSERT_EQ(got["trials"].size(), want["trials"].size());
  int exploits = 0;
  for (std::size_t i = 0; i < want["trials"].size(); ++i) {
    const json& t = got["trials"][i];
    const json& w = want["trials"][i];
    EXPECT_EQ(t["state"], "completed") << t.dump();
    EXPECT_EQ(t["params"], w["params"]) << "trial " << i;
    for (const char* name : {"train_loss", "val_loss", "val_acc"})
      EXPECT_EQ(t["metrics"][name], w["metrics"][name]) << "trial " << i << " " << name;
    EXPECT_EQ(t["final"], w["final"]) << "trial " << i;
    EXPECT_EQ(t["lineage"], w["lineage"]) << "trial " << i;
    exploits += static_cast<int>(t["lineage"].size());
  }
  EXPECT_GT(exploits, 0) << "no trial exploited another: the snapshots were never read";
  // The best five trials' models reach the store's side all the same, bit for bit as when the
  // coordinator could see the checkpoints.
  const std::map<int, worker::Checkpoint> kept = shelf_models(store, "hidden");
  const std::map<int, worker::Checkpoint> kept_seen = shelf_models(file("seen.db"), "hidden");
  ASSERT_EQ(kept.size(), 5u) << serve.log();
  ASSERT_EQ(kept_seen.size(), 5u);
  for (const auto& [number, model] : kept) {
    ASSERT_EQ(kept_seen.count(number), 1u) << "trial " << number;
    EXPECT_EQ(model.buffers, kept_seen.at(number).buffers) << "trial " << number;
  }
}

// The checkpoint directory cannot be written (a file sits where it should be made), so the
// trials pause without checkpoints: each promotion fails that trial with the reason, and the
// sweep goes on to the end.
TEST_F(SweepTest, APromotionWhoseCheckpointIsMissingFailsThatTrialAndTheSweepGoesOn) {
  const std::string spec = write_spec(
      "nockpt", 6, 1, kSpace, "batch_size: 32",
      "scheduler: {type: asha, min_epochs: 1, reduction_factor: 3, max_epochs: 3}\n");
  write_text(file("blocker"), "not a directory\n");
  const Result r = run({kTrellis, "--store", file("nockpt.db"), "run", spec, "--groups", "1",
                        "--checkpoints", file("blocker") + "/checkpoints"},
                       file("run.log"));
  ASSERT_EQ(r.code, 0) << r.output;
  const json exported = export_json(file("nockpt.db"), "nockpt");
  int failed = 0, pruned = 0;
  for (const json& t : exported["trials"]) {
    if (t["state"] == "failed") {
      ++failed;
      EXPECT_NE(t["error"].get<std::string>().find("is missing"), std::string::npos) << t.dump();
      EXPECT_NE(t["error"].get<std::string>().find("promoted from epoch 1 to 3"), std::string::npos)
          << t.dump();
    }
    if (t["state"] == "pruned") ++pruned;
  }
  EXPECT_EQ(failed, 2) << r.output;
  EXPECT_EQ(pruned, 4) << r.output;
}

// Two groups, but at most one trial at a time, and 5 epochs in all: two 2-epoch trials fit,
// a third would overrun the budget and is never started.
TEST_F(SweepTest, TheEpochBudgetAndTheConcurrencyLimitHold) {
  std::string spec = write_spec("budget", 10, 1, kSpace, "epochs: 2, batch_size: 32");
  std::string text = read_file(spec);
  text.replace(text.find("  trials: 10\n"), 12, "  trials: 10\n  budget_epochs: 5\n");
  text.replace(text.find("resources: {"), 12, "resources: {max_concurrent_trials: 1, ");
  write_text(spec, text);
  const Result r = run({kTrellis, "--store", file("budget.db"), "run", spec, "--groups", "2"},
                       file("run.log"));
  ASSERT_EQ(r.code, 0) << r.output;
  const json exported = export_json(file("budget.db"), "budget");
  ASSERT_EQ(exported["trials"].size(), 2u) << r.output;
  for (const json& t : exported["trials"]) EXPECT_EQ(t["state"], "completed") << t.dump();
  for (const json& t : exported["trials"]) EXPECT_EQ(t["attempt"], 1) << t.dump();
  // The coordinator logs each start and each end from its one thread as it decides them, so
  // the order of those lines is the order of the decisions: replayed, at most one trial may
  // be running at any point. Timestamps could not show this (equal to the millisecond, or
  // from clocks that step).
  static const std::regex kEvent(
      R"(\[trellis\] \[[a-z]+\] trial (\d+) (\(attempt \d+[^)]*\) -> group|completed|pruned|failed|paused))");
  std::istringstream lines(r.output);
  std::string line;
  std::set<std::string> running, started, ended;
  std::size_t most_running = 0;
  while (std::getline(lines, line)) {
    std::smatch m;
    if (!std::regex_search(line, m, kEvent)) continue;
    if (m[2].str().rfind("(attempt", 0) == 0) {
      EXPECT_TRUE(started.insert(m[1]).second) << "trial " << m[1] << " started twice";
      running.insert(m[1]);
    } else {
      EXPECT_EQ(running.erase(m[1]), 1u) << "trial " << m[1] << " ended while not running";
      ended.insert(m[1]);
    }
    most_running = std::max(most_running, running.size());
  }
  EXPECT_EQ(started, (std::set<std::string>{"0", "1"})) << r.output;
  EXPECT_EQ(ended, started) << r.output;
  EXPECT_EQ(most_running, 1u) << r.output;
  EXPECT_NE(r.output.find("epoch budget: 4 of 5 epochs assigned"), std::string::npos) << r.output;
}

// The median rule stops trials through the running group: the Stop reaches the agent, the
// group ends the trial early (an epoch or so later on this tiny dataset), and the store keeps
// its metrics with the reason.
TEST_F(SweepTest, TheMedianRuleStopsTrialsWorseThanTheOthers) {
  const std::string spec = write_spec(
      "median", 8, 1, kSpace, "epochs: 6, batch_size: 32",
      "scheduler: {type: median, min_epochs: 1, min_trials: 1}\n");
  const Result r = run({kTrellis, "--store", file("median.db"), "run", spec, "--groups", "1"},
                       file("run.log"));
  ASSERT_EQ(r.code, 0) << r.output;
  const json exported = export_json(file("median.db"), "median");
  int pruned = 0;
  for (const json& t : exported["trials"]) {
    if (t["state"] != "pruned") {
      EXPECT_EQ(t["state"], "completed") << t.dump();
      EXPECT_EQ(epochs_of(t).size(), 6u) << t.dump();
      continue;
    }
    ++pruned;
    EXPECT_NE(t["error"].get<std::string>().find("median stopping rule at epoch"), std::string::npos)
        << t.dump();
    EXPECT_GE(epochs_of(t).size(), 1u);
    EXPECT_TRUE(t["final"].contains("test_acc")) << "a stopped trial is still evaluated";
  }
  EXPECT_GE(pruned, 1) << r.output;
}

TEST_F(SweepTest, BadSpecsStopWithFileLineAndField) {
  struct Case {
    std::string text;
    std::vector<std::string> expected;
  };
  const std::string dataset = "dataset: {path: " + data_.string() + "}\n";
  const std::vector<Case> cases = {
      {"name: s\n" + dataset + "search: {trials: 2\n", {"bad.yaml:", "YAML syntax error"}},
      {"name: s\n" + dataset + "search: {trials: 2}\ntrain: {epoch: 3}\n",
       {"bad.yaml:4:9", "unknown key 'epoch'", "did you mean 'epochs'"}},
      {"name: s\n" + dataset + "search: {trials: many}\n",
       {"bad.yaml:3:18", "search.trials", "integer"}},
      {"name: s\ndataset: {path: /no/such/data}\nsearch: {trials: 2}\n",
       {"bad.yaml:2:17", "dataset.path", "/no/such/data", "does not exist"}},
  };
  for (const Case& c : cases) {
    const std::string path = file("bad.yaml");
    write_text(path, c.text);
    const Result r = run({kTrellis, "--store", file("bad.db"), "run", path}, file("bad.log"), 60s);
    EXPECT_EQ(r.code, 1) << r.output;
    for (const auto& e : c.expected) EXPECT_NE(r.output.find(e), std::string::npos) << r.output;
  }
}

TEST_F(SweepTest, AWorkerPointedAtAClosedEndpointSaysSoAndExits) {
  const std::string endpoint = "tcp://127.0.0.1:" + std::to_string(free_loopback_port());
  const Result r = run({"mpirun", "-np", "1", kWorker, "--connect", endpoint, "--timeout", "2",
                        "--insecure"},
                       file("lonely.log"), 60s);
  EXPECT_NE(r.code, 0) << r.output;
  EXPECT_NE(r.code, -1) << "the worker hung";
  EXPECT_NE(r.output.find("no answer from the coordinator at " + endpoint), std::string::npos)
      << r.output;
}

}  // namespace
}  // namespace trellis::testing
