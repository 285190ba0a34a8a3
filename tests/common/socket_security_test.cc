// Key files (common/keys.h) and CURVE sockets with the coordinator's ZAP handler: a worker
// with an authorized key gets through, anyone else is refused and logged.

#include <sys/stat.h>

#include <gtest/gtest.h>
#include <spdlog/sinks/ringbuffer_sink.h>
#include <spdlog/spdlog.h>
#include <zmq.h>
#include <zmq_addon.hpp>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <thread>

#include "common/keys.h"
#include "common/socket_factory.h"
#include "coordinator/zap_handler.h"

namespace trellis {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

fs::path fresh_dir(const std::string& tag) {
  const fs::path dir =
      fs::temp_directory_path() / ("trellis_keys_" + tag + "_" + std::to_string(getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

std::string read(const fs::path& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

void write(const fs::path& path, const std::string& text) { std::ofstream(path) << text; }

mode_t mode_of(const fs::path& path) {
  struct stat st {};
  EXPECT_EQ(stat(path.c_str(), &st), 0) << path;
  return st.st_mode & 0777;
}

KeyPair fresh_pair() {
  char pub[41], sec[41];
  EXPECT_EQ(zmq_curve_keypair(pub, sec), 0);
  return KeyPair{pub, sec};
}

class KeysTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = fresh_dir(::testing::UnitTest::GetInstance()->current_test_info()->name());
    dir_ = (root_ / "home" / ".trellis").string();  // parents do not exist yet
  }
  void TearDown() override { fs::remove_all(root_); }
  fs::path root_;
  std::string dir_;
};

TEST_F(KeysTest, InitMakesPrivateKeyPairsAndAuthorizesTheWorker) {
  ASSERT_TRUE(init_keys(dir_, false).ok());
  EXPECT_EQ(mode_of(dir_), 0700u);
  EXPECT_EQ(mode_of(fs::path(dir_) / "coordinator.key"), 0600u);
  EXPECT_EQ(mode_of(fs::path(dir_) / "worker.key"), 0600u);

  KeyPair coordinator, worker;
  ASSERT_TRUE(load_key_pair(dir_, kCoordinatorKeyName, &coordinator).ok());
  ASSERT_TRUE(load_key_pair(dir_, kWorkerKeyName, &worker).ok());
  EXPECT_NE(coordinator.public_key, worker.public_key);
  std::string coordinator_pub, worker_pub;
  ASSERT_TRUE(load_public_key(dir_, kCoordinatorKeyName, &coordinator_pub).ok());
  ASSERT_TRUE(load_public_key(dir_, kWorkerKeyName, &worker_pub).ok());
  EXPECT_EQ(coordinator_pub, coordinator.public_key);  // .pub agrees with the derived key
  EXPECT_EQ(worker_pub, worker.public_key);
  std::vector<std::string> authorized;
  ASSERT_TRUE(load_authorized_workers(dir_, &authorized).ok());
  EXPECT_EQ(authorized, std::vector<std::string>{worker.public_key});
}

TEST_F(KeysTest, InitRefusesToReplaceKeysUnlessForced) {
  ASSERT_TRUE(init_keys(dir_, false).ok());
  const std::string before = read(fs::path(dir_) / "coordinator.key");
  const Status again = init_keys(dir_, false);
  ASSERT_FALSE(again.ok());
  EXPECT_NE(again.message().find("already exists"), std::string::npos) << again.message();
  EXPECT_NE(again.message().find("--force"), std::string::npos) << again.message();
  EXPECT_EQ(read(fs::path(dir_) / "coordinator.key"), before);

  ASSERT_TRUE(init_keys(dir_, true).ok());
  EXPECT_NE(read(fs::path(dir_) / "coordinator.key"), before);
  std::vector<std::string> authorized;
  ASSERT_TRUE(load_authorized_workers(dir_, &authorized).ok());
  EXPECT_EQ(authorized.size(), 1u);  // the old worker key is revoked
}

TEST_F(KeysTest, ASecretKeyOthersCanReadIsRefusedWithTheFix) {
  ASSERT_TRUE(init_keys(dir_, false).ok());
  const std::string path = (fs::path(dir_) / "worker.key").string();
  ASSERT_EQ(chmod(path.c_str(), 0644), 0);
  KeyPair pair;
  const Status s = load_key_pair(dir_, kWorkerKeyName, &pair);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find(path), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("group or others"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("chmod 600 " + path), std::string::npos) << s.message();
  ASSERT_EQ(chmod(path.c_str(), 0600), 0);
  EXPECT_TRUE(load_key_pair(dir_, kWorkerKeyName, &pair).ok());
}

TEST_F(KeysTest, MalformedAndMissingKeyFilesAreNamed) {
  ASSERT_TRUE(init_keys(dir_, false).ok());
  const fs::path path = fs::path(dir_) / "coordinator.key";
  KeyPair pair;

  write(path, "# comment\nnot-a-key\n");
  Status s = load_key_pair(dir_, kCoordinatorKeyName, &pair);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find(path.string() + ":2:"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("40 characters of Z85"), std::string::npos) << s.message();

  write(path, "# nothing but comments\n");
  s = load_key_pair(dir_, kCoordinatorKeyName, &pair);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("found 0"), std::string::npos) << s.message();

  // 40 characters, one of them outside the Z85 alphabet.
  write(path, std::string(39, 'a') + "~\n");
  EXPECT_FALSE(load_key_pair(dir_, kCoordinatorKeyName, &pair).ok());

  fs::remove(path);
  s = load_key_pair(dir_, kCoordinatorKeyName, &pair);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find(path.string() + ": no such file"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("trellis keys init"), std::string::npos) << s.message();
}

TEST_F(KeysTest, AuthorizeAppendsAKeyOnceAndRefusesJunk) {
  ASSERT_TRUE(init_keys(dir_, false).ok());
  const KeyPair other = fresh_pair();
  ASSERT_TRUE(authorize_worker(dir_, other.public_key).ok());
  ASSERT_TRUE(authorize_worker(dir_, other.public_key).ok());
  std::vector<std::string> authorized;
  ASSERT_TRUE(load_authorized_workers(dir_, &authorized).ok());
  ASSERT_EQ(authorized.size(), 2u);
  EXPECT_EQ(authorized[1], other.public_key);

  const Status junk = authorize_worker(dir_, "short");
  ASSERT_FALSE(junk.ok());
  EXPECT_NE(junk.message().find("'short'"), std::string::npos) << junk.message();
}

TEST_F(KeysTest, ACommentedOutKeyIsNotAuthorized) {
  ASSERT_TRUE(init_keys(dir_, false).ok());
  const KeyPair revoked = fresh_pair();
  std::ofstream(fs::path(dir_) / kAuthorizedWorkersFile, std::ios::app)
      << "#" << revoked.public_key << "\n";
  std::vector<std::string> authorized;
  ASSERT_TRUE(load_authorized_workers(dir_, &authorized).ok());
  EXPECT_EQ(authorized.size(), 1u);
  EXPECT_NE(authorized[0], revoked.public_key);
}

TEST_F(KeysTest, AnAllowListOthersCanWriteIsRefused) {
  ASSERT_TRUE(init_keys(dir_, false).ok());
  const std::string path = (fs::path(dir_) / kAuthorizedWorkersFile).string();
  ASSERT_EQ(chmod(path.c_str(), 0666), 0);
  std::vector<std::string> authorized;
  const Status s = load_authorized_workers(dir_, &authorized);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find(path), std::string::npos) << s.message();
}

TEST_F(KeysTest, TrellisHomeChoosesTheKeyDirectory) {
  const char* saved = std::getenv("TRELLIS_HOME");
  const std::string restore = saved ? saved : "";
  setenv("TRELLIS_HOME", dir_.c_str(), 1);
  EXPECT_EQ(default_key_dir(), dir_);
  unsetenv("TRELLIS_HOME");
  EXPECT_NE(default_key_dir().find(".trellis"), std::string::npos);
  if (saved) setenv("TRELLIS_HOME", restore.c_str(), 1);
}

TEST(LoopbackEndpoint, OnlyWholeLoopbackHostsCount) {
  for (const char* yes : {"tcp://127.0.0.1:5555", "tcp://127.1.2.3:*", "tcp://localhost:1",
                          "tcp://[::1]:1", "ipc:///tmp/x", "inproc://x"})
    EXPECT_TRUE(is_loopback_endpoint(yes)) << yes;
  for (const char* no : {"tcp://*:5555", "tcp://0.0.0.0:5555", "tcp://10.0.0.1:5555",
                         "tcp://127.0.0.1.example.org:5555", "tcp://127.0.0.1;10.0.0.1:5555",
                         "tcp://eth0:5555", "udp://127.0.0.1:1"})
    EXPECT_FALSE(is_loopback_endpoint(no)) << no;
}

// A CURVE coordinator socket with its ZAP handler on loopback TCP, and clients in a context of
// their own, as a worker on another machine would be.
class CurveTest : public ::testing::Test {
 protected:
  void SetUp() override {
    log_ = std::make_shared<spdlog::sinks::ringbuffer_sink_mt>(256);
    previous_ = spdlog::default_logger();
    spdlog::set_default_logger(std::make_shared<spdlog::logger>("zap-test", log_));
    server_keys_ = fresh_pair();
    worker_keys_ = fresh_pair();
    other_keys_ = fresh_pair();
    ASSERT_TRUE(coordinator::ZapHandler::Start(
                    server_context_, {worker_keys_.public_key, other_keys_.public_key}, &zap_)
                    .ok());
    SocketSecurity security;
    security.public_key = server_keys_.public_key;
    security.secret_key = server_keys_.secret_key;
    ASSERT_TRUE(make_coordinator_socket(server_context_, security, &server_).ok());
    server_.set(zmq::sockopt::linger, 0);
    server_.bind("tcp://127.0.0.1:*");
    endpoint_ = server_.get(zmq::sockopt::last_endpoint);
  }
  void TearDown() override {
    // The order the Coordinator's members give: socket, then handler, then context.
    server_.close();
    zap_.reset();
    spdlog::set_default_logger(previous_);
  }

