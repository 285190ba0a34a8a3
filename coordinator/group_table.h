#pragma once
// GroupTable: the coordinator's worker groups, as sessions (who is connected, under which
// CURVE key, what each runs) and their liveness. No socket and no store: the coordinator
// feeds it what it heard and when, and carries out what it answers (requeues, Stops, events).
// Every call takes the time it happens at, so its tests need no clock and no process.
//
// Identity. A group's ZeroMQ routing id is the client's choice, so the first CURVE key heard
// under an identity binds it, and frames of another key under it are refused (admit()).
// After a coordinator restart the key a running attempt was started for binds its group's
// identity before that group speaks again (add_orphan()).
//
// Orphans. Trials a previous coordinator left running are orphans until a deadline: a group
// that names one (Hello, Report, Heartbeat, Done) with the same attempt keeps it (holds());
// a group that comes back idle says its Assign never arrived (take_orphan_of()); what is
// left at the deadline is the coordinator's to requeue (expired_orphans()).
//
// Liveness. A group silent for `liveness` is lost and forgotten; a busy group that heartbeats
// without training progress past its allowance (progress_watch.h) loses its trial but keeps
// its session (expire()).
//
// Group time. From its first Hello or Request to when it is lost or the sweep ends; the part
// of it spent told to wait for results the next proposal needs (ObservationFeed) is counted
// apart: the cost of reproducible proposals.

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/protocol.h"
#include "coordinator/progress_watch.h"

namespace trellis::coordinator {

class GroupTable {
 public:
  using Clock = std::chrono::steady_clock;

  struct Options {
    // A group silent for this long is lost.
    std::chrono::milliseconds liveness{30000};
    // See progress_watch.h: a fixed allowance when nonzero, else measured, above the floor.
    std::chrono::milliseconds stall{0};
    std::chrono::milliseconds stall_floor{120000};
  };

  struct Group {
    std::string name;  // its ZeroMQ identity
    std::string key;   // the CURVE key bound to it (Z85); empty without CURVE
    std::string host;
    std::int32_t ranks = 0;
    std::string topology;
    std::string version;
    std::int64_t trial = -1;  // store id of the trial it runs, -1 when idle
    std::int32_t attempt = 0;
    Assign assignment;    // the last one sent
    bool joined = false;  // said Hello or asked for work: only such groups are given trials
    Clock::time_point joined_at;
    // Since when it waits for a result the next proposal needs (unset: it does not).
    std::optional<Clock::time_point> waiting_for_results;
    Clock::time_point last_seen;
    ProgressWatch progress;  // of the attempt it runs, from its heartbeats
    std::uint64_t refused_frames = 0;  // sent under its identity by another key
    // The batch job it runs in (Hello), and when that job's time limit ends.
    std::string job;
    std::string job_log;
    std::optional<Clock::time_point> job_ends;
    Clock::time_point assigned_at;  // of the attempt it runs
    bool reported = false;          // that attempt has reported an epoch
    // The epoch that attempt stops after because of the job's time limit; 0: not cut.
    std::int32_t cut_after = 0;
  };

  // A group expire() found silent, or busy and stalled.
  struct Loss {
    std::string group;
    std::int64_t trial = -1;  // -1: it was idle
    std::string reason;
    bool silent = false;  // true: lost and forgotten; false: stalled, and told to stop
  };

  enum class Holding {
    kNo,       // the group does not run that attempt
    kYes,      // it does
    kAdopted,  // it does now: an orphan of a previous coordinator, taken over
  };

  explicit GroupTable(Options options) : options_(options) {}

