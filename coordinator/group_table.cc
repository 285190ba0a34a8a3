#include "coordinator/group_table.h"

#include <spdlog/fmt/fmt.h>

namespace trellis::coordinator {
namespace {

double seconds(GroupTable::Clock::duration d) { return std::chrono::duration<double>(d).count(); }

}  // namespace

bool GroupTable::admit(const std::string& identity, std::string_view key, Refusal* refusal) {
  const std::string* owner = nullptr;
  std::uint64_t* count = nullptr;
  if (auto it = groups_.find(identity); it != groups_.end()) {
    owner = &it->second.key;
    count = &it->second.refused_frames;
  } else if (auto b = restored_keys_.find(identity); b != restored_keys_.end()) {
    owner = &b->second.key;
    count = &b->second.refused;
  }
  if (owner == nullptr || *owner == key) return true;
  ++*count;
  if (refusal != nullptr) *refusal = {*owner, *count};
  return false;
}

GroupTable::Group& GroupTable::at(const std::string& identity, std::string_view key,
                                  Clock::time_point now) {
  auto [it, inserted] = groups_.try_emplace(identity);
  Group& group = it->second;
  if (inserted) {
    group.name = identity;
    group.key = key;
    // The group speaks for itself now; a refusal count carries over.
    if (auto b = restored_keys_.find(identity); b != restored_keys_.end()) {
      group.refused_frames = b->second.refused;
      restored_keys_.erase(b);
    }
  }
  group.last_seen = now;
  return group;
}

void GroupTable::heard(const std::string& identity, std::string_view key, Clock::time_point now) {
  if (auto it = groups_.find(identity); it != groups_.end() && it->second.key == key)
    it->second.last_seen = now;
}

bool GroupTable::join(Group& group, Clock::time_point now) {
  if (group.joined) return false;
  group.joined = true;
  group.joined_at = now;
  return true;
}

void GroupTable::started(Group& group, std::int64_t trial, std::int32_t attempt,
                         Clock::time_point now) {
  group.trial = trial;
  group.attempt = attempt;
  group.assigned_at = now;
  group.reported = false;
  group.cut_after = 0;
  group.progress.begin(trial, attempt, now);
  account(group, now, /*leaving=*/false);
}

bool GroupTable::waits_for_results(Group& group, Clock::time_point now) {
  if (group.waiting_for_results) return false;
  group.waiting_for_results = now;
  return true;
}

void GroupTable::heartbeat(Group& group, std::int64_t trial, std::int32_t attempt,
                           std::int64_t steps, Clock::time_point now) {
  if (trial < 0 || group.trial != trial || group.attempt != attempt) return;
  if (!group.progress.watching(trial, attempt)) group.progress.begin(trial, attempt, now);
  group.progress.observe(steps, now);
}

const GroupTable::Group* GroupTable::running(std::int64_t trial, std::int32_t attempt) const {
  for (const auto& [identity, group] : groups_)
    if (group.trial == trial && group.attempt == attempt) return &group;
  return nullptr;
}

void GroupTable::add_orphan(std::int64_t trial, std::int32_t attempt, const std::string& group,
                            const std::string& key) {
  orphans_[trial] = Orphan{attempt, group};
  if (!key.empty() && groups_.count(group) == 0) restored_keys_[group].key = key;
}

GroupTable::Holding GroupTable::holds(Group& group, std::int64_t trial, std::int32_t attempt) {
  if (group.trial == trial && group.attempt == attempt) return Holding::kYes;
  const auto orphan = orphans_.find(trial);
  if (group.trial >= 0 || orphan == orphans_.end() || orphan->second.attempt != attempt)
    return Holding::kNo;
  orphans_.erase(orphan);
  group.trial = trial;
  group.attempt = attempt;
  return Holding::kAdopted;
}

std::optional<std::int64_t> GroupTable::take_orphan_of(const Group& group) {
  for (auto it = orphans_.begin(); it != orphans_.end(); ++it) {
    if (it->second.group != group.name) continue;
    const std::int64_t trial = it->first;
    orphans_.erase(it);
    return trial;  // a group runs one attempt at a time
  }
  return std::nullopt;
}

bool GroupTable::end_orphan(std::int64_t trial, std::int32_t attempt) {
  const auto orphan = orphans_.find(trial);
  if (orphan == orphans_.end() || orphan->second.attempt != attempt) return false;
  orphans_.erase(orphan);
  return true;
}

std::vector<std::int64_t> GroupTable::expired_orphans(Clock::time_point now) {
  std::vector<std::int64_t> expired;
  if (orphans_.empty() || now < orphans_deadline_) return expired;
  for (const auto& [trial, orphan] : orphans_) expired.push_back(trial);
  orphans_.clear();
  return expired;
}

std::vector<GroupTable::Loss> GroupTable::expire(Clock::time_point now) {
  std::vector<Loss> lost;
  for (auto it = groups_.begin(); it != groups_.end();) {
    Group& g = it->second;
    if (now - g.last_seen >= options_.liveness) {
      lost.push_back({g.name, g.trial,
                      fmt::format("worker group '{}' lost (silent for {} ms)", g.name,
                                  options_.liveness.count()),
                      /*silent=*/true});
      account(g, now, /*leaving=*/true);
      it = groups_.erase(it);
      continue;
    }
    ++it;
    if (g.trial < 0) continue;
    // Watched from when the group was first seen running it: the Assign went out about then.
    if (!g.progress.watching(g.trial, g.attempt)) g.progress.begin(g.trial, g.attempt, now);
    const auto idle = g.progress.stalled(now, options_.stall_floor, options_.stall);
    if (!idle) continue;
    lost.push_back(
        {g.name, g.trial,
         fmt::format("stalled: no training progress for {:.1f} s (worker group '{}' still "
                     "answers; allowed {:.1f} s)",
                     seconds(*idle), g.name,
                     seconds(g.progress.allowance(options_.stall_floor, options_.stall))),
         /*silent=*/false});
    // The group keeps its identity but not the trial: should it ever move again, the Stop
    // ends the attempt there, and its Done is acknowledged as not current.
    g.trial = -1;
  }
  return lost;
}

void GroupTable::end_sessions(Clock::time_point now) {
  for (auto& [identity, group] : groups_) account(group, now, /*leaving=*/true);
}

void GroupTable::account(Group& group, Clock::time_point now, bool leaving) {
  if (group.waiting_for_results) {
    idle_for_results_seconds_ += seconds(now - *group.waiting_for_results);
    group.waiting_for_results.reset();
  }
  if (leaving && group.joined) {
    group_seconds_ += seconds(now - group.joined_at);
    group.joined_at = now;  // counted
  }
}

}  // namespace trellis::coordinator
