#pragma once
// Coordinator: serves one sweep to worker groups over a ZeroMQ ROUTER socket.
//
// The trial state machine is TrialBook (trial_book.h): it decides what a free group runs and
// how an attempt ends. This class carries the decisions out: group sessions and liveness,
// store writes and the sweep's events, the wire. Every report reaches the store before it is
// acknowledged, then the book, whose scheduler may stop the trial. A malformed frame or a
// message that does not fit the state is logged and dropped; the loop keeps serving the other
// groups.
//
// The sweep ends when nothing runs or waits and the scheduler has nothing left: trials still
// paused then are marked pruned with the scheduler's reason. It stops early when a trial
// fails on its dataset (Done::error_kind kDataset: a missing, truncated or corrupt file, which
// every trial reads): in the commit that fails that trial, the trials other groups run go
// back to pending, the experiment becomes "failed" with a `sweep_stopped` event that says
// why, every group is told to shut down, and Run() returns the error. No further trial is
// started. Serving the same spec again resumes it (once the dataset is fixed).
//
// Faults: a busy group silent past `liveness` is lost; its trial goes back to pending and
// resumes from its last checkpoint, or fails once it was lost `max_failures` times. So is a
// busy group that heartbeats but whose training progress stopped for longer than its own
// measured step times allow (`stall`, `stall_floor`; the rule is in progress_watch.h): a
// deadlock inside MPI or a hung file system never silences the agent's I/O thread. After a
// restart on the same store, trials left running are orphans for one liveness period: a group
// that reconnects still running one (its Hello, Report or Heartbeat names it) keeps it, and
// the rest go back to pending.
//
// Group commit: each turn of the loop takes every frame waiting on the socket into the Inbox
// (inbox.h), handles what waits for an Assign (Hello, Request, Done) inside one store batch,
// commits it, and only then sends what it queued in its outbox (Acks, Assigns); then the same
// for Reports, as many as a time budget allows. Nothing is acknowledged before it is durable,
// a thousand reports cost one commit instead of a thousand, and a group waiting for work waits
// for neither the Reports before it nor their commit.

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <zmq.hpp>
#include <zmq_addon.hpp>

#include "common/protocol.h"
#include "common/socket_factory.h"
#include "common/status.h"
#include "common/sweep_spec.h"
#include "coordinator/experiment_store.h"
#include "coordinator/group_table.h"
#include "coordinator/inbox.h"
#include "coordinator/model_shelf.h"
#include "coordinator/trial_book.h"
#include "coordinator/walltime.h"
#include "coordinator/zap_handler.h"

namespace trellis::coordinator {

struct CoordinatorOptions {
  std::string bind = "tcp://127.0.0.1:*";
  // A busy group silent for this long is declared lost and its trial requeued.
  std::chrono::milliseconds liveness{30000};
  // A busy group whose heartbeats show no training progress for this long is declared lost;
  // zero: as its own step times allow, but never less than stall_floor (progress_watch.h).
  std::chrono::milliseconds stall{0};
  std::chrono::milliseconds stall_floor{120000};
  // The coordinator's own heartbeat to every group, so agents can tell it is alive.
  std::chrono::milliseconds heartbeat{1000};
  std::int32_t max_failures = 3;
  // How long an idle group waits before asking again when every trial is taken.
  std::chrono::milliseconds wait_retry{500};
  std::chrono::milliseconds poll_interval{100};
  // Where workers keep trial checkpoints (a path every worker node can reach); empty: none.
  // Trial n of experiment E checkpoints to DIR/E/trial-n.ckpt.
  std::string checkpoint_dir;
  // Where the final models of the best trials are kept (model_shelf.h): DIR/E/trial-n.model,
  // as many as the spec's keep_models; empty: none. `trellis` makes it STORE.models.
  std::string model_dir;
  // Kept free before a group's batch job ends: Slurm's timers act up to ~30 s late or early,
  // and the group still has to report and leave (walltime.h).
  std::chrono::milliseconds walltime_margin{30000};
  // CURVE keys of the coordinator, and the worker public keys it admits (Z85).
  SocketSecurity security;
  std::vector<std::string> authorized_workers;
};

class Coordinator {
 public:
  Coordinator(ExperimentStore* store, SweepSpec spec, CoordinatorOptions options);
  ~Coordinator();

  // Creates the experiment, or resumes it when the store already has it with the same spec
  // (running trials of a previous coordinator go back to pending). Binds the socket.
  [[nodiscard]] Status Start();

  // The bound endpoint with the port resolved ("tcp://127.0.0.1:43121").
  const std::string& endpoint() const { return endpoint_; }
  const ExperimentRecord& experiment() const { return experiment_; }
  SweepProgress progress() const { return book_ ? book_->progress() : SweepProgress{}; }
  bool finished() const { return book_ && book_->finished(); }
  // The sweep stopped on a dataset error (see the top of this file): Run()'s error says why.
  bool stopped() const { return !stopped_.ok(); }

  // Serves until the sweep is finished (every group is then told to shut down) or
  // `keep_going` returns false. `keep_going` is called about every poll interval.
  [[nodiscard]] Status Run(const std::function<bool()>& keep_going);

 private:
  using Group = GroupTable::Group;

