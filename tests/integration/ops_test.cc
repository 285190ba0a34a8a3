// Housekeeping with real processes (`trellis run` / `serve`, mpirun worker groups, SQLite
// files): `trellis status` while a sweep runs and after it, a sweep stopped by a dataset error
// no trial can survive (and one that goes on past a trial's own error), `trellis rm`, and the
// export's format version.

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <sqlite3.h>
#include <unistd.h>

#include <csignal>
#include <filesystem>
#include <regex>
#include <thread>

#include "tests/integration/binaries.h"
#include "tests/integration/process.h"
#include "tests/worker/idx_fixture.h"

namespace trellis::testing {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using namespace std::chrono_literals;

class OpsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    setenv("OMPI_ALLOW_RUN_AS_ROOT", "1", 1);
    setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1", 1);
  }
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = worker::testing::fresh_dir(std::string("ops_") + info->name());
    setenv("TRELLIS_HOME", (dir_ / "keys").c_str(), 1);
  }
  void TearDown() override {
    unsetenv("TRELLIS_HOME");
    if (!HasFailure()) fs::remove_all(dir_);
  }

  // A dataset of `rows` training images of side `side` in DIR/NAME.
  fs::path dataset(const std::string& name, std::int64_t rows, int side) {
    const fs::path data = dir_ / name;
    fs::create_directories(data);
    worker::testing::write_dataset(data, worker::testing::make_pattern_data(rows, side, 1),
                                   worker::testing::make_pattern_data(rows / 5, side, 2),
                                   /*gz=*/false);
    return data;
  }

  std::string spec(const std::string& name, const fs::path& data, const std::string& search,
                   const std::string& train) {
    const std::string path = (dir_ / (name + ".yaml")).string();
    write_text(path, "name: " + name + "\n"
                     "dataset: {name: patterns, path: " + data.string() + "}\n"
                     "metric: {name: val_acc, mode: max}\n"
                     "search:\n" + search +
                     "train: {" + train + "}\n"
                     "resources: {ranks_per_trial: 1}\n");
    return path;
  }

  std::string file(const std::string& name) const { return (dir_ / name).string(); }

  Result trellis(const std::string& store, std::vector<std::string> args, const std::string& log) {
    std::vector<std::string> argv = {kTrellis, "--store", store};
    argv.insert(argv.end(), args.begin(), args.end());
    return run(argv, file(log), 120s);
  }

  // `trellis run SPEC --groups 1`.
  Result run_sweep(const std::string& store, const std::string& spec_path, const std::string& log) {
    return trellis(store, {"run", spec_path, "--groups", "1"}, log);
  }

  json export_json(const std::string& store, const std::string& experiment) {
    const Result r = trellis(store, {"export", experiment}, "export.log");
    EXPECT_EQ(r.code, 0) << r.output;
    return json::parse(r.output.substr(r.output.find('{')));
  }

  fs::path dir_;
};

// The line of `text` that starts with `label` (status prints "label: value"), or "".
std::string line_of(const std::string& text, const std::string& label) {
  std::istringstream lines(text);
  for (std::string line; std::getline(lines, line);)
    if (line.rfind(label, 0) == 0) return line;
  return "";
}

std::string host_name() {
  char host[256] = {};
  gethostname(host, sizeof host - 1);
  return host;
}

