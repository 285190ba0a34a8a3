// CURVE end to end with real processes: `trellis keys init`, `trellis serve`, a keyed
// `mpirun trellis-worker` group, and rogue clients made here (a CURVE client whose key is not
// on the allow-list, and a plaintext one) that send frames and must get nothing back. All on
// loopback, keys in a temp TRELLIS_HOME.

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <zmq.h>
#include <zmq.hpp>

#include <cstdlib>
#include <filesystem>
#include <thread>

#include "common/keys.h"
#include "common/protocol.h"
#include "tests/integration/process.h"
#include "tests/worker/idx_fixture.h"

namespace trellis::testing {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using namespace std::chrono_literals;

const std::string kTrellis = TRELLIS_BIN_DIR "/trellis";
const std::string kWorker = TRELLIS_BIN_DIR "/trellis-worker";

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

  std::string write_spec(const std::string& name, int trials) {
    const std::string path = file(name + ".yaml");
    write_text(path, "name: " + name + "\n"
                     "dataset: {name: patterns, path: " + data_.string() + "}\n"
                     "metric: {name: val_acc, mode: max}\n"
                     "search:\n  seed: 3\n  trials: " + std::to_string(trials) + "\n"
                     "  space:\n    lr: {type: log_float, low: 1.0e-3, high: 1.0e-2}\n"
                     "train: {epochs: 2, batch_size: 32, hidden_units: 16}\n"
                     "resources: {ranks_per_trial: 2}\n");
    return path;
  }

  std::string file(const std::string& name) const { return (dir_ / name).string(); }

  fs::path dir_, data_, keys_;
};

// Waits (bounded) until `process` has logged `text`; false if it exited or never did.
bool wait_for_log(Process& process, const std::string& text) {
  for (int i = 0; i < 600; ++i) {
    if (process.log().find(text) != std::string::npos) return true;
    if (!process.running()) return false;
    std::this_thread::sleep_for(100ms);
  }
  return false;
}

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
  ASSERT_TRUE(wait_for_log(serve, "coordinator listening")) << serve.log();

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
