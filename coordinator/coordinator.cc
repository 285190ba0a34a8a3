#include "coordinator/coordinator.h"

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "common/seed.h"
#include "common/socket_factory.h"

namespace trellis::coordinator {
namespace {

// A batch handles messages for at most this long (at least one) and at most this many, so
// what it answers waits little for its commit, and a Done that arrives meanwhile little for
// its turn.
constexpr auto kBatchBudget = std::chrono::microseconds(500);
constexpr int kMaxMessagesPerBatch = 1024;
// Frames held in the inbox at most; beyond either bound they wait in ZeroMQ (whose high-water
// marks then push back on the senders), so a flood cannot take the memory.
constexpr std::size_t kMaxQueuedFrames = 16384;
constexpr std::size_t kMaxQueuedBytes = 64 << 20;
// Liveness, orphans and heartbeats have second-scale deadlines: no need to look every turn.
constexpr auto kTimerInterval = std::chrono::milliseconds(10);

std::string describe(const ParamMap& params) {
  std::string out;
  for (const auto& [k, v] : params) out += (out.empty() ? "" : " ") + k + "=" + trellis::to_string(v);
  return out;
}

std::string describe(const MetricMap& metrics) {
  std::string out;
  for (const auto& [k, v] : metrics) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "%s=%.4g", k.c_str(), v);
    out += (out.empty() ? "" : " ") + std::string(buf);
  }
  return out;
}

}  // namespace

Coordinator::Coordinator(ExperimentStore* store, SweepSpec spec, CoordinatorOptions options)
    : store_(store),
      spec_(std::move(spec)),
      options_(std::move(options)),
      searcher_(spec_.space, spec_.fixed, spec_.seed),
      context_(1) {}

Coordinator::~Coordinator() = default;

Status Coordinator::Start() {
  std::optional<ExperimentRecord> existing;
  if (Status s = store_->find_experiment(spec_.name, &existing); !s.ok()) return s;
  if (existing) {
    if (existing->spec_hash != spec_.hash())
      return Status::Error("experiment '" + spec_.name +
                           "' already exists in the store with a different spec (hash " +
                           existing->spec_hash + ", this spec " + spec_.hash() +
                           "); rename the experiment or use another --store");
    experiment_ = *existing;
    spdlog::info("resuming experiment '{}' (id {})", experiment_.name, experiment_.id);
  } else {
    experiment_.name = spec_.name;
    experiment_.spec_yaml = spec_.text;
    experiment_.spec_hash = spec_.hash();
    experiment_.metric = spec_.metric;
    experiment_.mode = spec_.mode;
    experiment_.seed = spec_.seed;
    if (Status s = store_->create_experiment(&experiment_); !s.ok()) return s;
    spdlog::info("created experiment '{}' (id {}): {} trials of {} ranks, optimising {} ({})",
                 experiment_.name, experiment_.id, spec_.trials, spec_.ranks_per_trial,
                 spec_.metric, spec_.mode);
  }
  if (Status s = load_progress(); !s.ok()) return s;

  if (!options_.security.curve && !is_loopback_endpoint(options_.bind))
    return Status::Error("refusing to serve " + options_.bind +
                         " without CURVE: --insecure is for loopback endpoints only");
  if (options_.security.curve) {
    if (Status s = ZapHandler::Start(context_, options_.authorized_workers, &zap_); !s.ok())
      return s;
  }
  socket_ = std::make_unique<zmq::socket_t>();
  if (Status s = make_coordinator_socket(context_, options_.security, socket_.get()); !s.ok())
    return s;
  try {
    socket_->bind(options_.bind);
  } catch (const zmq::error_t& e) {
    return Status::Error("cannot bind " + options_.bind + ": " + e.what());
  }
  endpoint_ = socket_->get(zmq::sockopt::last_endpoint);
  spdlog::info("coordinator listening on {}", endpoint_);
  return Status::Ok();
}

