// CURVE end to end with real processes: `trellis keys init`, `trellis serve`, a keyed
// `mpirun trellis-worker` group, and rogue clients made here (a CURVE client whose key is not
// on the allow-list, and a plaintext one) that send frames and must get nothing back. All on
// loopback, keys in a temp TRELLIS_HOME.

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <zmq.h>
#include <zmq.hpp>

#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <regex>
#include <thread>

#include "common/keys.h"
#include "common/protocol.h"
#include "tests/integration/binaries.h"
#include "tests/integration/process.h"
#include "tests/worker/idx_fixture.h"

namespace trellis::testing {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using namespace std::chrono_literals;


class SecurityTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    setenv("OMPI_ALLOW_RUN_AS_ROOT", "1", 1);
    setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1", 1);
  }

  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = worker::testing::fresh_dir(std::string("security_") + info->name());
    data_ = dir_ / "data";
    keys_ = dir_ / "keys";
    fs::create_directories(data_);
    worker::testing::write_dataset(data_, worker::testing::make_pattern_data(600, 8, 1),
                                   worker::testing::make_pattern_data(200, 8, 2), /*gz=*/false);
    // Every process started below inherits it, as local workers of `trellis run` do.
    setenv("TRELLIS_HOME", keys_.c_str(), 1);
  }
  void TearDown() override {
    unsetenv("TRELLIS_HOME");
    if (!HasFailure()) fs::remove_all(dir_);
  }

  std::string write_spec(const std::string& name, int trials, int epochs = 2) {
    const std::string path = file(name + ".yaml");
    write_text(path, "name: " + name + "\n"
                     "dataset: {name: patterns, path: " + data_.string() + "}\n"
                     "metric: {name: val_acc, mode: max}\n"
                     "search:\n  seed: 3\n  trials: " + std::to_string(trials) + "\n"
                     "  space:\n    lr: {type: log_float, low: 1.0e-3, high: 1.0e-2}\n"
                     "train: {epochs: " + std::to_string(epochs) +
                     ", batch_size: 32, hidden_units: 16}\n"
                     "resources: {ranks_per_trial: 2}\n");
    return path;
  }

  std::string file(const std::string& name) const { return (dir_ / name).string(); }

  fs::path dir_, data_, keys_;
};

// Waits (bounded) until `process` has logged `text`; false if it exited or never did.
// A client that tries its luck: a DEALER that connects, sends a valid Hello and garbage, and
// collects whatever comes back.
class RogueClient {
 public:
  RogueClient(zmq::context_t& context, const std::string& name, const std::string& server_key,
              const std::string& endpoint)
      : socket_(context, zmq::socket_type::dealer) {
    socket_.set(zmq::sockopt::linger, 0);
    socket_.set(zmq::sockopt::routing_id, name);
    if (!server_key.empty()) {
      char pub[41], sec[41];
      zmq_curve_keypair(pub, sec);
      public_key_ = pub;
      socket_.set(zmq::sockopt::curve_serverkey, server_key);
      socket_.set(zmq::sockopt::curve_publickey, public_key_);
      socket_.set(zmq::sockopt::curve_secretkey, std::string(sec));
    }
    socket_.connect(endpoint);
    const std::string hello = encode(Hello{name, 2, name + "-host", 1, "", "rogue"});
    socket_.send(zmq::buffer(hello), zmq::send_flags::dontwait);
    socket_.send(zmq::str_buffer("\x93garbage that is not msgpack"), zmq::send_flags::dontwait);
  }

  // Frames received so far, without waiting.
  int drain() {
    zmq::message_t m;
    while (socket_.recv(m, zmq::recv_flags::dontwait)) ++received_;
    return received_;
  }
  zmq::socket_t& socket() { return socket_; }
  const std::string& public_key() const { return public_key_; }

 private:
  zmq::socket_t socket_;
  std::string public_key_;
  int received_ = 0;
};