TEST_F(OpsTest, StatusFollowsASweepWhileItRunsAndAfterItEnds) {
  // Big enough that an epoch takes a while, so the group is seen mid-trial.
  const fs::path data = dataset("data", 30000, 32);
  const std::string spec_path =
      spec("followed", data, "  seed: 5\n  trials: 2\n", "epochs: 6, batch_size: 64");
  const std::string store = file("followed.db");
  const std::string endpoint = "tcp://127.0.0.1:" + std::to_string(free_loopback_port());
  Process serve({kTrellis, "--store", store, "serve", spec_path, "--bind", endpoint, "--insecure"},
                file("serve.log"));
  ASSERT_TRUE(wait_for(serve, "listening", 60s)) << serve.log();

  // Served, nothing connected yet: no rate to estimate from.
  Result before = trellis(store, {"status", "followed"}, "status0.log");
  ASSERT_EQ(before.code, 0) << before.output;
  EXPECT_NE(line_of(before.output, "coordinator:")
                .find("pid " + std::to_string(serve.pid()) + " on " + host_name()),
            std::string::npos)
      << before.output;
  EXPECT_NE(line_of(before.output, "coordinator:").find("serving"), std::string::npos)
      << before.output;
  EXPECT_EQ(line_of(before.output, "groups:"), "groups:      0 connected") << before.output;
  EXPECT_NE(line_of(before.output, "time left:").find("unknown"), std::string::npos)
      << before.output;
  EXPECT_NE(line_of(before.output, "epochs:").find("0 of 12 (trials x epochs)"), std::string::npos)
      << before.output;

  // A group joins while the coordinator serves: status names it and the trial and epoch it is
  // at, read from the store while the coordinator writes it.
  Process worker({"mpirun", "-np", "1", "--oversubscribe", "--bind-to", "none", kWorker,
                  "--connect", endpoint, "--insecure"},
                 file("worker.log"));
  const std::regex running("\\n  (" + host_name() +
                           ":[0-9]+)  trial ([01]) \\(attempt 1\\), epoch ([1-6]) of 6, since ");
  std::string during;
  std::smatch m;
  for (int i = 0; i < 600 && serve.running(); ++i) {
    during = trellis(store, {"status", "followed"}, "status1.log").output;
    if (std::regex_search(during, m, running)) break;
    std::this_thread::sleep_for(100ms);
  }
  ASSERT_TRUE(std::regex_search(during, m, running)) << during << serve.log();
  EXPECT_EQ(line_of(during, "groups:"), "groups:      1 connected") << during;
  EXPECT_NE(serve.log().find("group '" + m[1].str() + "' joined"), std::string::npos)
      << m[1] << "\n" << serve.log();
  // An epoch was reported, so there is a rate and an estimate.
  EXPECT_NE(line_of(during, "time left:").find("epochs/s observed"), std::string::npos) << during;

  ASSERT_EQ(serve.wait(300s), 0) << serve.log();
  ASSERT_EQ(worker.wait(60s), 0) << worker.log();

  const Result after = trellis(store, {"status", "followed"}, "status2.log");
  ASSERT_EQ(after.code, 0) << after.output;
  EXPECT_NE(after.output.find("experiment followed: completed, 2 trial(s) of 2 planned, 2 completed"),
            std::string::npos)
      << after.output;
  EXPECT_NE(line_of(after.output, "coordinator:").find("not running"), std::string::npos)
      << after.output;
  EXPECT_EQ(line_of(after.output, "epochs:"),
            "epochs:      12 of 12 (the sweep finished: every epoch its trials trained)")
      << after.output;
  EXPECT_EQ(line_of(after.output, "time left:"), "time left:   none: the sweep finished")
      << after.output;
  // The best is the export's best.
  const json exported = export_json(store, "followed");
  int best = -1;
  double best_acc = -1;
  for (const json& t : exported["trials"])
    if (t["final"]["val_acc"].get<double>() > best_acc)
      best_acc = t["final"]["val_acc"], best = t["id"];
  EXPECT_NE(line_of(after.output, "best:").find("trial " + std::to_string(best) + ", val_acc "),
            std::string::npos)
      << after.output << exported["trials"].dump();

  // Without a name: every experiment, a line each.
  const std::string small_spec = spec("small", dataset("small", 600, 8), "  seed: 1\n  trials: 1\n",
                                      "epochs: 1, batch_size: 32");
  ASSERT_EQ(run_sweep(store, small_spec, "small.log").code, 0);
  const Result all = trellis(store, {"status"}, "status3.log");
  ASSERT_EQ(all.code, 0) << all.output;
  EXPECT_NE(all.output.find("followed  completed  2/2 trials (2 completed)  epochs 12 of 12  best "
                            "trial " + std::to_string(best)),
            std::string::npos)
      << all.output;
  EXPECT_NE(all.output.find("\nsmall  completed  1/1 trials (1 completed)  epochs 1 of 1"),
            std::string::npos)
      << all.output;
}