Status Coordinator::load_progress() {
  std::vector<TrialRecord> trials;
  if (Status s = store_->list_trials(experiment_.id, &trials); !s.ok()) return s;
  progress_ = SweepProgress{};
  progress_.total = spec_.trials;
  for (auto& t : trials) {
    // A trial a previous coordinator left running may still be training: its group gets one
    // liveness period to come back and claim it (expire_orphans).
    if (t.state == TrialState::kRunning) {
      orphans_[t.id] = t.attempt;
      ++progress_.running;
    }
    if (t.state == TrialState::kPending) pending_.push_back(t.id);
    if (t.state == TrialState::kCompleted || t.state == TrialState::kPruned) ++progress_.completed;
    if (t.state == TrialState::kFailed) ++progress_.failed;
    ++progress_.proposed;
    // Ended trials stay in the store only (see trials_).
    if (t.state == TrialState::kPending || t.state == TrialState::kRunning)
      trials_[t.id] = std::move(t);
  }
  // Two liveness periods: one for the agents to notice the silence, one to get through.
  orphans_deadline_ = std::chrono::steady_clock::now() + 2 * options_.liveness;
  if (!orphans_.empty())
    spdlog::info("{} trial(s) were running when the last coordinator stopped; waiting up to {} ms "
                 "for their groups to reconnect",
                 orphans_.size(), options_.liveness.count());
  return Status::Ok();
}

Status Coordinator::Run(const std::function<bool()>& keep_going) {
  while (!progress_.finished()) {
    if (!keep_going()) return Status::Ok();
    // Wait for the socket only when nothing is queued: Reports left over from the last turn's
    // budget are work to do now.
    if (inbox_.empty()) {
      zmq::pollitem_t items[] = {{socket_->handle(), 0, ZMQ_POLLIN, 0}};
      try {
        zmq::poll(items, 1, options_.poll_interval);
      } catch (const zmq::error_t& e) {
        if (e.num() != EINTR) return Status::Error(std::string("poll failed: ") + e.what());
        continue;  // a signal: keep_going() decides
      }
    }
    if (Status s = serve_turn(); !s.ok()) return s;
  }
  if (experiment_.state != "completed") {
    if (Status s = store_->set_experiment_state(experiment_.id, "completed"); !s.ok()) return s;
    experiment_.state = "completed";
  }
  spdlog::info("sweep '{}' finished: {} completed, {} failed", experiment_.name,
               progress_.completed, progress_.failed);
  for (const auto& [identity, group] : groups_) send(identity, Shutdown{"sweep finished"});
  return Status::Ok();
}

Status Coordinator::serve_turn() {
  receive();
  // What waits for an Assign (Hello, Request, Done) has a commit of its own, so its answer
  // leaves before the turn's Reports are written.
  if (inbox_.has_urgent()) {
    if (Status s = serve_batch(/*reports=*/false); !s.ok()) return s;
  }
  const auto now = std::chrono::steady_clock::now();
  const bool timers_due = now - last_timers_ >= kTimerInterval;
  // Reports wait while groups wait for work (1,000 Hellos at once, say); the timers do not.
  if ((inbox_.has_urgent() || inbox_.empty()) && !timers_due) return Status::Ok();
  return serve_batch(/*reports=*/true);
}

Status Coordinator::serve_batch(bool reports) {
  ExperimentStore::Batch batch(store_);
  if (Status s = batch.begin(); !s.ok()) return s.With("cannot write the store");
  holding_sends_ = true;
  // The budget bounds how long the answers of this batch wait for its commit; the rest waits
  // for the next one, non-Reports first (Inbox).
  const auto deadline = std::chrono::steady_clock::now() + kBatchBudget;
  int handled = 0;
  Inbox::Item item;
  while (std::chrono::steady_clock::now() < deadline &&
         inbox_.pop(reports && handled < kMaxMessagesPerBatch, &item)) {
    ++handled;
    handle_frame(item.identity, item.frame);
  }
  if (reports) {
    const auto now = std::chrono::steady_clock::now();
    if (now - last_timers_ >= kTimerInterval) {
      last_timers_ = now;
      expire_silent_groups();
      expire_orphans();
      send_heartbeats();
    }
  }
  holding_sends_ = false;
  if (Status s = batch.commit(); !s.ok()) {
    // The in-memory state may be ahead of the store now; a restart resumes from the store,
    // and the agents resend whatever was not acknowledged.
    outbox_.clear();
    return s.With("cannot commit to the store (nothing of it was acknowledged; restart to resume)");
  }
  flush_outbox();
  return Status::Ok();
}

