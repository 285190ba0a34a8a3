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
//                           (a Hello that names a running trial asks to keep it: re-adoption
//                            after either side restarted)
//   agent: Report (each epoch)      coordinator: Ack once stored; may add Stop (prune)
//   agent: Done             coordinator: Ack, then Assign | Wait | Shutdown
//   agent: Request (after Wait)     coordinator: Assign | Wait | Shutdown
//   both:  Heartbeat every few seconds; silence past the liveness timeout means the peer is
//          gone (the coordinator requeues the group's trial; the agent says Hello again).
//          The agent's heartbeat also says how far training got: the I/O thread sends it
//          whatever the trainer does, so only its `progress` tells a live group from one stuck
//          inside a collective or on a dead file system (coordinator.h: stalls).
// The agent keeps every Report and Done in an outbox until its Ack arrives and sends them
// again after a reconnect; the store ignores duplicates, so nothing is lost or counted twice.

#include <cstddef>
#include <cstdint>
#include <string>
#include <variant>
#include <vector>

#include "common/dataset_ref.h"
#include "common/param_value.h"
#include "common/status.h"

namespace trellis {

// 2: Heartbeat carries `progress`. A version 1 agent would never show progress and so would
// look stalled; it is refused with the version mismatch instead.
inline constexpr std::uint32_t kProtocolVersion = 2;
// Frames larger than this are refused by the socket itself (ZMQ_MAXMSGSIZE).
inline constexpr std::int64_t kMaxFrameBytes = 16 << 20;

struct Hello {
  std::string group;  // stable name of the worker group, e.g. "host:pid"
  std::int32_t ranks = 1;
  std::string host;
  std::int64_t pid = 0;
  std::string topology;  // human-readable summary from hwloc
  std::string version;   // trellis version and git revision of the worker binary
  std::int64_t trial = -1;  // the trial this group is still running, if any (re-adoption)
  std::int32_t attempt = 0;
  // The batch job the group runs in, if any: its id ("123", or "120_3" for an array task),
  // its output file, and when its time limit ends (Unix seconds; 0: no limit known). Slurm
  // keeps the nodes' clocks in step, so the coordinator may compare it with its own.
  std::string job;
  std::string job_log;
  std::int64_t job_ends_at = 0;
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
  bool resume = false;  // a checkpoint exists there (possibly taken mid-epoch): continue from it
  // Train through this epoch, then stop and send Done (the scheduler pauses the trial there and
  // may continue it later from its checkpoint); 0: through the `epochs` hyperparameter.
  std::int32_t stop_epoch = 0;
  // PBT exploit: start from this checkpoint file of another trial (weights and optimizer state
  // after epoch resume_epoch) instead of the trial's own; empty: the trial's own.
  std::string warm_start;
  // PBT: having trained through stop_epoch, keep that state as exploit_snapshot(checkpoint,
  // stop_epoch) for other trials to warm-start from, and only the newest this many of them.
  std::int32_t exploit_snapshots = 0;
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
  std::int64_t trial = -1;  // -1 when idle (or sent by the coordinator)
  std::int32_t attempt = 0;
  // Training steps this attempt has completed, set by the training thread; grows while the
  // group trains, 0 before the first step (data loading, restoring a checkpoint).
  std::int64_t progress = 0;
};

struct Stop {  // stop this trial now (pruned)
  std::int64_t trial = 0;
  std::string reason;
};

// What a failed Done's error says about the rest of the sweep. On the wire an integer; a value
// this side does not know (a newer peer's), like a missing one (an older peer's), reads as
// kTrial, so the worst an odd value can do is let a sweep go on.
enum class ErrorKind : std::int32_t {
  kTrial = 0,    // this trial's own (its hyperparameters, a NaN loss, memory, a checkpoint):
                 // another trial or another attempt may succeed
  kDataset = 1,  // the dataset cannot be read as the spec says (a missing, truncated or corrupt
                 // file, labels that do not match the rows): every trial would fail the same
                 // way, so the coordinator stops the sweep
};

struct Done {
  std::int64_t trial = 0;
  std::int32_t attempt = 0;
  bool ok = true;
  std::string error;  // why, when !ok
  MetricMap final_metrics;
  // Stopped by SIGTERM (preemption, time limit) after checkpointing: run it again, not a
  // failure. `checkpointed`: the checkpoint holds the state at the moment of stopping.
  bool preempted = false;
  bool checkpointed = false;
  // A trial that trained through its last epoch: its final model, in the checkpoint file
  // format (worker/checkpoint.h) with the weights and the input scaling, for the coordinator to
  // keep if the trial ranks among the best (coordinator/model_shelf.h). `model_missing` says
  // why such a trial's model is not here (larger than a frame carries).
  std::vector<std::uint8_t> model;
  std::string model_missing;
  ErrorKind error_kind = ErrorKind::kTrial;  // when !ok
  // A JSON object of what decided the attempt's numbers as the worker saw it (dataset hash,
  // build, BLAS, rank layout: worker/provenance.h), merged into the attempt's provenance.
  std::string provenance;
};

struct Ack {  // the coordinator stored a Report (epoch >= 1) or a Done (epoch 0)
  std::int64_t trial = 0;
  std::int32_t attempt = 0;
  std::int32_t epoch = 0;
};

struct Shutdown {  // the sweep is over: exit
  std::string reason;
};

struct Refuse {  // the coordinator will not talk to this peer
  std::string reason;
};

using Message = std::variant<Hello, Request, Assign, Wait, Report, Heartbeat, Stop, Done, Shutdown,
                             Refuse, Ack>;

// "hello", "assign"... for logs.
const char* message_name(const Message& m);

[[nodiscard]] std::string encode(const Message& m);

// True when the frame begins as encode() begins a Report of this protocol version: a cheap
// look for the coordinator's scheduling (Reports may wait, the rest may not), not a check;
// decode() still judges the whole frame.
bool is_report_frame(const void* data, std::size_t size);

// On failure `out` is untouched. `*peer_version` receives the version the frame claims, when it
// got that far (0 otherwise), so a server can tell a stale peer apart from garbage.
[[nodiscard]] Status decode(const void* data, std::size_t size, Message* out,
                            std::uint32_t* peer_version = nullptr);

}  // namespace trellis
