#include "common/protocol.h"

#include <msgpack.hpp>

#include <cstring>
#include <type_traits>

namespace trellis {
namespace {

// Every message type lists its fields once, in `fields`; the same list drives encoding and
// decoding, so the two cannot drift apart. Field order on the wire is this order; decoding
// goes by name, ignores unknown names and leaves missing fields at their defaults.
template <class F> void fields(Hello& m, F&& f) {
  f("group", m.group); f("ranks", m.ranks); f("host", m.host); f("pid", m.pid);
  f("topology", m.topology); f("version", m.version); f("trial", m.trial);
  f("attempt", m.attempt); f("job", m.job); f("job_log", m.job_log);
  f("job_ends_at", m.job_ends_at);
}
template <class F> void fields(Request&, F&&) {}
template <class F> void fields(DatasetRef& m, F&& f) {
  f("name", m.name); f("format", m.format); f("path", m.path);
  f("validation_fraction", m.validation_fraction); f("train", m.train); f("test", m.test);
  f("label", m.label); f("task", m.task); f("classes", m.classes); f("features", m.features);
  f("scaling", m.scaling); f("test_fraction", m.test_fraction); f("split_seed", m.split_seed);
}
template <class F> void fields(Assign& m, F&& f) {
  f("trial", m.trial); f("attempt", m.attempt); f("experiment", m.experiment);
  f("number", m.number); f("seed", m.seed); f("params", m.params); f("dataset", m.dataset);
  f("checkpoint", m.checkpoint); f("resume_epoch", m.resume_epoch); f("resume", m.resume);
  f("stop_epoch", m.stop_epoch); f("warm_start", m.warm_start);
  f("exploit_snapshots", m.exploit_snapshots);
}
template <class F> void fields(Wait& m, F&& f) { f("retry_ms", m.retry_ms); }
template <class F> void fields(Report& m, F&& f) {
  f("trial", m.trial); f("attempt", m.attempt); f("epoch", m.epoch); f("metrics", m.metrics);
  f("checkpointed", m.checkpointed);
}
template <class F> void fields(Heartbeat& m, F&& f) {
  f("trial", m.trial); f("attempt", m.attempt); f("progress", m.progress);
}
template <class F> void fields(Stop& m, F&& f) { f("trial", m.trial); f("reason", m.reason); }
template <class F> void fields(Done& m, F&& f) {
  f("trial", m.trial); f("attempt", m.attempt); f("ok", m.ok); f("error", m.error);
  f("final_metrics", m.final_metrics); f("preempted", m.preempted);
  f("checkpointed", m.checkpointed); f("model", m.model); f("model_missing", m.model_missing);
  f("error_kind", m.error_kind); f("provenance", m.provenance);
}
template <class F> void fields(Ack& m, F&& f) {
  f("trial", m.trial); f("attempt", m.attempt); f("epoch", m.epoch);
}
template <class F> void fields(Shutdown& m, F&& f) { f("reason", m.reason); }
template <class F> void fields(Refuse& m, F&& f) { f("reason", m.reason); }

constexpr const char* kNames[] = {"hello", "request", "assign",   "wait",     "report", "heartbeat",
                                  "stop",  "done",    "shutdown", "refuse", "ack"};
static_assert(std::size(kNames) == std::variant_size_v<Message>);

// Wire type code = variant index + 1. Append new types at the end of Message, never reorder.
template <class T, std::size_t I = 0> constexpr std::uint32_t type_code() {
  if constexpr (std::is_same_v<T, std::variant_alternative_t<I, Message>>) return I + 1;
  else return type_code<T, I + 1>();
}

// The packer plus its buffer: a float parameter is written as raw float64 into the buffer,
// because msgpack-cxx's pack_double stores integral doubles (1.0) as integers, which would turn
// a float hyperparameter into an int on the other side.
struct Writer {
  msgpack::sbuffer buf;
  msgpack::packer<msgpack::sbuffer> pk{&buf};
};

class DecodeError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

template <class T> struct HasFields : std::false_type {};
template <> struct HasFields<DatasetRef> : std::true_type {};

void pack_float64(Writer& w, double d) {
  std::uint64_t bits;
  std::memcpy(&bits, &d, sizeof bits);
  char bytes[9] = {static_cast<char>(0xcb)};
  for (int i = 0; i < 8; ++i) bytes[1 + i] = static_cast<char>(bits >> (56 - 8 * i));
  w.buf.write(bytes, sizeof bytes);
}

void pack_value(Writer& w, const ParamValue& v) {
  if (const auto* d = std::get_if<double>(&v)) return pack_float64(w, *d);
  std::visit([&](const auto& x) { w.pk.pack(x); }, v);
}
template <class T> void pack_value(Writer& w, const T& v);

template <class T> void pack_struct(Writer& w, T& m) {
  std::uint32_t n = 0;
  fields(m, [&](const char*, auto&) { ++n; });
  w.pk.pack_map(n);
  fields(m, [&](const char* name, auto& value) {
    w.pk.pack(std::string_view(name));
    pack_value(w, value);
  });
}

template <class T> void pack_value(Writer& w, const T& v) {
  if constexpr (HasFields<T>::value) {
    T copy = v;
    pack_struct(w, copy);
  } else if constexpr (std::is_same_v<T, ParamMap> || std::is_same_v<T, MetricMap>) {
    w.pk.pack_map(static_cast<std::uint32_t>(v.size()));
    for (const auto& [k, x] : v) {
      w.pk.pack(k);
      pack_value(w, x);
    }
  } else if constexpr (std::is_same_v<T, ErrorKind>) {
    w.pk.pack(static_cast<std::int32_t>(v));
  } else if constexpr (std::is_same_v<T, double>) {
    // Never msgpack-cxx's pack_double: besides turning 1.0 into an int, it converts 2^64 to
    // uint64 (undefined behaviour, found by tests/fuzz). Readers take ints and floats alike.
    pack_float64(w, v);
  } else {
    w.pk.pack(v);
  }
}

void read_value(const msgpack::object& o, ParamValue* out) {
  switch (o.type) {
    case msgpack::type::POSITIVE_INTEGER:
      if (o.via.u64 > static_cast<std::uint64_t>(INT64_MAX)) throw DecodeError("integer too large");
      *out = static_cast<std::int64_t>(o.via.u64);
      return;
    case msgpack::type::NEGATIVE_INTEGER: *out = o.via.i64; return;
    case msgpack::type::FLOAT32:
    case msgpack::type::FLOAT64: *out = o.via.f64; return;
    case msgpack::type::STR: *out = std::string(o.via.str.ptr, o.via.str.size); return;
    default: throw DecodeError("a parameter value must be an integer, a float or a string");
  }
}
template <class T> void read_value(const msgpack::object& o, T* out);

template <class T> void read_struct(const msgpack::object& o, T* m) {
  if (o.type != msgpack::type::MAP) throw DecodeError("body is not a map");
  for (std::uint32_t i = 0; i < o.via.map.size; ++i) {
    const msgpack::object_kv& kv = o.via.map.ptr[i];
    if (kv.key.type != msgpack::type::STR) throw DecodeError("field name is not a string");
    const std::string_view key(kv.key.via.str.ptr, kv.key.via.str.size);
    fields(*m, [&](const char* name, auto& value) {
      if (key != name) return;
      try {
        read_value(kv.val, &value);
      } catch (const msgpack::type_error&) {
        throw DecodeError("field '" + std::string(name) + "' has the wrong type");
      } catch (const DecodeError& e) {
        throw DecodeError("field '" + std::string(name) + "': " + e.what());
      }
    });
  }
}

template <class T> void read_value(const msgpack::object& o, T* out) {
  if constexpr (HasFields<T>::value) {
    read_struct(o, out);
  } else if constexpr (std::is_same_v<T, ParamMap>) {
    if (o.type != msgpack::type::MAP) throw DecodeError("not a map");
    out->clear();
    for (std::uint32_t i = 0; i < o.via.map.size; ++i) {
      const auto& kv = o.via.map.ptr[i];
      if (kv.key.type != msgpack::type::STR) throw DecodeError("parameter name is not a string");
      read_value(kv.val, &(*out)[kv.key.as<std::string>()]);
    }
  } else if constexpr (std::is_same_v<T, ErrorKind>) {
    // Any integer is accepted: only kDataset stops a sweep, and a value this side does not
    // know must not, nor may it drop the Done (the agent would resend it forever).
    if (o.type != msgpack::type::POSITIVE_INTEGER && o.type != msgpack::type::NEGATIVE_INTEGER)
      throw DecodeError("not an integer");  // a malformed field, as for any other field
    const bool dataset = o.type == msgpack::type::POSITIVE_INTEGER &&
                         o.via.u64 == static_cast<std::uint64_t>(ErrorKind::kDataset);
    *out = dataset ? ErrorKind::kDataset : ErrorKind::kTrial;
  } else {
    o.convert(*out);  // throws msgpack::type_error on a kind mismatch
  }
}

// Bounds what a hostile frame can make the unpacker allocate. Binary data is a model
// (Done::model), bounded by the frame itself.
const msgpack::unpack_limit kLimits(/*array=*/1 << 16, /*map=*/1 << 16, /*str=*/1 << 20,
                                    /*bin=*/kMaxFrameBytes, /*ext=*/1 << 10, /*depth=*/16);

}  // namespace

const char* message_name(const Message& m) { return kNames[m.index()]; }

bool is_report_frame(const void* data, std::size_t size) {
  // encode() writes [version, type, body]: a fixarray of 3, then two positive fixints.
  static_assert(kProtocolVersion < 0x80 && type_code<Report>() < 0x80);
  const auto* bytes = static_cast<const unsigned char*>(data);
  return size > 3 && bytes[0] == 0x93 && bytes[1] == kProtocolVersion &&
         bytes[2] == type_code<Report>();
}

std::string encode(const Message& m) {
  Writer w;
  w.pk.pack_array(3);
  w.pk.pack(kProtocolVersion);
  std::visit(
      [&](const auto& msg) {
        using T = std::decay_t<decltype(msg)>;
        w.pk.pack(type_code<T>());
        T copy = msg;
        pack_struct(w, copy);
      },
      m);
  return std::string(w.buf.data(), w.buf.size());
}

Status decode(const void* data, std::size_t size, Message* out, std::uint32_t* peer_version) {
  if (peer_version != nullptr) *peer_version = 0;
  if (size == 0) return Status::Error("empty frame");
  try {
    std::size_t offset = 0;
    msgpack::object_handle handle =
        msgpack::unpack(static_cast<const char*>(data), size, offset, nullptr, nullptr, kLimits);
    if (offset != size)
      return Status::Error("frame has " + std::to_string(size - offset) + " trailing bytes");
    const msgpack::object& root = handle.get();
    if (root.type != msgpack::type::ARRAY || root.via.array.size != 3)
      return Status::Error("frame is not a [version, type, body] array");
    const msgpack::object* parts = root.via.array.ptr;
    if (parts[0].type != msgpack::type::POSITIVE_INTEGER)
      return Status::Error("frame version is not an unsigned integer");
    if (peer_version != nullptr) *peer_version = static_cast<std::uint32_t>(parts[0].via.u64);
    if (parts[0].via.u64 != kProtocolVersion)
      return Status::Error("peer speaks protocol version " + std::to_string(parts[0].via.u64) +
                           ", this side speaks " + std::to_string(kProtocolVersion));
    if (parts[1].type != msgpack::type::POSITIVE_INTEGER || parts[1].via.u64 < 1 ||
        parts[1].via.u64 > std::variant_size_v<Message>)
      return Status::Error("unknown message type");
    Message decoded;
    bool matched = false;
    [&]<std::size_t... I>(std::index_sequence<I...>) {
      ((parts[1].via.u64 == I + 1
            ? (decoded.emplace<I>(), read_struct(parts[2], &std::get<I>(decoded)), matched = true)
            : false),
       ...);
    }(std::make_index_sequence<std::variant_size_v<Message>>());
    if (!matched) return Status::Error("unknown message type");
    *out = std::move(decoded);
    return Status::Ok();
  } catch (const DecodeError& e) {
    return Status::Error(std::string("malformed message: ") + e.what());
  } catch (const msgpack::insufficient_bytes&) {
    return Status::Error("truncated frame");
  } catch (const std::exception& e) {
    return Status::Error(std::string("malformed frame: ") + e.what());
  }
}

}  // namespace trellis