TEST_F(OpsTest, AMissingDatasetFileStopsTheSweepAfterTheFirstTrial) {
  const fs::path data = dataset("data", 1200, 8);
  const fs::path labels = data / "train-labels-idx1-ubyte";
  ASSERT_TRUE(fs::exists(labels));
  fs::rename(labels, dir_ / "labels.aside");
  const std::string spec_path = spec("broken", data,
                                     "  seed: 3\n  trials: 4\n  space:\n"
                                     "    lr: {type: log_float, low: 1.0e-3, high: 1.0e-2}\n",
                                     "epochs: 2, batch_size: 32");
  const std::string store = file("broken.db");
  const Result r = run_sweep(store, spec_path, "run.log");
  EXPECT_NE(r.code, 0) << r.output;
  EXPECT_NE(r.output.find("trial 0 failed on the dataset, which every trial reads"),
            std::string::npos)
      << r.output;
  EXPECT_NE(r.output.find(labels.filename().string()), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("3 trial(s) never started"), std::string::npos) << r.output;

  const json exported = export_json(store, "broken");
  EXPECT_EQ(exported["experiment"]["state"], "failed");
  ASSERT_EQ(exported["trials"].size(), 1u) << exported["trials"].dump();
  EXPECT_EQ(exported["trials"][0]["state"], "failed");
  EXPECT_NE(exported["trials"][0]["error"].get<std::string>().find(labels.filename().string()),
            std::string::npos)
      << exported["trials"][0].dump();
  int stops = 0;
  for (const json& e : exported["events"]) {
    if (e["kind"] != "sweep_stopped") continue;
    ++stops;
    EXPECT_EQ(e["trial"], 0) << e.dump();
    EXPECT_NE(e["data"]["reason"].get<std::string>().find(labels.filename().string()),
              std::string::npos)
        << e.dump();
    EXPECT_EQ(e["data"]["never_started"], 3) << e.dump();
  }
  EXPECT_EQ(stops, 1) << exported["events"].dump();
  const Result status = trellis(store, {"status", "broken"}, "status.log");
  EXPECT_NE(status.output.find("experiment broken: failed, 1 trial(s) of 4 planned, 1 failed"),
            std::string::npos)
      << status.output;
  EXPECT_NE(line_of(status.output, "stopped:").find(labels.filename().string()), std::string::npos)
      << status.output;

  // The dataset fixed, the same command resumes: the failed trial stays failed, the others run.
  fs::rename(dir_ / "labels.aside", labels);
  const Result again = run_sweep(store, spec_path, "again.log");
  ASSERT_EQ(again.code, 0) << again.output;
  const json resumed = export_json(store, "broken");
  EXPECT_EQ(resumed["experiment"]["state"], "completed");
  ASSERT_EQ(resumed["trials"].size(), 4u);
  EXPECT_EQ(resumed["trials"][0]["state"], "failed");
  for (int t = 1; t < 4; ++t) EXPECT_EQ(resumed["trials"][t]["state"], "completed") << t;
}

// Two groups: whichever trial fails first stops the sweep; a trial the other group was running
// then goes back to pending (not failed), and no further trial starts.
TEST_F(OpsTest, ADatasetErrorWithTwoGroupsFailsOneTrialAndRequeuesTheOther) {
  const fs::path data = dataset("data", 1200, 8);
  fs::remove(data / "t10k-images-idx3-ubyte");
  const std::string spec_path = spec("broken2", data, "  seed: 3\n  trials: 6\n",
                                     "epochs: 2, batch_size: 32");
  const std::string store = file("broken2.db");
  const Result r = trellis(store, {"run", spec_path, "--groups", "2"}, "run.log");
  EXPECT_EQ(r.code, 1) << r.output;
  EXPECT_NE(r.output.find("t10k-images-idx3-ubyte"), std::string::npos) << r.output;
  const json exported = export_json(store, "broken2");
  EXPECT_EQ(exported["experiment"]["state"], "failed");
  int failed = 0, pending = 0;
  for (const json& t : exported["trials"]) {
    failed += t["state"] == "failed";
    pending += t["state"] == "pending";
  }
  EXPECT_EQ(failed, 1) << exported["trials"].dump();
  EXPECT_EQ(failed + pending, static_cast<int>(exported["trials"].size()))
      << exported["trials"].dump();
  EXPECT_LE(exported["trials"].size(), 2u) << "a trial started after the stop";
  int stops = 0;
  for (const json& e : exported["events"]) {
    if (e["kind"] != "sweep_stopped") continue;
    ++stops;
    EXPECT_EQ(e["data"]["requeued"], pending) << e.dump();
    EXPECT_EQ(e["data"]["never_started"], 6 - static_cast<int>(exported["trials"].size()));
  }
  EXPECT_EQ(stops, 1);
}