  // --- Sessions ----------------------------------------------------------------------------
  // Why admit() refused a frame.
  struct Refusal {
    std::string owner;       // the key the identity is bound to
    std::uint64_t count = 0;  // frames refused under that identity so far, this one included
  };
  // True when `key` may speak under `identity`; otherwise the frame is to be dropped, and
  // `*refusal` (when given) says why.
  [[nodiscard]] bool admit(const std::string& identity, std::string_view key,
                           Refusal* refusal = nullptr);
  // The group under `identity` (created on its first frame), bound to `key`, heard at `now`.
  // Call only after admit() said yes.
  Group& at(const std::string& identity, std::string_view key, Clock::time_point now);
  // A frame from `key` arrived under `identity` at `now`: it keeps the group alive, unless
  // another key sent it.
  void heard(const std::string& identity, std::string_view key, Clock::time_point now);
  // Marks a group that said Hello or asked for work as one that may be given trials; true
  // the first time.
  bool join(Group& group, Clock::time_point now);
  // The group starts trial `trial` attempt `attempt`: its progress is watched from now.
  void started(Group& group, std::int64_t trial, std::int32_t attempt, Clock::time_point now);
  // The group was told to wait for results; from now unless it already waited.
  // True when it did not wait before.
  bool waits_for_results(Group& group, Clock::time_point now);
  // A heartbeat of `group` said its attempt (trial, attempt) has done `steps` steps.
  void heartbeat(Group& group, std::int64_t trial, std::int32_t attempt, std::int64_t steps,
                 Clock::time_point now);
  // The group that runs (trial, attempt), if one does.
  const Group* running(std::int64_t trial, std::int32_t attempt) const;
  const std::map<std::string, Group>& groups() const { return groups_; }

  // --- Orphans -----------------------------------------------------------------------------
  // Attempt `attempt` of `trial` was running on `group` (under `key`) when the last
  // coordinator stopped.
  void add_orphan(std::int64_t trial, std::int32_t attempt, const std::string& group,
                  const std::string& key);
  // Orphans left at `deadline` are for expired_orphans().
  void set_orphan_deadline(Clock::time_point deadline) { orphans_deadline_ = deadline; }
  std::size_t orphans() const { return orphans_.size(); }
  // Whether `group` runs (trial, attempt), taking over an orphan when it is idle and names it.
  Holding holds(Group& group, std::int64_t trial, std::int32_t attempt);
  // The orphan assigned to `group`, which says it runs nothing, forgotten; its Assign never
  // reached the group.
  std::optional<std::int64_t> take_orphan_of(const Group& group);
  // True, forgetting it, when (trial, attempt) is an orphan: its Done came from a group that
  // has moved on.
  bool end_orphan(std::int64_t trial, std::int32_t attempt);
  // Past the deadline: every orphan left, forgotten.
  std::vector<std::int64_t> expired_orphans(Clock::time_point now);

  // --- Liveness and group time ---------------------------------------------------------------
  // Groups silent past the liveness are forgotten (their time counted); busy groups stalled
  // past their allowance lose their trial. What was lost, in identity order.
  std::vector<Loss> expire(Clock::time_point now);
  // Every group's session ends at `now` (the sweep finished): its time is counted.
  void end_sessions(Clock::time_point now);
  double group_seconds() const { return group_seconds_; }
  double idle_for_results_seconds() const { return idle_for_results_seconds_; }

 private:
  struct Orphan {
    std::int32_t attempt = 0;
    std::string group;  // the group that attempt was assigned to
  };
  // The key an orphan's attempt was started for, by group identity, until that group speaks.
  struct BoundKey {
    std::string key;
    std::uint64_t refused = 0;
  };

  // Ends a wait for results; adds the group's time so far when `leaving`.
  void account(Group& group, Clock::time_point now, bool leaving);

  Options options_;
  std::map<std::string, Group> groups_;  // by identity
  std::map<std::int64_t, Orphan> orphans_;  // by trial id
  std::map<std::string, BoundKey> restored_keys_;
  Clock::time_point orphans_deadline_;
  double group_seconds_ = 0;
  double idle_for_results_seconds_ = 0;
};

}  // namespace trellis::coordinator
