#pragma once
// When a busy group that still heartbeats counts as stalled.
//
// An agent heartbeats from its I/O thread whatever its trainer does, so a group deadlocked
// in an MPI collective, or stuck on a dead NFS mount, is never silent. Its heartbeats carry
// the steps its attempt has completed (protocol.h); a ProgressWatch keeps, for the attempt
// a group runs, when that count last grew, and, over everything the group ran, the longest
// wait between two growths of it (a slow step, or the evaluation, checkpoint and report at
// an epoch's end; seen at heartbeat resolution, so never shorter than a heartbeat).
//
// The rule: a group is stalled once its count has not grown for
//   * `stall`, when it is set (`--stall`): exactly that, in every phase;
//   * else, before the attempt's first step: `floor`. Reading the data and restoring a
//     checkpoint take a time no step predicts;
//   * else: max(floor, kFactor x the longest wait seen on this group).
// The floor also covers what happens once per attempt and so has no earlier measure: the
// first epoch's end (evaluation, checkpoint) and the test evaluation after the last epoch.
// A stalled group's trial is requeued as lost (coordinator.h); the group is told to stop it.

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <optional>

namespace trellis::coordinator {

class ProgressWatch {
 public:
  using Clock = std::chrono::steady_clock;
  using Duration = std::chrono::milliseconds;
  // Far above the jitter of a step's time, and of when a heartbeat leaves relative to it.
  static constexpr int kFactor = 10;

  bool watching(std::int64_t trial, std::int32_t attempt) const {
    return trial_ == trial && attempt_ == attempt;
  }
  // Starts on attempt (trial, attempt) at `now`, before any of its steps.
  void begin(std::int64_t trial, std::int32_t attempt, Clock::time_point now) {
    trial_ = trial;
    attempt_ = attempt;
    progress_ = 0;
    stepped_ = false;
    since_ = now;
  }
  // A heartbeat said the watched attempt has done `progress` steps, at `now`.
  void observe(std::int64_t progress, Clock::time_point now) {
    if (progress <= progress_) return;
    // The wait before the first step seen is data loading (or, for an attempt taken over
    // after a coordinator restart, unknown): it says nothing about steps.
    if (stepped_) longest_ = std::max(longest_, std::chrono::duration_cast<Duration>(now - since_));
    progress_ = progress;
    stepped_ = true;
    since_ = now;
  }
  // How long the watched attempt may go on from its last progress (or its start).
  Duration allowance(Duration floor, Duration stall) const {
    if (stall > Duration::zero()) return stall;
    if (!stepped_) return floor;
    return std::max(floor, kFactor * longest_);
  }
  // How long it has gone without progress, if that is past its allowance.
  std::optional<Duration> stalled(Clock::time_point now, Duration floor, Duration stall) const {
    const auto idle = std::chrono::duration_cast<Duration>(now - since_);
    if (idle <= allowance(floor, stall)) return std::nullopt;
    return idle;
  }
  Duration longest_wait() const { return longest_; }

 private:
  std::int64_t trial_ = -1;
  std::int32_t attempt_ = 0;
  std::int64_t progress_ = 0;
  bool stepped_ = false;       // a step of this attempt was seen
  Clock::time_point since_{};  // of the last progress, or the attempt's start
  Duration longest_{0};        // kept across attempts: the same hardware ran them
};

}  // namespace trellis::coordinator