TEST_F(SecurityTest, RogueClientsAreRefusedWhileAKeyedWorkerCompletesTheSweep) {
  const Result init = run({kTrellis, "keys", "init"}, file("init.log"), 60s);
  ASSERT_EQ(init.code, 0) << init.output;
  std::string server_key;
  ASSERT_TRUE(load_public_key(keys_.string(), kCoordinatorKeyName, &server_key).ok());

  const std::string spec = write_spec("guarded", 3);
  const std::string store = file("guarded.db");
  const std::string endpoint = "tcp://127.0.0.1:" + std::to_string(free_loopback_port());
  Process serve({kTrellis, "--store", store, "serve", spec, "--bind", endpoint},
                file("serve.log"));
  ASSERT_TRUE(wait_for(serve, "coordinator listening", 60s)) << serve.log();

  // The rogue CURVE client knows the server's public key (it is public) but has a key pair of
  // its own; the plaintext one does not speak CURVE at all.
  zmq::context_t context;
  RogueClient curve_rogue(context, "rogue-curve", server_key, endpoint);
  RogueClient plain_rogue(context, "rogue-plain", "", endpoint);
  zmq::pollitem_t items[] = {{curve_rogue.socket().handle(), 0, ZMQ_POLLIN, 0},
                             {plain_rogue.socket().handle(), 0, ZMQ_POLLIN, 0}};
  EXPECT_EQ(zmq::poll(items, 2, 3000ms), 0) << "a rogue client got an answer";

  // A keyed group on the same coordinator, while the rogues keep retrying their handshakes.
  Process workers({"mpirun", "-np", "2", "--oversubscribe", "--bind-to", "none", kWorker,
                   "--connect", endpoint},
                  file("workers.log"));
  ASSERT_EQ(serve.wait(300s), 0) << serve.log() << workers.log();
  ASSERT_EQ(workers.wait(60s), 0) << workers.log();
  EXPECT_EQ(curve_rogue.drain(), 0);
  EXPECT_EQ(plain_rogue.drain(), 0);

  const std::string log = serve.log();
  EXPECT_NE(log.find("refused CURVE client " + curve_rogue.public_key()), std::string::npos)
      << log;
  EXPECT_NE(log.find("from 127.0.0.1"), std::string::npos) << log;
  // Nothing a rogue sent reached the coordinator's message handling.
  EXPECT_EQ(log.find("rogue-"), std::string::npos) << log;
  EXPECT_EQ(log.find("dropped a frame"), std::string::npos) << log;

  const Result exported = run({kTrellis, "--store", store, "export", "guarded", "--format", "json"},
                              file("export.log"), 60s);
  ASSERT_EQ(exported.code, 0) << exported.output;
  const json trials = json::parse(exported.output.substr(exported.output.find('{')))["trials"];
  ASSERT_EQ(trials.size(), 3u);
  for (const json& t : trials) EXPECT_EQ(t["state"], "completed") << t.dump();
}

// A worker whose key is authorized too, but who connects under another group's identity (the
// identity is the client's choice) and speaks for that group's trial: a Hello, Reports with a
// value no real run gives, a failing Done. Everything it received is counted.
class Impostor {
 public:
  static constexpr double kMarker = 0.0123;  // the val_acc of its forged reports
  static constexpr char kError[] = "forged by an impostor";

  Impostor(zmq::context_t& context, const std::string& identity, const std::string& server_key,
           const std::string& public_key, const std::string& secret_key,
           const std::string& endpoint)
      : socket_(context, zmq::socket_type::dealer), identity_(identity) {
    socket_.set(zmq::sockopt::linger, 0);
    socket_.set(zmq::sockopt::routing_id, identity);
    socket_.set(zmq::sockopt::curve_serverkey, server_key);
    socket_.set(zmq::sockopt::curve_publickey, public_key);
    socket_.set(zmq::sockopt::curve_secretkey, secret_key);
    socket_.connect(endpoint);
  }

  // Speaks for trial ids 1..`trials` at `attempt` (the store numbers trial ids from 1).
  void forge(int trials, std::int32_t attempt) {
    send(Hello{identity_, 2, "impostor-host", 1, "", "impostor"});
    for (std::int64_t id = 1; id <= trials; ++id) {
      for (std::int32_t epoch : {1, 2, 99})
        send(Report{id, attempt, epoch, {{"val_acc", kMarker}}, false});
      send(Done{id, attempt, false, kError, {{"val_acc", kMarker}}, false, false});
    }
  }
  void heartbeat(std::int64_t trial, std::int32_t attempt) { send(Heartbeat{trial, attempt}); }
  // Says Hello as the group still running (trial, attempt): what re-adopts an orphan.
  void claim(std::int64_t trial, std::int32_t attempt) {
    Hello hello{identity_, 2, "impostor-host", 1, "", "impostor"};
    hello.trial = trial;
    hello.attempt = attempt;
    send(hello);
  }