void Coordinator::receive() {
  const auto now = std::chrono::steady_clock::now();
  std::vector<zmq::message_t> parts;
  while (inbox_.size() < kMaxQueuedFrames && inbox_.bytes() < kMaxQueuedBytes &&
         zmq::recv_multipart(*socket_, std::back_inserter(parts), zmq::recv_flags::dontwait)) {
    if (parts.size() != 2) {
      spdlog::warn("dropped a message of {} frames (expected identity + payload)", parts.size());
      parts.clear();
      continue;
    }
    std::string identity = parts[0].to_string();
    // Heard now, even if its message waits behind others.
    if (auto it = groups_.find(identity); it != groups_.end()) it->second.last_seen = now;
    const bool report = is_report_frame(parts[1].data(), parts[1].size());
    inbox_.push(std::move(identity), std::move(parts[1]), report);
    parts.clear();
  }
}

Coordinator::Group& Coordinator::group_for(const std::string& identity) {
  auto [it, inserted] = groups_.try_emplace(identity);
  if (inserted) it->second.name = identity;
  it->second.last_seen = std::chrono::steady_clock::now();
  return it->second;
}

void Coordinator::handle_frame(const std::string& identity, const zmq::message_t& payload) {
  Message message;
  std::uint32_t peer_version = 0;
  if (Status s = decode(payload.data(), payload.size(), &message, &peer_version); !s.ok()) {
    spdlog::warn("dropped a frame of {} bytes from '{}': {}", payload.size(), identity,
                 s.message());
    if (peer_version != 0 && peer_version != kProtocolVersion) send(identity, Refuse{s.message()});
    return;
  }
  handle(group_for(identity), message);
  if (const auto* done = std::get_if<Done>(&message)) forget_if_ended(done->trial);
}

void Coordinator::handle(Group& group, const Message& message) {
  if (const auto* hello = std::get_if<Hello>(&message)) {
    on_hello(group, *hello);
  } else if (std::holds_alternative<Request>(message)) {
    group.joined = true;  // an agent that kept waiting through a coordinator restart
    if (group.trial >= 0) {
      spdlog::warn("group '{}' asked for work while running trial {}; ignored", group.name,
                   group.trial);
      return;
    }
    assign_or_wait(group);
  } else if (const auto* report = std::get_if<Report>(&message)) {
    on_report(group, *report);
  } else if (const auto* done = std::get_if<Done>(&message)) {
    on_done(group, *done);
  } else if (const auto* beat = std::get_if<Heartbeat>(&message)) {
    // group_for() refreshed last_seen; a heartbeat naming a trial may re-adopt an orphan.
    if (beat->trial >= 0 && group.trial != beat->trial) holds(group, beat->trial, beat->attempt);
  } else {
    spdlog::warn("group '{}' sent '{}', which only the coordinator sends; dropped", group.name,
                 message_name(message));
  }
}

bool Coordinator::holds(Group& group, std::int64_t trial, std::int32_t attempt) {
  if (group.trial == trial && group.attempt == attempt) return true;
  const auto orphan = orphans_.find(trial);
  if (group.trial >= 0 || orphan == orphans_.end() || orphan->second != attempt) return false;
  orphans_.erase(orphan);
  group.trial = trial;
  group.attempt = attempt;
  spdlog::info("group '{}' reconnected still running trial {} (attempt {}); it keeps it",
               group.name, trials_[trial].number, attempt);
  return true;
}

