#pragma once
// The wire protocol between the coordinator and each worker group's agent (rank 0).
//
// One ZeroMQ frame holds one message: a msgpack array [version, type, body], where body is a
// map keyed by field name, so a field added later is ignored by an older peer of the same
// version. `decode` never throws and never trusts the frame: a wrong version, an unknown
// type, a truncated or oversized body all come back as a Status naming what was wrong.
//
// Conversation (DEALER agent -> ROUTER coordinator):
//   agent: Hello            coordinator: Assign | Wait | Shutdown | Refuse
//   agent: Report (each epoch)      coordinator may answer: Stop (prune this trial)
//   agent: Heartbeat (while busy)
//   agent: Done             coordinator: Assign | Wait | Shutdown
//   agent: Request (after Wait)     coordinator: Assign | Wait | Shutdown

#include <cstddef>
#include <cstdint>
#include <string>
#include <variant>

#include "common/dataset_ref.h"
#include "common/param_value.h"
#include "common/status.h"

namespace trellis {

inline constexpr std::uint32_t kProtocolVersion = 1;
// Frames larger than this are refused by the socket itself (ZMQ_MAXMSGSIZE).
inline constexpr std::int64_t kMaxFrameBytes = 16 << 20;

struct Hello {
  std::string group;  // stable name of the worker group, e.g. "host:pid"
  std::int32_t ranks = 1;
  std::string host;
  std::int64_t pid = 0;
  std::string topology;  // human-readable summary from hwloc
  std::string version;   // trellis version and git revision of the worker binary
};

struct Request {};  // ready for work (after Wait)

struct Assign {
  std::int64_t trial = 0;  // store id of the trial
  std::int32_t attempt = 0;
  std::string experiment;
  std::int32_t number = 0;  // the trial's number within the experiment, for people
  std::uint64_t seed = 0;
  ParamMap params;  // hyperparameters, see train_config.h
  DatasetRef dataset;
  // Where rank 0 keeps the trial's checkpoint (empty: no checkpoints), and the epoch of the
  // checkpoint there to continue from (0: start from scratch).
  std::string checkpoint;
  std::int32_t resume_epoch = 0;
};

struct Wait {
  std::int32_t retry_ms = 500;
};

struct Report {
  std::int64_t trial = 0;
  std::int32_t attempt = 0;
  std::int32_t epoch = 0;  // 1-based
  MetricMap metrics;
  bool checkpointed = false;  // this epoch's checkpoint is durably written
};

struct Heartbeat {
  std::int64_t trial = -1;  // -1 when idle
};

struct Stop {  // stop this trial now (pruned)
  std::int64_t trial = 0;
  std::string reason;
};

struct Done {
  std::int64_t trial = 0;
  std::int32_t attempt = 0;
  bool ok = true;
  std::string error;  // why, when !ok
  MetricMap final_metrics;
};

struct Shutdown {  // the sweep is over: exit
  std::string reason;
};

struct Refuse {  // the coordinator will not talk to this peer
  std::string reason;
};

using Message = std::variant<Hello, Request, Assign, Wait, Report, Heartbeat, Stop, Done, Shutdown,
                             Refuse>;

// "hello", "assign"... for logs.
const char* message_name(const Message& m);

[[nodiscard]] std::string encode(const Message& m);

// On failure `out` is untouched. `*peer_version` receives the version the frame claims, when it
// got that far (0 otherwise), so a server can tell a stale peer apart from garbage.
[[nodiscard]] Status decode(const void* data, std::size_t size, Message* out,
                            std::uint32_t* peer_version = nullptr);

}  // namespace trellis