  // Frames received so far, without waiting; `heartbeats` too or not: the coordinator's empty
  // periodic Heartbeat goes to whoever holds an identity's connection, and once the lost group
  // is forgotten the identity is the impostor's own.
  int drain(bool heartbeats = true) {
    zmq::message_t m;
    while (socket_.recv(m, zmq::recv_flags::dontwait)) {
      Message message;
      const bool heartbeat = decode(m.data(), m.size(), &message).ok() &&
                             std::holds_alternative<Heartbeat>(message);
      ++(heartbeat ? heartbeats_ : others_);
    }
    return others_ + (heartbeats ? heartbeats_ : 0);
  }

 private:
  void send(const Message& m) {
    const std::string frame = encode(m);
    (void)socket_.send(zmq::buffer(frame), zmq::send_flags::dontwait);
  }

  zmq::socket_t socket_;
  std::string identity_;
  int heartbeats_ = 0;
  int others_ = 0;
};

struct Assignment {
  std::string group;
  std::int32_t attempt = 0;
};

// Waits (bounded) for the coordinator's "trial N (attempt A) -> group 'G'" line.
bool wait_for_assignment(Process& serve, Assignment* out) {
  static const std::regex kAssigned(R"(trial \d+ \(attempt (\d+)[^)]*\) -> group '([^']+)')");
  for (int i = 0; i < 1200; ++i) {
    std::smatch m;
    const std::string log = serve.log();
    if (std::regex_search(log, m, kAssigned)) {
      out->attempt = std::stoi(m[1]);
      out->group = m[2];
      return true;
    }
    if (!serve.running()) return false;
    std::this_thread::sleep_for(50ms);
  }
  return false;
}

// `trellis keys authorize` for a fresh key pair, as a second worker node would have.
void authorize_another_key(const std::string& log, std::string* public_key,
                           std::string* secret_key) {
  char pub[41], sec[41];
  ASSERT_EQ(zmq_curve_keypair(pub, sec), 0);
  *public_key = pub;
  *secret_key = sec;
  // "--": a Z85 key may start with '-' (one in 85 did, and failed this test as an option).
  const Result r = run({kTrellis, "keys", "authorize", "--", pub}, log, 60s);
  ASSERT_EQ(r.code, 0) << r.output;
}

// A trial's series of one metric, empty when it reported none yet: operator[] of a const json
// on a missing key is undefined behaviour, not null (ASan caught it reading past a map node).
json series_of(const json& trial, const char* metric) {
  const json& metrics = trial.at("metrics");
  return metrics.contains(metric) ? metrics.at(metric) : json::array();
}

json export_trials(const std::string& trellis, const std::string& store, const std::string& name,
                   const std::string& log) {
  const Result exported = run({trellis, "--store", store, "export", name, "--format", "json"},
                              log, 60s);
  EXPECT_EQ(exported.code, 0) << exported.output;
  const std::size_t brace = exported.output.find('{');
  if (exported.code != 0 || brace == std::string::npos) return json::array();
  return json::parse(exported.output.substr(brace))["trials"];
}