void Coordinator::on_hello(Group& group, const Hello& hello) {
  group.joined = true;
  group.host = hello.host;
  group.ranks = hello.ranks;
  group.topology = hello.topology;
  group.version = hello.version;
  if (hello.trial >= 0) {
    if (holds(group, hello.trial, hello.attempt)) {
      send(group.name, Heartbeat{});  // an answer, so the agent knows it is heard
      return;
    }
    // That attempt is over for us (requeued elsewhere or finished): stop it; its Done frees
    // the group.
    spdlog::warn("group '{}' is running trial {} attempt {}, which is no longer its; stopping it",
                 group.name, hello.trial, hello.attempt);
    send(group.name, Stop{hello.trial, "this attempt was given up while the group was away"});
    return;
  }
  spdlog::info("group '{}' joined: {} rank(s) on {}{}", group.name, hello.ranks, hello.host,
               hello.topology.empty() ? "" : " [" + hello.topology + "]");
  if (group.trial >= 0) {
    reassign(group);  // this Hello crossed our Assign: the same identity is the same process
    return;
  }
  assign_or_wait(group);
}

void Coordinator::reassign(Group& group) {
  // The agent ignores an Assign it already took, so sending it again is always safe.
  if (group.assignment.trial == group.trial && group.assignment.attempt == group.attempt)
    send(group.name, group.assignment);
}

void Coordinator::on_report(Group& group, const Report& report) {
  if (report.epoch < 1) {
    spdlog::warn("dropped report with epoch {} from '{}': epochs start at 1", report.epoch,
                 group.name);
    return;
  }
  for (const auto& [name, value] : report.metrics) {
    if (!std::isfinite(value)) {
      spdlog::warn("dropped report of trial {} epoch {} from '{}': metric {} is {}", report.trial,
                   report.epoch, group.name, name, value);
      return;
    }
  }
  const bool current = holds(group, report.trial, report.attempt);
  if (!current && trials_.count(report.trial) == 0 && !ended_in_this_experiment(report.trial)) {
    spdlog::warn("dropped report for unknown trial {} from '{}'", report.trial, group.name);
    return;
  }
  if (!current) {
    for (const auto& [identity, other] : groups_) {
      if (other.trial == report.trial && other.attempt == report.attempt) {
        spdlog::warn("dropped report for trial {} attempt {} from '{}': group '{}' runs it",
                     report.trial, report.attempt, group.name, identity);
        return;
      }
    }
  }
  // A late report of an older attempt (resent after a reconnect) is stored but stays out of
  // the trial's series; the store refuses attempts that never started.
  if (Status s = store_->append_report(report.trial, report.attempt, report.epoch, report.metrics,
                                       report.checkpointed);
      !s.ok()) {
    spdlog::warn("dropped report from '{}': {}", group.name, s.message());
    return;
  }
  send(group.name, Ack{report.trial, report.attempt, report.epoch});
  // The first epoch at info says the trial trains; every epoch at info would be 100,000 lines
  // a second under load, so the rest are debug (the store has them all anyway).
  const auto level = report.epoch == 1 ? spdlog::level::info : spdlog::level::debug;
  if (current && spdlog::should_log(level))
    spdlog::log(level, "trial {} epoch {}: {}", trials_[report.trial].number, report.epoch,
                describe(report.metrics));
}

void Coordinator::forget_if_ended(std::int64_t trial) {
  const auto it = trials_.find(trial);
  if (it == trials_.end()) return;
  const TrialState state = it->second.state;
  if (state == TrialState::kCompleted || state == TrialState::kPruned ||
      state == TrialState::kFailed)
    trials_.erase(it);
}

bool Coordinator::ended_in_this_experiment(std::int64_t trial) {
  TrialRecord record;
  return store_->get_trial(trial, &record).ok() && record.experiment_id == experiment_.id;
}