TEST_F(OpsTest, ATrialsOwnErrorDoesNotStopTheSweep) {
  // batch_size 5000 is more than the 1080 training rows: that trial's fault, not the dataset's.
  const fs::path data = dataset("data", 1200, 8);
  const std::string spec_path =
      spec("goes-on", data,
           "  algorithm: grid\n  seed: 3\n  space:\n"
           "    batch_size: {type: categorical, values: [5000, 32, 64]}\n",
           "epochs: 1");
  const std::string store = file("goes-on.db");
  const Result r = run_sweep(store, spec_path, "run.log");
  ASSERT_EQ(r.code, 0) << r.output;
  const json exported = export_json(store, "goes-on");
  EXPECT_EQ(exported["experiment"]["state"], "completed");
  ASSERT_EQ(exported["trials"].size(), 3u);
  int failed = 0, completed = 0;
  for (const json& t : exported["trials"]) {
    if (t["state"] == "failed") {
      ++failed;
      EXPECT_EQ(t["params"]["batch_size"], 5000) << t.dump();
      EXPECT_NE(t["error"].get<std::string>().find("batch_size 5000 exceeds"), std::string::npos)
          << t.dump();
    }
    completed += t["state"] == "completed";
  }
  EXPECT_EQ(failed, 1);
  EXPECT_EQ(completed, 2);
  for (const json& e : exported["events"]) EXPECT_NE(e["kind"], "sweep_stopped") << e.dump();
}

// Rows per experiment in every table of the store that names an experiment or a trial.
std::map<std::string, std::int64_t> rows_of(const std::string& store, std::int64_t experiment) {
  sqlite3* db = nullptr;
  EXPECT_EQ(sqlite3_open_v2(store.c_str(), &db, SQLITE_OPEN_READONLY, nullptr), SQLITE_OK);
  std::map<std::string, std::int64_t> out;
  std::vector<std::pair<std::string, std::string>> tables;
  sqlite3_stmt* st = nullptr;
  sqlite3_prepare_v2(db,
                     "SELECT m.name, c.name FROM sqlite_master m, pragma_table_info(m.name) c "
                     "WHERE m.type = 'table' AND c.name IN ('experiment_id', 'trial_id', 'donor_id')",
                     -1, &st, nullptr);
  while (sqlite3_step(st) == SQLITE_ROW)
    tables.emplace_back(reinterpret_cast<const char*>(sqlite3_column_text(st, 0)),
                        reinterpret_cast<const char*>(sqlite3_column_text(st, 1)));
  sqlite3_finalize(st);
  tables.emplace_back("experiments", "id");
  for (const auto& [table, column] : tables) {
    const std::string sql =
        column == "experiment_id" || column == "id"
            ? "SELECT COUNT(*) FROM " + table + " WHERE " + column + " = ?1"
            : "SELECT COUNT(*) FROM " + table + " WHERE " + column +
                  " IN (SELECT id FROM trials WHERE experiment_id = ?1)";
    sqlite3_prepare_v2(db, sql.c_str(), -1, &st, nullptr);
    sqlite3_bind_int64(st, 1, experiment);
    if (sqlite3_step(st) == SQLITE_ROW) out[table + "." + column] = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
  }
  sqlite3_close(db);
  return out;
}