TEST_F(SecurityTest, AnotherKeyCannotTakeOverARunningGroup) {
  ASSERT_EQ(run({kTrellis, "keys", "init"}, file("init.log"), 60s).code, 0);
  std::string server_key, other_public, other_secret;
  ASSERT_TRUE(load_public_key(keys_.string(), kCoordinatorKeyName, &server_key).ok());
  ASSERT_NO_FATAL_FAILURE(authorize_another_key(file("authorize.log"), &other_public, &other_secret));

  // One long trial, so the group is still running it when the impostor speaks for it.
  const std::string spec = write_spec("hijack", 1, 2000);
  const std::string store = file("hijack.db");
  const std::string endpoint = "tcp://127.0.0.1:" + std::to_string(free_loopback_port());
  Process serve({kTrellis, "--store", store, "serve", spec, "--bind", endpoint},
                file("serve.log"));
  ASSERT_TRUE(wait_for(serve, "coordinator listening", 60s)) << serve.log();
  Process workers({"mpirun", "-np", "2", "--oversubscribe", "--bind-to", "none", kWorker,
                   "--connect", endpoint, "--timeout", "60"},
                  file("workers.log"));
  Assignment running;
  ASSERT_TRUE(wait_for_assignment(serve, &running)) << serve.log() << workers.log();

  zmq::context_t context;
  Impostor impostor(context, running.group, server_key, other_public, other_secret, endpoint);
  impostor.forge(1, running.attempt);
  std::this_thread::sleep_for(2s);
  impostor.forge(1, running.attempt);  // after its handshake surely finished

  ASSERT_EQ(serve.wait(180s), 0) << serve.log() << workers.log();
  ASSERT_EQ(workers.wait(60s), 0) << workers.log();
  EXPECT_EQ(impostor.drain(), 0) << "the impostor received the group's messages";
  const std::string log = serve.log();
  EXPECT_EQ(log.find("impostor"), std::string::npos) << log;

  const json trials = export_trials(kTrellis, store, "hijack", file("export.log"));
  ASSERT_EQ(trials.size(), 1u);
  EXPECT_EQ(trials[0]["state"], "completed") << trials[0].dump();
  EXPECT_EQ(trials[0]["group"], running.group) << trials[0].dump();
  EXPECT_EQ(trials[0]["error"], "") << trials[0].dump();
  const json val_acc = series_of(trials[0], "val_acc");
  EXPECT_EQ(val_acc.size(), 2000u);
  for (const json& point : val_acc)
    EXPECT_NE(point[1], Impostor::kMarker) << "a forged report reached the store";
}

// Once a group's connection is gone, its identity is free at the socket, and another key may
// take it: the coordinator drops what that key sends for the group, names both keys, does not
// count it as the group being alive, and the group's trial is requeued and completed elsewhere.
TEST_F(SecurityTest, AnotherKeyUnderALostGroupsIdentityIsDroppedAndNamed) {
  ASSERT_EQ(run({kTrellis, "keys", "init"}, file("init.log"), 60s).code, 0);
  std::string server_key, worker_key, other_public, other_secret;
  ASSERT_TRUE(load_public_key(keys_.string(), kCoordinatorKeyName, &server_key).ok());
  ASSERT_TRUE(load_public_key(keys_.string(), kWorkerKeyName, &worker_key).ok());
  ASSERT_NO_FATAL_FAILURE(authorize_another_key(file("authorize.log"), &other_public, &other_secret));

  const std::string spec = write_spec("orphaned", 1, 300);
  const std::string store = file("orphaned.db");
  const std::string endpoint = "tcp://127.0.0.1:" + std::to_string(free_loopback_port());
  // No checkpoints: the requeued trial starts over, which is all this test needs. A liveness
  // long enough that the impostor below (its CURVE handshake is slow under the sanitizers)
  // speaks before the killed group is declared lost.
  Process serve({kTrellis, "--store", store, "serve", spec, "--bind", endpoint, "--liveness", "15",
                 "--checkpoints", "none"},
                file("serve.log"));
  ASSERT_TRUE(wait_for(serve, "coordinator listening", 60s)) << serve.log();
  Assignment lost;
  {
    Process workers({"mpirun", "-np", "2", "--oversubscribe", "--bind-to", "none", kWorker,
                     "--connect", endpoint, "--timeout", "60"},
                    file("workers1.log"));
    ASSERT_TRUE(wait_for_assignment(serve, &lost)) << serve.log() << workers.log();
    workers.kill_group(SIGKILL);
  }
  std::this_thread::sleep_for(500ms);  // the coordinator sees the connection close

  zmq::context_t context;
  // Its heartbeats must not keep the lost group alive: the coordinator still declares it lost.
  // A connection made before the coordinator saw the killed group's close is ignored under
  // that identity (no router_handover), and under the sanitizers that can take a while: the
  // impostor connects afresh each second until the group is declared lost.
  const std::string lost_line = "worker group '" + lost.group + "' lost";
  for (int round = 0; round < 40 && serve.log().find(lost_line) == std::string::npos; ++round) {
    Impostor impostor(context, lost.group, server_key, other_public, other_secret, endpoint);
    impostor.forge(1, lost.attempt);
    for (int i = 0; i < 10 && serve.log().find(lost_line) == std::string::npos; ++i) {
      impostor.heartbeat(1, lost.attempt);
      std::this_thread::sleep_for(100ms);
    }
    // Once the group is lost its identity is free, and the impostor's key is authorized: frames
    // of this round heard after the loss open a new session, which is answered (the sanitizer
    // run once saw its Assign and Ack). Before the loss, nothing reaches it.
    const bool lost_this_round = serve.log().find(lost_line) != std::string::npos;
    const int received = impostor.drain(/*heartbeats=*/false);
    if (!lost_this_round) EXPECT_EQ(received, 0) << "the impostor received the group's messages";
  }
  EXPECT_NE(serve.log().find(lost_line), std::string::npos) << serve.log();
  const std::string log = serve.log();
  EXPECT_NE(log.find("dropped a frame from CURVE key " + other_public + " under group identity '" +
                     lost.group + "', which belongs to key " + worker_key),
            std::string::npos)
      << log;

  Process workers({"mpirun", "-np", "2", "--oversubscribe", "--bind-to", "none", kWorker,
                   "--connect", endpoint, "--timeout", "60"},
                  file("workers2.log"));
  ASSERT_EQ(serve.wait(180s), 0) << serve.log() << workers.log();
  ASSERT_EQ(workers.wait(60s), 0) << workers.log();

  const json trials = export_trials(kTrellis, store, "orphaned", file("export.log"));
  ASSERT_EQ(trials.size(), 1u);
  EXPECT_EQ(trials[0]["state"], "completed") << trials[0].dump();
  EXPECT_EQ(trials[0]["error"], "") << trials[0].dump();
  EXPECT_GT(trials[0]["attempt"].get<int>(), lost.attempt) << trials[0].dump();
  for (const json& point : series_of(trials[0], "val_acc"))
    EXPECT_NE(point[1], Impostor::kMarker) << "a forged report reached the store";
}