void Coordinator::on_done(Group& group, const Done& done) {
  const bool current = holds(group, done.trial, done.attempt);
  // A Done resent after both sides restarted, for a trial the previous coordinator left
  // running: the group has moved on, but the result is good.
  const auto orphan = orphans_.find(done.trial);
  const bool orphan_done = !current && orphan != orphans_.end() && orphan->second == done.attempt;
  if (orphan_done) orphans_.erase(orphan);
  if (!current && !orphan_done) {
    // Resent after a reconnect, or an attempt given up meanwhile: acknowledge so the agent's
    // outbox empties, change nothing.
    spdlog::info("done for trial {} attempt {} from '{}' is not current; acknowledged only",
                 done.trial, done.attempt, group.name);
    send(group.name, Ack{done.trial, done.attempt, 0});
    if (group.trial < 0 && group.joined) assign_or_wait(group);
    return;
  }
  TrialRecord& t = trials_[done.trial];
  if (done.preempted) {
    requeue(done.trial,
            done.checkpointed ? "preempted (SIGTERM); resumes from the checkpoint it took"
                              : "preempted (SIGTERM) without a checkpoint; resumes from its last epoch",
            done.checkpointed ? Requeue::kPreemptedWithCheckpoint : Requeue::kNotTheTrialsFault);
    send(group.name, Ack{done.trial, done.attempt, 0});
    if (current) group.trial = -1;
    return;  // the group is exiting
  }
  const TrialState state = done.ok ? TrialState::kCompleted : TrialState::kFailed;
  if (Status s = store_->finish_trial(done.trial, done.attempt, state, done.error,
                                      done.final_metrics);
      !s.ok()) {
    // Not acknowledged: the agent sends it again after its next reconnect.
    spdlog::error("cannot record the end of trial {}: {}", done.trial, s.message());
    return;
  }
  send(group.name, Ack{done.trial, done.attempt, 0});
  t.state = state;
  t.final_metrics = done.final_metrics;
  --progress_.running;
  (done.ok ? progress_.completed : progress_.failed)++;
  if (done.ok)
    spdlog::info("trial {} completed: {} [{}/{} done]", t.number, describe(done.final_metrics),
                 progress_.completed + progress_.failed, progress_.total);
  else
    spdlog::error("trial {} failed: {} [{}/{} done]", t.number, done.error,
                  progress_.completed + progress_.failed, progress_.total);
  if (!current) return;
  group.trial = -1;
  assign_or_wait(group);
}

void Coordinator::requeue(std::int64_t trial, const std::string& reason, Requeue why) {
  bool failed = false;
  if (Status s = store_->requeue_trial(trial, reason, why, options_.max_failures, &failed);
      !s.ok()) {
    spdlog::error("{}", s.message());
    return;
  }
  TrialRecord& t = trials_[trial];
  --progress_.running;
  if (failed) {
    t.state = TrialState::kFailed;
    ++progress_.failed;
    spdlog::error("trial {} failed: {} ({} attempts lost) [{}/{} done]", t.number, reason,
                  options_.max_failures, progress_.completed + progress_.failed, progress_.total);
    return;
  }
  if (why == Requeue::kLost) ++t.failures;
  // Refreshed from the store so the next attempt resumes from the latest checkpoint.
  TrialRecord fresh;
  if (store_->get_trial(trial, &fresh).ok()) t = fresh;
  t.state = TrialState::kPending;
  pending_.insert(pending_.begin(), trial);
  spdlog::warn("trial {} requeued: {}", t.number, reason);
}

std::optional<std::int64_t> Coordinator::next_trial() {
  if (!pending_.empty()) {
    const std::int64_t id = pending_.front();
    pending_.erase(pending_.begin());
    return id;
  }
  if (progress_.proposed >= progress_.total) return std::nullopt;
  TrialRecord record;
  record.experiment_id = experiment_.id;
  record.number = progress_.proposed;
  record.params = searcher_.propose(record.number);
  record.seed = derive_seed(spec_.seed, {static_cast<std::uint64_t>(record.number)});
  if (Status s = store_->add_trial(&record); !s.ok()) {
    spdlog::error("cannot add trial {}: {}", record.number, s.message());
    return std::nullopt;
  }
  ++progress_.proposed;
  trials_[record.id] = record;
  return record.id;
}