  SocketSecurity worker_security(const KeyPair& keys) const {
    SocketSecurity s;
    s.public_key = keys.public_key;
    s.secret_key = keys.secret_key;
    s.server_public_key = server_keys_.public_key;
    return s;
  }

  // Waits up to `limit` for a message on the server; the frames (identity, payload) if any.
  std::vector<zmq::message_t> server_receive(std::chrono::milliseconds limit) {
    std::vector<zmq::message_t> parts;
    zmq::pollitem_t items[] = {{server_.handle(), 0, ZMQ_POLLIN, 0}};
    if (zmq::poll(items, 1, limit) > 0)
      (void)zmq::recv_multipart(server_, std::back_inserter(parts));
    return parts;
  }

  bool log_contains(const std::string& text) const {
    for (const auto& line : log_->last_formatted())
      if (line.find(text) != std::string::npos) return true;
    return false;
  }

  // Waits (bounded) until the handler has refused `n` handshakes.
  bool wait_for_refusals(std::uint64_t n) const {
    for (int i = 0; i < 200 && zap_->refused() < n; ++i) std::this_thread::sleep_for(50ms);
    return zap_->refused() >= n;
  }

  std::shared_ptr<spdlog::sinks::ringbuffer_sink_mt> log_;
  std::shared_ptr<spdlog::logger> previous_;
  KeyPair server_keys_, worker_keys_;
  KeyPair other_keys_;  // authorized too: another worker node's key
  zmq::context_t server_context_;
  std::unique_ptr<coordinator::ZapHandler> zap_;
  zmq::socket_t server_;
  std::string endpoint_;
};

TEST_F(CurveTest, AnAuthorizedWorkerExchangesMessages) {
  zmq::context_t context;
  zmq::socket_t client;
  ASSERT_TRUE(make_agent_socket(context, "group-1", worker_security(worker_keys_), &client).ok());
  client.set(zmq::sockopt::linger, 0);
  client.connect(endpoint_);
  client.send(zmq::str_buffer("hello"), zmq::send_flags::none);

  std::vector<zmq::message_t> parts = server_receive(20s);
  ASSERT_EQ(parts.size(), 2u);
  EXPECT_EQ(parts[0].to_string(), "group-1");
  EXPECT_EQ(parts[1].to_string(), "hello");
  // The handler names the authenticated key, so the coordinator could tell who sent what.
  EXPECT_EQ(std::string(parts[1].gets("User-Id")), worker_keys_.public_key);

  const std::string peer = parts[0].to_string();  // outlives the send that reads it
  std::array<zmq::const_buffer, 2> answer = {zmq::buffer(peer), zmq::str_buffer("welcome")};
  zmq::send_multipart(server_, answer);
  client.set(zmq::sockopt::rcvtimeo, 20000);
  zmq::message_t reply;
  ASSERT_TRUE(client.recv(reply));
  EXPECT_EQ(reply.to_string(), "welcome");
  EXPECT_EQ(zap_->admitted(), 1u);
  EXPECT_EQ(zap_->refused(), 0u);
}

// With router_handover, a second connection under a connected identity takes its route: any
// authorized key could then receive another group's messages while the group's own connection
// silently stops delivering. The coordinator's socket must keep the first connection.
TEST_F(CurveTest, AnotherAuthorizedKeyCannotTakeOverAConnectedIdentity) {
  zmq::context_t context;
  zmq::socket_t group, thief;
  ASSERT_TRUE(make_agent_socket(context, "group-1", worker_security(worker_keys_), &group).ok());
  group.set(zmq::sockopt::linger, 0);
  group.connect(endpoint_);
  group.send(zmq::str_buffer("mine"), zmq::send_flags::none);
  std::vector<zmq::message_t> parts = server_receive(20s);
  ASSERT_EQ(parts.size(), 2u);
  EXPECT_EQ(parts[1].to_string(), "mine");

  ASSERT_TRUE(make_agent_socket(context, "group-1", worker_security(other_keys_), &thief).ok());
  thief.set(zmq::sockopt::linger, 0);
  thief.connect(endpoint_);
  thief.send(zmq::str_buffer("takeover"), zmq::send_flags::dontwait);
  for (int i = 0; i < 200 && zap_->admitted() < 2; ++i) std::this_thread::sleep_for(50ms);
  ASSERT_EQ(zap_->admitted(), 2u) << "the second key never got through the handshake";
  // Polling lets the server attach (or refuse) the thief's connection.
  parts = server_receive(1500ms);
  EXPECT_TRUE(parts.empty()) << "received '" << parts.back().to_string() << "' from the thief";

  // The group still speaks and is spoken to; the thief hears nothing.
  group.send(zmq::str_buffer("still mine"), zmq::send_flags::none);
  parts = server_receive(20s);
  ASSERT_EQ(parts.size(), 2u) << "the group's connection went dead";
  EXPECT_EQ(parts[0].to_string(), "group-1");
  EXPECT_EQ(parts[1].to_string(), "still mine");
  EXPECT_EQ(std::string(parts[1].gets("User-Id")), worker_keys_.public_key);
  std::array<zmq::const_buffer, 2> answer = {zmq::str_buffer("group-1"),
                                             zmq::str_buffer("for the group")};
  zmq::send_multipart(server_, answer);
  group.set(zmq::sockopt::rcvtimeo, 20000);
  zmq::message_t reply;
  ASSERT_TRUE(group.recv(reply));
  EXPECT_EQ(reply.to_string(), "for the group");
  zmq::pollitem_t items[] = {{thief.handle(), 0, ZMQ_POLLIN, 0}};
  EXPECT_EQ(zmq::poll(items, 1, 1000ms), 0) << "the thief received a frame meant for the group";
}

// What router_handover was on for: an agent whose connection closed comes back under the same
// identity with the same key and is served again.
TEST_F(CurveTest, TheSameKeyReconnectingUnderItsIdentityIsServedAgain) {
  zmq::context_t context;
  {
    zmq::socket_t first;
    ASSERT_TRUE(make_agent_socket(context, "group-1", worker_security(worker_keys_), &first).ok());
    first.set(zmq::sockopt::linger, 0);
    first.connect(endpoint_);
    first.send(zmq::str_buffer("before"), zmq::send_flags::none);
    std::vector<zmq::message_t> parts = server_receive(20s);
    ASSERT_EQ(parts.size(), 2u);
    EXPECT_EQ(parts[1].to_string(), "before");
  }
  EXPECT_TRUE(server_receive(500ms).empty());  // lets the server see the connection close

  zmq::socket_t again;
  ASSERT_TRUE(make_agent_socket(context, "group-1", worker_security(worker_keys_), &again).ok());
  again.set(zmq::sockopt::linger, 0);
  again.connect(endpoint_);
  again.send(zmq::str_buffer("after"), zmq::send_flags::none);
  std::vector<zmq::message_t> parts = server_receive(20s);
  ASSERT_EQ(parts.size(), 2u) << "the reconnected agent was not heard";
  EXPECT_EQ(parts[0].to_string(), "group-1");
  EXPECT_EQ(parts[1].to_string(), "after");
  std::array<zmq::const_buffer, 2> answer = {zmq::str_buffer("group-1"),
                                             zmq::str_buffer("welcome back")};
  zmq::send_multipart(server_, answer);
  again.set(zmq::sockopt::rcvtimeo, 20000);
  zmq::message_t reply;
  ASSERT_TRUE(again.recv(reply));
  EXPECT_EQ(reply.to_string(), "welcome back");
}

TEST_F(CurveTest, AWorkerWithAnotherKeyIsRefusedAndLoggedWithItsAddress) {
  const KeyPair rogue = fresh_pair();
  zmq::context_t context;
  zmq::socket_t client;
  ASSERT_TRUE(make_agent_socket(context, "rogue", worker_security(rogue), &client).ok());
  client.set(zmq::sockopt::linger, 0);
  client.connect(endpoint_);
  client.send(zmq::str_buffer("let me in"), zmq::send_flags::dontwait);

  ASSERT_TRUE(wait_for_refusals(1)) << "the ZAP handler was never asked";
  EXPECT_TRUE(server_receive(1500ms).empty());
  EXPECT_TRUE(log_contains(rogue.public_key)) << "refusal not logged with the key";
  EXPECT_TRUE(log_contains("from 127.0.0.1")) << "refusal not logged with the address";
  EXPECT_EQ(zap_->admitted(), 0u);
}

TEST_F(CurveTest, APlaintextClientGetsNothingThrough) {
  zmq::context_t context;
  zmq::socket_t client;
  SocketSecurity plaintext;
  plaintext.curve = false;
  ASSERT_TRUE(make_agent_socket(context, "plain", plaintext, &client).ok());
  client.set(zmq::sockopt::linger, 0);
  client.connect(endpoint_);
  client.send(zmq::str_buffer("let me in"), zmq::send_flags::dontwait);
  EXPECT_TRUE(server_receive(2000ms).empty());
  EXPECT_EQ(zap_->admitted(), 0u);
}

TEST_F(CurveTest, AWorkerThatDoesNotKnowTheServerKeyGetsNothingThrough) {
  zmq::context_t context;
  zmq::socket_t client;
  SocketSecurity security = worker_security(worker_keys_);
  security.server_public_key = fresh_pair().public_key;  // a coordinator it mistakes us for
  ASSERT_TRUE(make_agent_socket(context, "lost", security, &client).ok());
  client.set(zmq::sockopt::linger, 0);
  client.connect(endpoint_);
  client.send(zmq::str_buffer("hello"), zmq::send_flags::dontwait);
  EXPECT_TRUE(server_receive(2000ms).empty());
  EXPECT_EQ(zap_->admitted(), 0u);
}

TEST(SocketFactory, CurveWithoutKeysIsAnErrorNotPlaintext) {
  zmq::context_t context;
  zmq::socket_t socket;
  SocketSecurity missing;  // curve = true by default
  Status s = make_agent_socket(context, "g", missing, &socket);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("trellis keys init"), std::string::npos) << s.message();

  SocketSecurity malformed;
  malformed.secret_key = "too short";
  s = make_coordinator_socket(context, malformed, &socket);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("40 characters of Z85"), std::string::npos) << s.message();
}

TEST(ZapHandlerStart, AMalformedAllowListKeyIsAnError) {
  zmq::context_t context;
  std::unique_ptr<coordinator::ZapHandler> zap;
  const Status s = coordinator::ZapHandler::Start(context, {"not a key"}, &zap);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("not a key"), std::string::npos) << s.message();
}

}  // namespace
}  // namespace trellis