// A restarted coordinator has no connections yet, so the first key to speak under a group's
// identity would bind it: another authorized key naming the group's running attempt would
// take the orphaned trial over. The identity stays bound to the key the attempt was started
// for (kept in its provenance), and the real group, once back, keeps its trial.
TEST_F(SecurityTest, AnotherKeyCannotAdoptAGroupsTrialAfterACoordinatorRestart) {
  ASSERT_EQ(run({kTrellis, "keys", "init"}, file("init.log"), 60s).code, 0);
  std::string server_key, worker_key, other_public, other_secret;
  ASSERT_TRUE(load_public_key(keys_.string(), kCoordinatorKeyName, &server_key).ok());
  ASSERT_TRUE(load_public_key(keys_.string(), kWorkerKeyName, &worker_key).ok());
  ASSERT_NO_FATAL_FAILURE(authorize_another_key(file("authorize.log"), &other_public, &other_secret));

  const std::string spec = write_spec("adopt", 1, 2000);
  const std::string store = file("adopt.db");
  const std::string endpoint = "tcp://127.0.0.1:" + std::to_string(free_loopback_port());
  const std::vector<std::string> serve_args = {kTrellis, "--store", store, "serve", spec, "--bind",
                                               endpoint, "--liveness", "30"};
  auto serve = std::make_unique<Process>(serve_args, file("serve1.log"));
  ASSERT_TRUE(wait_for(*serve, "coordinator listening", 60s)) << serve->log();
  Process workers({"mpirun", "-np", "2", "--oversubscribe", "--bind-to", "none", kWorker,
                   "--connect", endpoint, "--timeout", "120"},
                  file("workers.log"));
  Assignment running;
  ASSERT_TRUE(wait_for_assignment(*serve, &running)) << serve->log() << workers.log();
  // The group says nothing while the impostor tries: its ranks are stopped.
  std::vector<pid_t> ranks;
  for (int rank = 0; rank < 2; ++rank) {
    const pid_t pid = rank_pid(workers.pid(), rank);
    ASSERT_GT(pid, 0) << workers.log();
    ASSERT_EQ(::kill(pid, SIGSTOP), 0);
    ranks.push_back(pid);
  }
  serve->kill_group(SIGKILL);
  serve = std::make_unique<Process>(serve_args, file("serve2.log"));
  ASSERT_TRUE(wait_for(*serve, "coordinator listening", 60s)) << serve->log();
  {
    zmq::context_t context;
    Impostor impostor(context, running.group, server_key, other_public, other_secret, endpoint);
    impostor.claim(1, running.attempt);
    impostor.forge(1, running.attempt);
    std::this_thread::sleep_for(2s);
    impostor.claim(1, running.attempt);  // after its handshake surely finished
    impostor.forge(1, running.attempt);
    std::this_thread::sleep_for(1s);
    EXPECT_EQ(impostor.drain(/*heartbeats=*/false), 0)
        << "the impostor received the group's messages";
  }
  const std::string during = serve->log();
  EXPECT_NE(during.find("dropped a frame from CURVE key " + other_public +
                        " under group identity '" + running.group + "', which belongs to key " +
                        worker_key),
            std::string::npos)
      << during;
  EXPECT_EQ(during.find("reconnected still running trial"), std::string::npos)
      << "the impostor adopted the trial\n" << during;

  for (const pid_t pid : ranks) ::kill(pid, SIGCONT);
  const std::string back = "group '" + running.group + "' reconnected still running trial";
  EXPECT_TRUE(wait_for(*serve, back, 60s)) << serve->log() << workers.log();
  serve->kill_group(SIGKILL);
  // The ranks are still training and writing checkpoints: gone before the directory goes.
  workers.kill_group(SIGKILL);
  for (const pid_t pid : ranks)
    for (int i = 0; i < 200 && ::kill(pid, 0) == 0; ++i) std::this_thread::sleep_for(50ms);
  const json trials = export_trials(kTrellis, store, "adopt", file("export.log"));
  ASSERT_EQ(trials.size(), 1u);
  EXPECT_EQ(trials[0]["state"], "running") << trials[0].dump();
  EXPECT_EQ(trials[0]["attempt"], running.attempt) << "the trial was never taken from its group";
  for (const json& point : series_of(trials[0], "val_acc"))
    EXPECT_NE(point[1], Impostor::kMarker) << "a forged report reached the store";
}