void Coordinator::assign_or_wait(Group& group) {
  if (progress_.finished()) {
    send(group.name, Shutdown{"sweep finished"});
    return;
  }
  const std::optional<std::int64_t> id = next_trial();
  if (!id) {
    send(group.name, Wait{static_cast<std::int32_t>(options_.wait_retry.count())});
    return;
  }
  StartedAttempt started;
  if (Status s = store_->start_trial(*id, group.name, provenance(group), &started); !s.ok()) {
    spdlog::error("cannot start trial {}: {}", *id, s.message());
    pending_.push_back(*id);
    send(group.name, Wait{static_cast<std::int32_t>(options_.wait_retry.count())});
    return;
  }
  TrialRecord& t = trials_[*id];
  t.state = TrialState::kRunning;
  group.trial = *id;
  group.attempt = started.attempt;
  ++progress_.running;
  spdlog::info("trial {} (attempt {}{}) -> group '{}': {}", t.number, started.attempt,
               started.resume_epoch > 0
                   ? ", resuming after epoch " + std::to_string(started.resume_epoch)
                   : std::string(),
               group.name, describe(t.params));
  Assign assign{t.id, started.attempt, experiment_.name, t.number, t.seed, t.params,
                spec_.dataset};
  if (!options_.checkpoint_dir.empty())
    assign.checkpoint = options_.checkpoint_dir + "/" + experiment_.name + "/trial-" +
                        std::to_string(t.number) + ".ckpt";
  assign.resume = started.resume && !assign.checkpoint.empty();
  assign.resume_epoch = assign.resume ? started.resume_epoch : 0;
  group.assignment = assign;
  send(group.name, assign);
}

std::string Coordinator::provenance(const Group& group) const {
  return nlohmann::json{{"group", group.name},
                        {"host", group.host},
                        {"ranks", group.ranks},
                        {"topology", group.topology},
                        {"worker_version", group.version},
                        {"coordinator_version", TRELLIS_VERSION " " TRELLIS_GIT_REVISION},
                        {"spec_hash", experiment_.spec_hash},
                        {"dataset", spec_.dataset.path}}
      .dump();
}

void Coordinator::expire_silent_groups() {
  const auto now = std::chrono::steady_clock::now();
  for (auto it = groups_.begin(); it != groups_.end();) {
    Group& g = it->second;
    if (now - g.last_seen < options_.liveness) {
      ++it;
      continue;
    }
    if (g.trial >= 0)
      requeue(g.trial,
              "worker group '" + g.name + "' lost (silent for " +
                  std::to_string(options_.liveness.count()) + " ms)",
              Requeue::kLost);
    it = groups_.erase(it);
  }
}

void Coordinator::expire_orphans() {
  if (orphans_.empty() || std::chrono::steady_clock::now() < orphans_deadline_) return;
  for (const auto& [trial, attempt] : orphans_)
    requeue(trial, "its group did not come back after the coordinator restarted",
            Requeue::kNotTheTrialsFault);
  orphans_.clear();
}

void Coordinator::send_heartbeats() {
  const auto now = std::chrono::steady_clock::now();
  if (now - last_heartbeat_ < options_.heartbeat) return;
  last_heartbeat_ = now;
  for (const auto& [identity, group] : groups_) send(identity, Heartbeat{});
}

void Coordinator::send(const std::string& identity, const Message& message) {
  std::string frame = encode(message);
  if (holding_sends_) {
    outbox_.push_back({identity, std::move(frame), message_name(message)});
    return;
  }
  send_frame(identity, frame, message_name(message));
}

void Coordinator::send_frame(const std::string& identity, const std::string& frame,
                             const char* what) {
  std::array<zmq::const_buffer, 2> parts = {zmq::buffer(identity), zmq::buffer(frame)};
  try {
    zmq::send_multipart(*socket_, parts, zmq::send_flags::dontwait);
  } catch (const zmq::error_t& e) {
    spdlog::warn("cannot send {} to '{}': {}", what, identity, e.what());
  }
}

void Coordinator::flush_outbox() {
  for (const Outgoing& out : outbox_) send_frame(out.identity, out.frame, out.what);
  outbox_.clear();
}

}  // namespace trellis::coordinator
