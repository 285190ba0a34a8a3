#include "common/protocol.h"

#include <gtest/gtest.h>

#include <limits>
#include <msgpack.hpp>

namespace trellis {
namespace {

Message round_trip(const Message& m) {
  const std::string frame = encode(m);
  Message out;
  Status s = decode(frame.data(), frame.size(), &out);
  EXPECT_TRUE(s.ok()) << s.message();
  return out;
}

TEST(Protocol, AssignRoundTripKeepsParamKinds) {
  Assign a;
  a.trial = 42;
  a.attempt = 3;
  a.experiment = "fashion";
  a.number = 5;
  a.seed = 0xfedcba9876543210ULL;
  a.params = {{"lr", 1e-3}, {"hidden_units", std::int64_t{128}}, {"optimizer", std::string("adam")},
              {"whole", 1.0}};
  a.dataset = DatasetRef{"fm", "idx", "/data/fm", 0.2};
  const Message out = round_trip(a);
  ASSERT_TRUE(std::holds_alternative<Assign>(out));
  const Assign& b = std::get<Assign>(out);
  EXPECT_EQ(b.trial, 42);
  EXPECT_EQ(b.attempt, 3);
  EXPECT_EQ(b.experiment, "fashion");
  EXPECT_EQ(b.number, 5);
  EXPECT_EQ(b.seed, 0xfedcba9876543210ULL);
  EXPECT_EQ(b.params, a.params);
  EXPECT_TRUE(std::holds_alternative<double>(b.params.at("whole")));  // 1.0 stays a float
  EXPECT_EQ(b.dataset.path, "/data/fm");
  EXPECT_EQ(b.dataset.validation_fraction, 0.2);
}

TEST(Protocol, EveryMessageTypeRoundTrips) {
  const std::vector<Message> all = {
      Hello{"h:1", 4, "h", 1, "2 cores"}, Request{}, Assign{}, Wait{250},
      Report{7, 1, 3, {{"val_acc", 0.5}}}, Heartbeat{7}, Stop{7, "pruned"},
      Done{7, 1, false, "boom", {{"test_acc", 0.9}}}, Shutdown{"over"}, Refuse{"version"}};
  for (const Message& m : all) {
    const Message out = round_trip(m);
    EXPECT_EQ(out.index(), m.index()) << message_name(m);
  }
  Hello hello{"n1:4", 2, "n1", 4, "2 cores"};
  hello.job = "120_3";
  hello.job_log = "/home/me/trellis-e-120_3.log";
  hello.job_ends_at = 1'800'000'000;
  const Hello h = std::get<Hello>(round_trip(hello));
  EXPECT_EQ(h.job, "120_3");
  EXPECT_EQ(h.job_log, "/home/me/trellis-e-120_3.log");
  EXPECT_EQ(h.job_ends_at, 1'800'000'000);
  // A worker outside a batch job (or of an older build) leaves them out: no limit known.
  EXPECT_EQ(std::get<Hello>(round_trip(Hello{"h:1", 1, "h", 1, ""})).job_ends_at, 0);
  const Done d = std::get<Done>(round_trip(Done{7, 1, false, "boom", {{"test_acc", 0.9}}}));
  EXPECT_FALSE(d.ok);
  EXPECT_EQ(d.error, "boom");
  EXPECT_EQ(d.final_metrics.at("test_acc"), 0.9);
}

// A final model is binary and may be megabytes: every byte value and a size past the limits
// that bound strings survive the trip.
TEST(ProtocolTest, DoneCarriesAModelOfAnyBytes) {
  Done done{3, 2, true, "", {{"val_acc", 0.5}}};
  done.model.resize((1 << 20) + 17);
  for (std::size_t i = 0; i < done.model.size(); ++i)
    done.model[i] = static_cast<std::uint8_t>(i * 131 + (i >> 8));
  const Done back = std::get<Done>(round_trip(done));
  EXPECT_EQ(back.model, done.model);
  EXPECT_TRUE(back.model_missing.empty());
  Done without{3, 2, true, "", {}};
  without.model_missing = "too large";
  EXPECT_EQ(std::get<Done>(round_trip(without)).model_missing, "too large");
  EXPECT_TRUE(std::get<Done>(round_trip(without)).model.empty());
}

// The worker's provenance rides in the Done as JSON text; a Done from a worker that sends none
// (an older one) reads as empty, which the coordinator leaves alone.
TEST(ProtocolTest, DoneCarriesTheWorkersProvenance) {
  Done done{3, 2, true, "", {}};
  done.provenance = R"({"dataset_hash":"crc32:0123abcd","blas":{"threads":2}})";
  EXPECT_EQ(std::get<Done>(round_trip(done)).provenance, done.provenance);
  EXPECT_TRUE(std::get<Done>(round_trip(Done{3, 2, true, "", {}})).provenance.empty());
}

// Packs [version, type, body] by hand, to build frames our encoder never would.
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

Status decode_string(const std::string& bytes, std::uint32_t* version = nullptr) {
  Message m;
  return decode(bytes.data(), bytes.size(), &m, version);
}

TEST(Protocol, RejectsGarbageAndEmptyFrames) {
  EXPECT_FALSE(decode_string("").ok());
  EXPECT_FALSE(decode_string("GET / HTTP/1.1\r\n\r\n").ok());
  EXPECT_FALSE(decode_string(std::string("\xc1", 1)).ok());  // never-used msgpack byte
  msgpack::sbuffer buf;
  msgpack::pack(buf, 12345);
  EXPECT_FALSE(decode_string(std::string(buf.data(), buf.size())).ok());  // not an array
}

TEST(Protocol, RejectsEveryTruncationOfAValidFrame) {
  const std::string whole =
      encode(Assign{1, 1, "e", 0, 9, {{"lr", 0.1}}, DatasetRef{"d", "idx", "/p", 0.1}});
  for (std::size_t n = 0; n < whole.size(); ++n)
    EXPECT_FALSE(decode_string(whole.substr(0, n)).ok()) << "prefix of " << n << " bytes";
  EXPECT_FALSE(decode_string(whole + "x").ok());  // trailing bytes
}

TEST(Protocol, RefusesOtherVersionsAndSaysWhich) {
  std::uint32_t version = 0;
  const Status s = decode_string(frame(kProtocolVersion + 1, 1, std::map<std::string, int>{}), &version);
  EXPECT_FALSE(s.ok());
  EXPECT_EQ(version, kProtocolVersion + 1);
  EXPECT_NE(s.message().find("version"), std::string::npos) << s.message();
}

TEST(Protocol, RejectsUnknownTypesAndWrongFieldTypes) {
  EXPECT_FALSE(decode_string(frame(kProtocolVersion, 0, std::map<std::string, int>{})).ok());
  EXPECT_FALSE(decode_string(frame(kProtocolVersion, 99, std::map<std::string, int>{})).ok());
  // Report (type 5) whose trial is a string.
  const Status s =
      decode_string(frame(kProtocolVersion, 5, std::map<std::string, std::string>{{"trial", "x"}}));
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("trial"), std::string::npos) << s.message();
  // Body that is not a map.
  EXPECT_FALSE(decode_string(frame(kProtocolVersion, 5, std::vector<int>{1, 2})).ok());
}

// The kind of a failed Done decides whether the sweep stops (kDataset). A Done of an older
// worker (no field), of a newer one (a kind this side does not know) or of a confused one
// (negative, huge) reads as kTrial and is still decoded; only a non-integer is malformed.
TEST(Protocol, DoneErrorKindSurvivesOldAndOddValues) {
  Done failed{7, 1, false, "dataset /d: cannot open /d/train-labels-idx1-ubyte", {}};
  failed.error_kind = ErrorKind::kDataset;
  EXPECT_EQ(std::get<Done>(round_trip(failed)).error_kind, ErrorKind::kDataset);
  EXPECT_EQ(std::get<Done>(round_trip(Done{7, 1, false, "nan", {}})).error_kind, ErrorKind::kTrial);
  constexpr std::uint64_t kDone = 8;  // type code: variant index + 1
  const auto kind_of = [&](const auto& value) {
    msgpack::sbuffer buf;
    msgpack::packer<msgpack::sbuffer> pk(&buf);
    pk.pack_array(3);
    pk.pack(kProtocolVersion);
    pk.pack(kDone);
    pk.pack_map(3);
    pk.pack(std::string("trial"));
    pk.pack(7);
    pk.pack(std::string("ok"));
    pk.pack(false);
    pk.pack(std::string("error_kind"));
    pk.pack(value);
    Message m;
    const Status s = decode(buf.data(), buf.size(), &m);
    EXPECT_TRUE(s.ok()) << s.message();
    return s.ok() ? std::get<Done>(m).error_kind : ErrorKind::kDataset;
  };
  EXPECT_EQ(kind_of(1), ErrorKind::kDataset);
  EXPECT_EQ(kind_of(0), ErrorKind::kTrial);
  EXPECT_EQ(kind_of(2), ErrorKind::kTrial);
  EXPECT_EQ(kind_of(-1), ErrorKind::kTrial);
  EXPECT_EQ(kind_of(std::numeric_limits<std::uint64_t>::max()), ErrorKind::kTrial);
  EXPECT_EQ(kind_of(std::numeric_limits<std::int64_t>::min()), ErrorKind::kTrial);
  const Status text = decode_string(
      frame(kProtocolVersion, kDone, std::map<std::string, std::string>{{"error_kind", "dataset"}}));
  EXPECT_FALSE(text.ok());
  EXPECT_NE(text.message().find("error_kind"), std::string::npos) << text.message();
}

TEST(Protocol, HeartbeatCarriesTrainingProgress) {
  const Heartbeat b = std::get<Heartbeat>(round_trip(Heartbeat{7, 2, 123456789012}));
  EXPECT_EQ(b.trial, 7);
  EXPECT_EQ(b.attempt, 2);
  EXPECT_EQ(b.progress, 123456789012);
}

// A version 1 agent's heartbeat has no progress, so it would look stalled: it is refused as a
// stale peer instead, and the version it spoke is reported so the coordinator can say so.
TEST(Protocol, RefusesVersionOnePeers) {
  ASSERT_GT(kProtocolVersion, 1u);
  std::uint32_t version = 0;
  const Status s = decode_string(
      frame(1, 6, std::map<std::string, std::int64_t>{{"trial", 5}, {"attempt", 1}}), &version);
  EXPECT_FALSE(s.ok());
  EXPECT_EQ(version, 1u);
  EXPECT_NE(s.message().find("version 1"), std::string::npos) << s.message();
}

TEST(Protocol, IgnoresUnknownFieldsFromNewerPeersOfTheSameVersion) {
  Message m;
  const std::string bytes =
      frame(kProtocolVersion, 6, std::map<std::string, std::int64_t>{{"trial", 5}, {"future", 1}});
  ASSERT_TRUE(decode(bytes.data(), bytes.size(), &m).ok());
  EXPECT_EQ(std::get<Heartbeat>(m).trial, 5);
}

TEST(Protocol, RefusesHostileSizesWithoutAllocatingThem) {
  // An array header claiming 2^32-1 elements with no data behind it.
  const std::string huge_array("\x93\x01\x05\xdd\xff\xff\xff\xff", 8);
  EXPECT_FALSE(decode_string(huge_array).ok());
  // Nesting deeper than the unpacker allows.
  std::string deep = "\x93\x01\x05";
  for (int i = 0; i < 100; ++i) deep += "\x91";
  deep += "\x00";
  EXPECT_FALSE(decode_string(deep).ok());
}

TEST(Protocol, TellsReportFramesApartWithoutDecoding) {
  const auto is_report = [](const Message& m) {
    const std::string frame = encode(m);
    return is_report_frame(frame.data(), frame.size());
  };
  EXPECT_TRUE(is_report(Report{3, 1, 2, {{"val_acc", 0.5}}}));
  EXPECT_FALSE(is_report(Done{}));
  EXPECT_FALSE(is_report(Hello{}));
  EXPECT_FALSE(is_report(Request{}));
  EXPECT_FALSE(is_report(Heartbeat{}));
  std::string other_version = encode(Report{});
  other_version[1] = static_cast<char>(kProtocolVersion + 1);
  EXPECT_FALSE(is_report_frame(other_version.data(), other_version.size()));
  EXPECT_FALSE(is_report_frame("", 0));
  EXPECT_FALSE(is_report_frame("\x93", 1));
}

}  // namespace
}  // namespace trellis