TEST_F(SecurityTest, InsecureServeRefusesANonLoopbackBind) {
  const std::string spec = write_spec("open", 1);
  const std::string store = file("open.db");
  const std::string bind = "tcp://*:" + std::to_string(free_loopback_port());
  const Result r = run({kTrellis, "--store", store, "serve", spec, "--insecure", "--bind", bind},
                       file("insecure.log"), 60s);
  EXPECT_EQ(r.code, 1) << r.output;
  EXPECT_NE(r.output.find("refusing --insecure on " + bind), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("loopback"), std::string::npos) << r.output;
  EXPECT_FALSE(fs::exists(store)) << "the refused coordinator touched the store";
}

TEST_F(SecurityTest, ServeWithoutKeysSaysHowToMakeThem) {
  const std::string spec = write_spec("keyless", 1);
  const std::string endpoint = "tcp://127.0.0.1:" + std::to_string(free_loopback_port());
  const Result r = run({kTrellis, "--store", file("keyless.db"), "serve", spec, "--bind", endpoint},
                       file("keyless.log"), 60s);
  EXPECT_EQ(r.code, 1) << r.output;
  EXPECT_NE(r.output.find((keys_ / "coordinator.key").string()), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("trellis keys init"), std::string::npos) << r.output;
}

TEST_F(SecurityTest, AWorkerRefusesASecretKeyOthersCanRead) {
  ASSERT_EQ(run({kTrellis, "keys", "init"}, file("init.log"), 60s).code, 0);
  const fs::path key = keys_ / "worker.key";
  fs::permissions(key, fs::perms::group_read | fs::perms::others_read, fs::perm_options::add);
  const std::string endpoint = "tcp://127.0.0.1:" + std::to_string(free_loopback_port());
  const Result r = run({"mpirun", "-np", "1", kWorker, "--connect", endpoint, "--timeout", "2"},
                       file("worker.log"), 60s);
  EXPECT_NE(r.code, 0) << r.output;
  EXPECT_NE(r.code, -1) << "the worker hung";
  EXPECT_NE(r.output.find("chmod 600 " + key.string()), std::string::npos) << r.output;
}

}  // namespace
}  // namespace trellis::testing