  // One turn of the loop: receive, then one batch for what waits for an Assign and one for the
  // rest (see the top of this file).
  [[nodiscard]] Status serve_turn();
  // Handles queued messages (Reports too if `reports`) in one store batch, commits, then sends
  // what they answered.
  [[nodiscard]] Status serve_batch(bool reports);
  // Moves every frame waiting on the socket into inbox_ (malformed envelopes are dropped).
  void receive();
  // Decodes one frame and handles it (forgetting the trial a Done ended); a malformed one is
  // dropped and logged (and refused when it names another protocol version), and so is one
  // sent under a group's identity by another CURVE key than the group's.
  void handle_frame(const std::string& identity, const zmq::message_t& payload);
  void handle(Group& group, const Message& message);
  void on_hello(Group& group, const Hello& hello);
  void on_report(Group& group, const Report& report);
  void on_done(Group& group, const Done& done);
  // True when `group` runs (trial, attempt), taking over (and recording) an orphan of a
  // previous coordinator if need be.
  bool holds(Group& group, std::int64_t trial, std::int32_t attempt);
  // Sends the group's current Assign again (its Hello crossed our answer).
  void reassign(Group& group);
  // Requeues, at the front, the orphan assigned to `group`, which now says it runs nothing:
  // its Assign never reached the group (an agent names its attempt until that attempt's Done
  // is stored), so it runs next, as it would have without the restart.
  void requeue_orphan_of(const Group& group);
  // Answers a free group with what the trial book decides: Assign, Wait or Shutdown; Shutdown
  // also when not one epoch fits before its batch job's time limit (walltime.h).
  void assign_or_wait(Group& group);
  // Whole epochs that fit before `group`'s job ends; nullopt when it has no known limit or no
  // epoch has been timed yet.
  std::optional<int> epochs_before_time_limit(const Group& group) const;
  // Tells a group whose batch job has no room left for an epoch to leave (Shutdown).
  void release(Group& group, const std::string& reason);
  std::string provenance(const Group& group) const;
  // Stores the new trial of decision `d` and enters it in the book; nullopt when the store
  // refused it (the coordinator then stops).
  std::optional<std::int64_t> new_trial(const Decision& d);
  // Carries out a kContinue job on its paused trial: a report must have said the checkpoint
  // it continues from was written, else the trial fails with the reason and false is returned.
  bool continue_trial(const Job& job);
  // Starts trial `id` (pending) on `group`.
  void start(Group& group, std::int64_t id);
  std::string checkpoint_base(std::int32_t number) const;
  // A trial completed: its model goes on the shelf if it ranks among the best. A shelf that
  // cannot be written is logged and recorded (model_not_kept); the sweep goes on.
  void shelve(const TrialBook::Trial& t, std::int64_t id, const Done& done, double loss);
  // The shelf as the store's completed trials make it, after a (re)start.
  [[nodiscard]] Status restore_shelf();
  // Requeues the trials of lost and stalled groups (GroupTable::expire) and of orphans whose
  // groups did not come back.
  void expire_groups();
  void send_heartbeats();
  // A store write failed or our state disagrees with the scheduler's: the turn's batch is not
  // committed, nothing of it is acknowledged, and Run() returns `error` (the first one). The
  // store is as of the last commit, so a restart continues from there.
  void stop_on(const Status& error);
  // Appends an event of the sweep's story (experiment_store.h, EventRecord) to the open batch;
  // `trial` -1 for none. A failed write stops the coordinator like any store error.
  void record(const char* kind, std::int64_t trial, const std::string& group,
              nlohmann::json body);
  // Trial `number` (id `trial`) failed on its dataset: stops the sweep as the top of this file
  // says, inside the open batch.
  void stop_sweep(std::int64_t trial, std::int32_t number, const std::string& error);
  // A trial's group is gone: back to pending (or failed at max_failures).
  void requeue(std::int64_t trial, const std::string& reason, Requeue why);
  // Queued in outbox_ during a turn, sent when its batch is committed; sent at once otherwise.
  void send(const std::string& identity, const Message& message);
  void send_frame(const std::string& identity, const std::string& frame, const char* what);
  void flush_outbox();
  // Restores the book from the store (book_restore.h); trials left running become orphans.
  Status load_progress();

  ExperimentStore* store_;
  SweepSpec spec_;
  CoordinatorOptions options_;
  std::unique_ptr<TrialBook> book_;  // the trial state machine, made by Start()
  std::unique_ptr<ModelShelf> shelf_;  // made by Start()
  Status fatal_;  // see stop_on()
  Status stopped_;  // see stop_sweep(): returned by Run() once its batch is committed
  zmq::context_t context_;
  std::unique_ptr<ZapHandler> zap_;  // before socket_: the handshake needs it first
  std::unique_ptr<zmq::socket_t> socket_;
  std::string endpoint_;
  ExperimentRecord experiment_;
  GroupTable groups_;  // sessions, orphans and liveness
  EpochClock epoch_clock_;  // what fits before a group's time limit
  std::chrono::steady_clock::time_point last_heartbeat_;
  std::chrono::steady_clock::time_point last_timers_;

  struct Outgoing {
    std::string identity;
    std::string frame;
    const char* what;  // message_name(), for a failed send's warning
  };
  Inbox inbox_;
  std::vector<Outgoing> outbox_;
  bool holding_sends_ = false;  // a turn's batch is open: answers wait for its commit
};

}  // namespace trellis::coordinator
