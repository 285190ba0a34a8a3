// A live coordinator fed every kind of bad frame keeps serving: each is rejected and logged,
// nothing reaches the store, and a real worker group then completes the sweep.

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <zmq.hpp>
#include <zmq_addon.hpp>

#include <signal.h>

#include <cmath>
#include <filesystem>
#include <limits>
#include <regex>
#include <thread>

#include "common/protocol.h"
#include "tests/integration/binaries.h"
#include "tests/integration/process.h"
#include "tests/integration/raw_client.h"
#include "tests/worker/idx_fixture.h"

namespace trellis::testing {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using namespace std::chrono_literals;

constexpr double kPlanted = 12345.0;  // a metric value no real trial reports

TEST(MalformedTest, EveryBadFrameIsRejectedAndTheSweepStillCompletes) {
  setenv("OMPI_ALLOW_RUN_AS_ROOT", "1", 1);
  setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1", 1);
  const fs::path dir = worker::testing::fresh_dir("malformed");
  fs::create_directories(dir / "data");
  worker::testing::write_dataset(dir / "data", worker::testing::make_pattern_data(4000, 8, 1),
                                 worker::testing::make_pattern_data(300, 8, 2), /*gz=*/false);
  const std::string spec = (dir / "m.yaml").string();
  write_text(spec, "name: m\ndataset: {path: " + (dir / "data").string() + "}\n"
                   "search: {seed: 3, trials: 3}\ntrain: {epochs: 3, batch_size: 32}\n");
  const std::string store = (dir / "m.db").string();
  const std::string endpoint = "tcp://127.0.0.1:" + std::to_string(free_loopback_port());
  Process serve({kTrellis, "--store", store, "serve", spec, "--bind", endpoint, "--insecure"},
                (dir / "serve.log").string());
  ASSERT_TRUE(wait_for(serve, "listening", 30s)) << serve.log();

  zmq::context_t context;
  RawClient rogue(context, endpoint, "rogue");
  rogue.send(std::string("\xc1\xc1 not msgpack at all"));                        // garbage
  const std::string hello = encode(Hello{"rogue", 1, "h", 1, ""});
  rogue.send(hello.substr(0, hello.size() - 3));                                 // truncated
  std::string stale = hello;
  stale[1] = static_cast<char>(kProtocolVersion + 7);                            // wrong version
  rogue.send(stale);
  const auto refusal = rogue.receive<Refuse>(10000ms);
  ASSERT_TRUE(refusal.has_value()) << "no Refuse for a wrong protocol version";
  EXPECT_NE(refusal->reason.find("version"), std::string::npos) << refusal->reason;
  rogue.send(Assign{});                                                          // wrong direction
  rogue.send_parts({"one", "frame", "too many"});                                // 3 frames
  rogue.send(Report{999999, 1, 1, {{"val_acc", kPlanted}}});                     // unknown trial
  {
    // Bigger than the socket accepts: the coordinator drops the connection, not the loop.
    RawClient huge(context, endpoint, "huge");
    huge.send(std::string(static_cast<std::size_t>(kMaxFrameBytes) + 1024, 'x'));
    std::this_thread::sleep_for(300ms);
  }

  // A real group, then the bad reports about its running trial. Its rank is stopped meanwhile
  // (a trial here takes a fraction of a second), so the trial is still the group's when they
  // are handled; trials are numbered from 0 and stored with ids from 1.
  Process workers({"mpirun", "-np", "1", "--bind-to", "none", kWorker, "--connect", endpoint,
                   "--insecure"},
                  (dir / "workers.log").string());
  ASSERT_TRUE(wait_for(serve, "trial 0 (attempt 1)", 60s)) << serve.log();
  const pid_t rank = rank_pid(workers.pid(), 0);
  ASSERT_GT(rank, 0) << workers.log();
  ASSERT_EQ(::kill(rank, SIGSTOP), 0);
  std::this_thread::sleep_for(300ms);  // for a Done sent before the stop to be handled
  static const std::regex kAssigned(R"(trial (\d+) \(attempt 1\))");
  const std::string assigned = serve.log();
  std::int64_t running = -1;
  for (auto it = std::sregex_iterator(assigned.begin(), assigned.end(), kAssigned);
       it != std::sregex_iterator(); ++it)
    running = std::stoll((*it)[1]) + 1;
  rogue.send(Report{running, 99, 1, {{"val_acc", kPlanted}}});                  // unknown attempt
  rogue.send(Report{running, 1, -3, {{"val_acc", kPlanted}}});                  // negative epoch
  rogue.send(Report{running, 1, 0, {{"val_acc", kPlanted}}});                   // epoch 0
  rogue.send(Report{running, 1, 2, {{"val_acc", std::numeric_limits<double>::quiet_NaN()}}});
  rogue.send(Report{running, 1, 2, {{"val_acc", kPlanted}}});                   // not its trial
  rogue.send(Done{running, 1, true, "", {{"test_acc", kPlanted}}});             // not its trial
  const bool heard = wait_for(serve, "acknowledged only", 30s);
  ::kill(rank, SIGCONT);
  ASSERT_TRUE(heard) << serve.log();

  ASSERT_EQ(serve.wait(300s), 0) << serve.log();
  EXPECT_EQ(workers.wait(60s), 0) << workers.log();
  const std::string log = serve.log();
  for (const char* expected :
       {"dropped a frame of", "truncated", "version", "only the coordinator sends",
        "dropped a message of 4 frames", "unknown trial 999999", "epochs start at 1",
        "metric val_acc is nan", "runs it", "never started"})
    EXPECT_NE(log.find(expected), std::string::npos) << "log lacks '" << expected << "'\n" << log;

  const Result exported = run({kTrellis, "--store", store, "export", "m", "--format", "json", "-o",
                               (dir / "m.json").string()},
                              (dir / "export.log").string(), 60s);
  ASSERT_EQ(exported.code, 0) << exported.output;
  const json doc = json::parse(read_file((dir / "m.json").string()));
  ASSERT_EQ(doc["trials"].size(), 3u);
  EXPECT_EQ(doc.dump().find("12345"), std::string::npos) << "a planted value reached the store";
  for (const json& t : doc["trials"]) {
    EXPECT_EQ(t["state"], "completed") << t.dump();
    for (const auto& [name, series] : t["metrics"].items()) {
      ASSERT_EQ(series.size(), 3u) << name;
      for (int e = 0; e < 3; ++e) EXPECT_EQ(series[e][0], e + 1) << name;
    }
  }
  if (!::testing::Test::HasFailure() && !getenv("KEEP")) fs::remove_all(dir);
}

// A group may report only epochs its trial trains through: a report of epoch 9 of a 3-epoch
// trial, flagged as checkpointed, once moved the resume point to a checkpoint that never
// existed, and the trial's next attempt failed on it. And only for attempts it ran: a late
// report from another group once went into the trial's record.
TEST(MalformedTest, AReportBeyondTheTrialsLastEpochIsDroppedAndMovesNoResumePoint) {
  setenv("OMPI_ALLOW_RUN_AS_ROOT", "1", 1);
  setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1", 1);
  const fs::path dir = worker::testing::fresh_dir("beyond_target");
  fs::create_directories(dir / "data");
  worker::testing::write_dataset(dir / "data", worker::testing::make_pattern_data(600, 8, 1),
                                 worker::testing::make_pattern_data(200, 8, 2), /*gz=*/false);
  const std::string spec = (dir / "b.yaml").string();
  write_text(spec, "name: b\ndataset: {path: " + (dir / "data").string() + "}\n"
                   "search: {seed: 3, trials: 1}\ntrain: {epochs: 3, batch_size: 32}\n");
  const std::string store = (dir / "b.db").string();
  const std::string endpoint = "tcp://127.0.0.1:" + std::to_string(free_loopback_port());
  // A short liveness, so the rogue group below is soon declared lost.
  Process serve({kTrellis, "--store", store, "serve", spec, "--bind", endpoint, "--insecure",
                 "--liveness", "2"},
                (dir / "serve.log").string());
  ASSERT_TRUE(wait_for(serve, "listening", 30s)) << serve.log();

  zmq::context_t context;
  RawClient rogue(context, endpoint, "rogue");
  rogue.send(Hello{"rogue", 1, "h", 1, "", "", -1, 0});
  const auto assign = rogue.receive<Assign>(10000ms);
  ASSERT_TRUE(assign.has_value()) << serve.log();
  Report beyond{assign->trial, assign->attempt, 9, {{"val_acc", kPlanted}}, true};
  rogue.send(beyond);
  // Then it falls silent: lost, requeued, and a real group takes the trial.
  ASSERT_TRUE(wait_for(serve, "requeued", 30s)) << serve.log();
  // Another client writes into the rogue's attempt as a late report: the attempt was not its.
  RawClient intruder(context, endpoint, "intruder");
  intruder.send(Report{assign->trial, assign->attempt, 1, {{"val_acc", kPlanted}}, false});
  ASSERT_TRUE(wait_for(serve, "from 'intruder': that attempt ran on group 'rogue'", 30s))
      << serve.log();
  Process workers({"mpirun", "-np", "1", "--bind-to", "none", kWorker, "--connect", endpoint,
                   "--insecure"},
                  (dir / "workers.log").string());
  ASSERT_EQ(serve.wait(300s), 0) << serve.log();
  EXPECT_EQ(workers.wait(60s), 0) << workers.log();
  EXPECT_NE(serve.log().find("the trial trains through epoch 3"), std::string::npos)
      << serve.log();

  const Result exported = run({kTrellis, "--store", store, "export", "b", "--format", "json", "-o",
                               (dir / "b.json").string()},
                              (dir / "export.log").string(), 60s);
  ASSERT_EQ(exported.code, 0) << exported.output;
  const json doc = json::parse(read_file((dir / "b.json").string()));
  ASSERT_EQ(doc["trials"].size(), 1u);
  const json& trial = doc["trials"][0];
  EXPECT_EQ(trial["state"], "completed") << trial.dump();
  EXPECT_EQ(doc.dump().find("12345"), std::string::npos) << "the planted report was stored";
  const json& series = trial["metrics"]["val_acc"];
  ASSERT_EQ(series.size(), 3u) << trial.dump();
  for (int e = 0; e < 3; ++e) EXPECT_EQ(series[e][0], e + 1);
  if (!::testing::Test::HasFailure() && !getenv("KEEP")) fs::remove_all(dir);
}

}  // namespace
}  // namespace trellis::testing
