#pragma once
// Whether a coordinator serves an experiment now, as far as this machine can tell, for the
// commands that must not act behind its back (`trellis rm`) and those that say who serves
// (`trellis status`).
//
// The store says who served the experiment last: its newest coordinator_started event names
// the coordinator's pid and host. That process still serves it when it is alive on this host
// and started before the event was written: a process that took the pid later started after
// the coordinator had died, which was after the event. Nothing has to be cleaned up after a
// coordinator killed with SIGKILL, and a lock file would add a file beside the store that a
// network filesystem may not lock. A coordinator on another host (a store on a shared
// filesystem) cannot be checked from here: kOtherHost.

#include <cstdint>
#include <string>

#include "common/status.h"
#include "coordinator/experiment_store.h"

namespace trellis::coordinator {

struct CoordinatorPresence {
  enum class State {
    kNever,      // no coordinator_started event (a store written before schema 3)
    kServing,    // its process is alive here
    kGone,       // it exited (or was killed)
    kOtherHost,  // it ran on another host: cannot tell
  };
  State state = State::kNever;
  std::int64_t pid = 0;
  std::string host;        // empty for a coordinator older than this field
  std::string started_at;  // the event's time, ISO 8601 UTC
  std::string checkpoint_dir;  // where it told workers to checkpoint ("" none or not recorded)
  std::int64_t seq = 0;        // of the event
  std::int64_t after_report = 0;

  // "coordinator pid 1234 on vm, started 2026-...: serving" and the like.
  std::string describe() const;
};

// This machine's host name, as coordinators record it.
std::string this_host();

[[nodiscard]] Status coordinator_presence(ExperimentStore& store, const ExperimentRecord& experiment,
                                          CoordinatorPresence* out);

// True when `pid` is alive (not a zombie) on this host and started no later than `not_after`
// (Unix seconds), a second of slack for the clocks' granularity.
bool process_started_by(std::int64_t pid, double not_after);

// ISO 8601 UTC as the store writes it ("2026-11-24T03:42:40.120Z") to Unix seconds; false when
// it is not such a time.
bool parse_store_time(const std::string& text, double* seconds);

}  // namespace trellis::coordinator