TEST_F(OpsTest, RmRemovesOneExperimentsRowsAndFilesAndRefusesWhatItMust) {
  const fs::path data = dataset("data", 1200, 8);
  const std::string search = "  seed: 3\n  trials: 2\n  space:\n"
                             "    lr: {type: log_float, low: 1.0e-3, high: 1.0e-2}\n";
  const std::string store = file("shared.db");
  for (const char* name : {"doomed", "kept"}) {
    const Result r = run_sweep(store, spec(name, data, search, "epochs: 2, batch_size: 32"),
                               std::string(name) + ".log");
    ASSERT_EQ(r.code, 0) << r.output;
  }
  const json doomed = export_json(store, "doomed");
  const json kept = export_json(store, "kept");
  EXPECT_EQ(doomed["format_version"], 2);
  const std::int64_t doomed_id = doomed["experiment"]["id"], kept_id = kept["experiment"]["id"];
  const auto kept_rows = rows_of(store, kept_id);
  const auto doomed_rows = rows_of(store, doomed_id);
  EXPECT_GT(doomed_rows.at("reports.trial_id"), 0);
  EXPECT_GT(doomed_rows.at("events.experiment_id"), 0);
  const fs::path checkpoints = dir_ / "checkpoints", models = dir_ / "shared.db.models";
  ASSERT_TRUE(fs::exists(checkpoints / "doomed")) << "no checkpoints to remove";
  ASSERT_TRUE(fs::exists(models / "doomed" / "index.json")) << "no models to remove";

  // stdin is no terminal: without --yes nothing goes.
  const Result refused =
      run({"sh", "-c", "exec \"$0\" --store \"$1\" rm doomed < /dev/null", kTrellis, store},
          file("rm0.log"), 60s);
  EXPECT_EQ(refused.code, 1) << refused.output;
  EXPECT_NE(refused.output.find("without --yes: stdin is not a terminal"), std::string::npos)
      << refused.output;
  EXPECT_EQ(rows_of(store, doomed_id), doomed_rows);

  // On a terminal (script(1) gives it one) it asks, and anything but y keeps everything.
  const Result asked = run({"sh", "-c", "echo n | script -qec \"$0 --store $1 rm doomed\" /dev/null",
                            kTrellis, store},
                           file("rm_asked.log"), 60s);
  EXPECT_NE(asked.output.find("delete experiment 'doomed' (completed, 2 trial(s)) from " + store),
            std::string::npos)
      << asked.output;
  EXPECT_NE(asked.output.find("? [y/N]"), std::string::npos) << asked.output;
  EXPECT_NE(asked.output.find("nothing removed"), std::string::npos) << asked.output;
  EXPECT_EQ(rows_of(store, doomed_id), doomed_rows);

  // Unknown names are named, with what exists.
  const Result unknown = trellis(store, {"rm", "doomd", "--yes"}, "rm1.log");
  EXPECT_EQ(unknown.code, 1);
  EXPECT_NE(unknown.output.find("no experiment 'doomd'"), std::string::npos) << unknown.output;
  EXPECT_NE(unknown.output.find("doomed"), std::string::npos) << unknown.output;

  // A coordinator serves a third experiment (no group joins, so it serves until stopped):
  // rm refuses that one and says which process serves it, and removes the others meanwhile.
  const std::string endpoint = "tcp://127.0.0.1:" + std::to_string(free_loopback_port());
  Process serve({kTrellis, "--store", store, "serve", spec("busy", data, search, "epochs: 2"),
                 "--bind", endpoint, "--insecure"},
                file("serve.log"));
  ASSERT_TRUE(wait_for(serve, "listening", 60s)) << serve.log();
  const Result busy = trellis(store, {"rm", "busy", "--yes"}, "rm2.log");
  EXPECT_EQ(busy.code, 1) << busy.output;
  EXPECT_NE(busy.output.find("experiment 'busy' is being served by coordinator pid " +
                             std::to_string(serve.pid())),
            std::string::npos)
      << busy.output;
  EXPECT_NE(busy.output.find("nothing was removed"), std::string::npos) << busy.output;

  const Result removed = trellis(store, {"rm", "doomed", "--yes"}, "rm3.log");
  ASSERT_EQ(removed.code, 0) << removed.output;
  EXPECT_NE(removed.output.find("removed experiment 'doomed' from " + store), std::string::npos)
      << removed.output;
  EXPECT_NE(removed.output.find("removed " + (checkpoints / "doomed").string()), std::string::npos)
      << removed.output;
  EXPECT_NE(removed.output.find("removed " + (models / "doomed").string()), std::string::npos)
      << removed.output;
  for (const auto& [table, n] : rows_of(store, doomed_id)) EXPECT_EQ(n, 0) << table;
  EXPECT_EQ(rows_of(store, kept_id), kept_rows);
  EXPECT_FALSE(fs::exists(checkpoints / "doomed"));
  EXPECT_FALSE(fs::exists(models / "doomed"));
  EXPECT_TRUE(fs::exists(checkpoints / "kept"));
  EXPECT_TRUE(fs::exists(models / "kept" / "index.json"));
  EXPECT_EQ(export_json(store, "kept"), kept);
  const Result gone = trellis(store, {"export", "doomed"}, "export2.log");
  EXPECT_NE(gone.output.find("no experiment 'doomed'"), std::string::npos) << gone.output;

  // Once its coordinator is stopped, the served one goes too.
  serve.kill_group(SIGTERM);
  EXPECT_NE(serve.wait(60s), -1) << serve.log();
  const Result later = trellis(store, {"rm", "busy", "--yes"}, "rm4.log");
  EXPECT_EQ(later.code, 0) << later.output;
  EXPECT_EQ(rows_of(store, kept_id), kept_rows);
}

}  // namespace
}  // namespace trellis::testing
