// Writes the fuzzer's seed corpus: one frame per message type as `trellis::encode` writes it
// (with every field set, so the fuzzer starts from frames that reach each field's decoding),
// plus hand-made bad frames that start it off on each way to be rejected, and a frame of edge-case
// doubles.
//
//   make_corpus DIR      (re)writes DIR/<name>.msgpack; the checked-in seeds come from
//                        build/tests/fuzz/clang/make_corpus tests/fuzz/corpus
//
// A message type added to trellis::Message gets a seed (default field values) without a
// change here; give it a `sample` overload for a better one.

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <initializer_list>
#include <map>
#include <string>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include <msgpack.hpp>

#include "common/protocol.h"

namespace {

using trellis::Message;

template <class T> T sample(std::type_identity<T>) { return T{}; }

trellis::Hello sample(std::type_identity<trellis::Hello>) {
  trellis::Hello m;
  m.group = "node7:4242";
  m.ranks = 2;
  m.host = "node7";
  m.pid = 4242;
  m.topology = "1 package, 2 cores";
  m.version = "0.1.0+f9f628316ccc";
  return m;
}

trellis::Assign sample(std::type_identity<trellis::Assign>) {
  trellis::Assign m;
  m.trial = 12;
  m.attempt = 2;
  m.experiment = "fashion-mlp";
  m.number = 3;
  m.seed = 5589451248813152334u;
  m.params = {{"lr", 0.00224}, {"hidden_units", std::int64_t{76}}, {"activation", "relu"}};
  m.dataset.name = "fashion-mnist";
  m.dataset.format = "csv";
  m.dataset.path = "/data";
  m.dataset.train = "train.csv";
  m.dataset.classes = 10;
  m.dataset.scaling = "standard";
  m.checkpoint = "/tmp/ckpt/12";
  m.resume_epoch = 4;
  return m;
}

trellis::Wait sample(std::type_identity<trellis::Wait>) { return trellis::Wait{250}; }

trellis::Report sample(std::type_identity<trellis::Report>) {
  trellis::Report m;
  m.trial = 12;
  m.attempt = 2;
  m.epoch = 5;
  m.metrics = {{"train_loss", 0.536}, {"val_acc", 0.853}, {"val_loss", 1.0}};
  m.checkpointed = true;
  return m;
}

trellis::Heartbeat sample(std::type_identity<trellis::Heartbeat>) {
  trellis::Heartbeat m;
  m.trial = 12;
  m.attempt = 2;
  m.progress = 4711;
  return m;
}

trellis::Stop sample(std::type_identity<trellis::Stop>) { return trellis::Stop{12, "pruned"}; }

trellis::Done sample(std::type_identity<trellis::Done>) {
  trellis::Done m;
  m.trial = 12;
  m.attempt = 2;
  m.ok = false;
  m.error = "nan loss at epoch 3";
  m.final_metrics = {{"test_acc", 0.869}, {"test_loss", 0.366}};
  return m;
}

trellis::Shutdown sample(std::type_identity<trellis::Shutdown>) {
  return trellis::Shutdown{"sweep finished"};
}

trellis::Refuse sample(std::type_identity<trellis::Refuse>) {
  return trellis::Refuse{"protocol version 2 is not spoken here"};
}

bool write(const std::string& dir, const std::string& name, const std::string& bytes) {
  std::ofstream out(dir + "/" + name + ".msgpack", std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  return static_cast<bool>(out);
}

// [version, type, body] with any version, type and body.
template <class Body>
std::string frame(std::uint64_t version, std::uint64_t type, const Body& body) {
  msgpack::sbuffer buf;
  msgpack::packer<msgpack::sbuffer> pk(&buf);
  pk.pack_array(3);
  pk.pack(version);
  pk.pack(type);
  pk.pack(body);
  return std::string(buf.data(), buf.size());
}

std::string bytes(std::initializer_list<unsigned char> b) { return std::string(b.begin(), b.end()); }

// Frames each rejected for a different reason, and one accepted frame of edge cases.
std::vector<std::pair<std::string, std::string>> odd_frames() {
  const std::string hello = trellis::encode(sample(std::type_identity<trellis::Hello>{}));
  const std::uint64_t v = trellis::kProtocolVersion;
  std::string deep(20, '\x91');  // [[[[...]]]] past the unpacker's depth limit
  deep += '\x01';
  // Doubles at the edges: 2^64 once made the encoder convert it to uint64 (UB).
  trellis::Report edges = sample(std::type_identity<trellis::Report>{});
  edges.metrics = {{"two64", 18446744073709551616.0}, {"nan", std::nan("")},
                   {"inf", HUGE_VAL}, {"neg_inf", -HUGE_VAL}, {"neg_zero", -0.0},
                   {"min_int64", -9223372036854775808.0}, {"denormal", 5e-324}};
  return {
      {"report-edge-floats", trellis::encode(edges)},
      {"bad-truncated", hello.substr(0, hello.size() / 2)},
      {"bad-trailing-bytes", hello + '\x00'},
      {"bad-wrong-version", frame(v + 1, 1, std::map<std::string, int>{})},
      {"bad-unknown-type", frame(v, 99, std::map<std::string, int>{})},
      {"bad-type-zero", frame(v, 0, std::map<std::string, int>{})},
      {"bad-body-not-map", frame(v, 1, std::vector<int>{1, 2})},
      {"bad-field-wrong-type", frame(v, 3, std::map<std::string, std::string>{{"trial", "x"}})},
      {"bad-int-out-of-range", frame(v, 4, std::map<std::string, std::int64_t>{{"retry_ms", 1LL << 40}})},
      {"bad-param-kind", frame(v, 3, std::map<std::string, std::map<std::string, bool>>{
                                         {"params", {{"lr", true}}}})},
      {"bad-root-not-array", bytes({0x81, 0xa1, 'a', 0x01})},
      {"bad-array32-huge", bytes({0xdd, 0x7f, 0xff, 0xff, 0xff})},
      {"bad-str32-huge", bytes({0x93, 0x01, 0x01, 0x81, 0xdb, 0x7f, 0xff, 0xff, 0xff})},
      {"bad-too-deep", deep},
  };
}

template <std::size_t... I> bool write_messages(const std::string& dir, std::index_sequence<I...>) {
  return (... && [&] {
    const Message m = sample(std::type_identity<std::variant_alternative_t<I, Message>>{});
    return write(dir, trellis::message_name(m), trellis::encode(m));
  }());
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: make_corpus DIR\n");
    return 2;
  }
  const std::string dir = argv[1];
  bool ok = write_messages(dir, std::make_index_sequence<std::variant_size_v<Message>>());
  for (const auto& [name, data] : odd_frames()) ok = write(dir, name, data) && ok;
  if (!ok) {
    std::fprintf(stderr, "make_corpus: cannot write to %s\n", dir.c_str());
    return 1;
  }
  return 0;
}
