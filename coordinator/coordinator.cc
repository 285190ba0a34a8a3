#include "coordinator/coordinator.h"

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include <unistd.h>

#include <ctime>

#include <algorithm>
#include <cmath>
#include <string_view>
#include <vector>

#include "common/checkpoint_path.h"
#include "coordinator/book_restore.h"
#include "coordinator/coordinator_presence.h"
#include "coordinator/params_codec.h"
#include "common/seed.h"
#include "common/train_config.h"
#include "common/socket_factory.h"
#include "common/version.h"

namespace trellis::coordinator {
namespace {

// PBT snapshots kept per trial: recipients decide about an epoch while donors move on.
constexpr int kExploitSnapshotsKept = 3;

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

// The CURVE key that sent `frame`, as the ZAP handler named it (User-Id); empty without CURVE.
// Valid while `frame` lives; a view, so checking every frame costs no allocation.
std::string_view sender_key(const zmq::message_t& frame) {
  const char* key = zmq_msg_gets(frame.handle(), "User-Id");
  return key != nullptr ? std::string_view(key) : std::string_view();
}

}  // namespace

Coordinator::Coordinator(ExperimentStore* store, SweepSpec spec, CoordinatorOptions options)
    : store_(store),
      spec_(std::move(spec)),
      options_(std::move(options)),
      context_(1),
      groups_({options_.liveness, options_.stall, options_.stall_floor}) {}

Coordinator::~Coordinator() = default;

Status Coordinator::Start() {
  // checkpoint_base() puts the name in a path; a spec not parsed from YAML was never checked.
  if (std::string why = experiment_name_problem(spec_.name); !why.empty())
    return Status::Error("experiment name: " + why);
  SchedulerOptions scheduling;
  scheduling.spec = spec_.scheduler;
  scheduling.max_epochs = spec_.scheduler.max_epochs;
  if (scheduling.max_epochs == 0) {
    TrainConfig defaults;
    if (Status s = train_config_from_params(spec_.fixed, &defaults); !s.ok()) return s;
    scheduling.max_epochs = defaults.epochs;
  }
  scheduling.metric = spec_.metric;
  scheduling.maximize = spec_.mode == "max";
  scheduling.space = spec_.space;
  scheduling.seed = spec_.seed;
  std::unique_ptr<Scheduler> scheduler;
  if (Status s = make_scheduler(scheduling, &scheduler); !s.ok()) return s;
  std::unique_ptr<Searcher> searcher;
  if (Status s = make_searcher(spec_.algorithm, spec_.space, spec_.seed, &searcher); !s.ok())
    return s;
  book_ = std::make_unique<TrialBook>(spec_, std::move(scheduling), std::move(searcher),
                                      std::move(scheduler));
  const bool pauses = spec_.scheduler.type != "fifo" && spec_.scheduler.type != "median";
  if (pauses && options_.checkpoint_dir.empty())
    return Status::Error("scheduler " + spec_.scheduler.type +
                         " pauses trials and continues them from their checkpoints: give a "
                         "checkpoint directory every worker can reach (--checkpoints DIR)");

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
    spdlog::info("created experiment '{}' (id {}): up to {} trials of {} ranks, {} search, {} "
                 "scheduler, optimising {} ({})",
                 experiment_.name, experiment_.id, spec_.trials, spec_.ranks_per_trial,
                 spec_.algorithm, spec_.scheduler.type, spec_.metric, spec_.mode);
  }
  if (Status s = load_progress(); !s.ok()) return s;
  if (Status s = restore_shelf(); !s.ok()) return s;
  if (existing && existing->state == "failed") {
    // Stopped on its dataset before: serving it again is the retry.
    if (Status s = store_->set_experiment_state(experiment_.id, "running"); !s.ok()) return s;
    experiment_.state = "running";
  }
  // Who serves the experiment, for readers of the store: `trellis status` and `trellis rm`
  // tell a live coordinator by this pid on this host (coordinator_presence.h); `rm` finds
  // the checkpoint directories here.
  record("coordinator_started", -1, "",
         {{"resumed", existing.has_value()},
          {"version", TRELLIS_VERSION " " TRELLIS_GIT_REVISION},
          {"pid", static_cast<std::int64_t>(::getpid())},
          {"host", this_host()},
          {"checkpoint_dir", options_.checkpoint_dir},
          {"trials_in_store", book_->progress().proposed}});
  if (!fatal_.ok()) return fatal_;

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
  book_->check_finished();
  return Status::Ok();
}

Status Coordinator::load_progress() {
  std::vector<LeftRunning> running;
  if (Status s = restore_book(store_, experiment_, spec_.metric, book_.get(), &running); !s.ok())
    return s;
  // A trial a previous coordinator left running may still be training: its group gets two
  // liveness periods to come back and claim it, one for the agents to notice the silence and
  // one to get through.
  for (const LeftRunning& r : running) groups_.add_orphan(r.trial, r.attempt, r.group, r.key);
  groups_.set_orphan_deadline(std::chrono::steady_clock::now() + 2 * options_.liveness);
  if (groups_.orphans() != 0)
    spdlog::info("{} trial(s) were running when the last coordinator stopped; waiting up to {} ms "
                 "for their groups to reconnect",
                 groups_.orphans(), options_.liveness.count());
  return Status::Ok();
}

Status Coordinator::restore_shelf() {
  shelf_ = std::make_unique<ModelShelf>(
      options_.model_dir.empty() ? "" : options_.model_dir + "/" + experiment_.name,
      options_.model_dir.empty() ? 0 : spec_.keep_models);
  if (options_.model_dir.empty() || spec_.keep_models == 0) return Status::Ok();
  std::vector<TrialSummary> trials;
  if (Status s = store_->trial_summaries(experiment_.id, &trials); !s.ok()) return s;
  std::vector<ModelShelf::Entry> completed;
  for (TrialSummary& t : trials) {
    if (t.state != TrialState::kCompleted) continue;
    std::optional<double> loss = book_->objective(t.final_metrics);
    if (!loss) loss = book_->objective(t.last_metrics);
    if (!loss) continue;
    completed.push_back({t.id, t.number, *loss, spec_.mode == "max" ? -*loss : *loss,
                         std::move(t.params), std::move(t.final_metrics)});
  }
  return shelf_->restore(std::move(completed)).With("cannot restore the best trials' models");
}

void Coordinator::shelve(const TrialBook::Trial& t, std::int64_t id, const Done& done,
                         double loss) {
  if (!done.model_missing.empty())
    spdlog::warn("trial {} completed without its model: {}", t.number, done.model_missing);
  const ModelShelf::Entry entry{id,       t.number,          loss, spec_.mode == "max" ? -loss : loss,
                                t.params, done.final_metrics};
  if (Status s = shelf_->offer(entry, done.model); !s.ok()) {
    spdlog::error("{}; the trial's results are stored, its model is not kept", s.message());
    record("model_not_kept", id, "", {{"reason", s.message()}});
  }
}

Status Coordinator::Run(const std::function<bool()>& keep_going) {
  book_->check_finished();
  while (!book_->finished()) {
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
    if (!stopped_.ok()) return stopped_;  // committed: the store says why
    book_->check_finished();
    if (!fatal_.ok()) return fatal_;
  }
  // The end of the sweep is one commit: the paused trials pruned, the experiment completed.
  ExperimentStore::Batch batch(store_);
  if (Status s = batch.begin(); !s.ok()) return s.With("cannot write the store");
  // What is still paused will not be continued: it stopped where the scheduler left it.
  std::vector<std::pair<std::int64_t, std::int32_t>> paused;  // id, number
  for (const auto& [id, t] : book_->trials())
    if (t.state == TrialState::kPaused) paused.emplace_back(id, t.number);
  for (const auto& [id, number] : paused) {
    const std::string reason = book_->scheduler().paused_reason(id);
    if (Status s = store_->end_paused_trial(id, TrialState::kPruned, reason); !s.ok()) return s;
    spdlog::info("trial {} pruned: {}", number, reason);
    record("trial_ended", id, "", {{"state", "pruned"}, {"reason", reason}});
    book_->paused_trial_ended(id, TrialState::kPruned);
  }
  const SweepProgress& progress = book_->progress();
  if (experiment_.state != "completed") {
    if (Status s = store_->set_experiment_state(experiment_.id, "completed"); !s.ok()) return s;
    experiment_.state = "completed";
    groups_.end_sessions(std::chrono::steady_clock::now());
    record("sweep_finished", -1, "",
           {{"trials", progress.proposed}, {"completed", progress.completed},
            {"pruned", progress.pruned}, {"failed", progress.failed},
            {"epochs_assigned", progress.epochs_assigned},
            {"group_seconds", groups_.group_seconds()},
            {"idle_for_results_seconds", groups_.idle_for_results_seconds()}});
  }
  if (!fatal_.ok()) return fatal_;
  if (Status s = batch.commit(); !s.ok()) return s.With("cannot commit the end of the sweep");
  spdlog::info("sweep '{}' finished: {} trials, {} completed, {} pruned, {} failed; {} epochs "
               "assigned",
               experiment_.name, progress.proposed, progress.completed, progress.pruned,
               progress.failed, progress.epochs_assigned);
  if (const double idle = groups_.idle_for_results_seconds(); idle > 0)
    spdlog::info("groups waited {:.1f} s for results the next proposal needed: {:.1f}% of {:.1f} "
                 "group-seconds (search.lag {})",
                 idle, 100 * idle / std::max(groups_.group_seconds(), 1e-9),
                 groups_.group_seconds(), book_->feed().lag());
  for (const auto& [identity, group] : groups_.groups()) send(identity, Shutdown{"sweep finished"});
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
  while (fatal_.ok() && stopped_.ok() && std::chrono::steady_clock::now() < deadline &&
         inbox_.pop(reports && handled < kMaxMessagesPerBatch, &item)) {
    ++handled;
    handle_frame(item.identity, item.frame);
  }
  if (reports && fatal_.ok() && stopped_.ok()) {
    const auto now = std::chrono::steady_clock::now();
    if (now - last_timers_ >= kTimerInterval) {
      last_timers_ = now;
      expire_groups();
      send_heartbeats();
    }
  }
  holding_sends_ = false;
  if (!fatal_.ok()) {
    // Nothing of this batch is acknowledged: the batch rolls back, and a restart resumes from
    // the store while the agents resend what was not acknowledged.
    outbox_.clear();
    return fatal_;
  }
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
    groups_.heard(identity, sender_key(parts[1]), now);
    const bool report = is_report_frame(parts[1].data(), parts[1].size());
    inbox_.push(std::move(identity), std::move(parts[1]), report);
    parts.clear();
  }
}

void Coordinator::handle_frame(const std::string& identity, const zmq::message_t& payload) {
  const std::string_view key = sender_key(payload);
  if (GroupTable::Refusal refused; !groups_.admit(identity, key, &refused)) {
    // The socket refuses a second connection under a connected identity (no router_handover),
    // so this comes from another key after the group's connection dropped. Logged at powers of
    // two: a flood of them costs a few lines.
    if ((refused.count & (refused.count - 1)) == 0)
      spdlog::warn("dropped a frame from CURVE key {} under group identity '{}', which belongs to "
                   "key {}: another key may not speak for a group ({} such frame(s) so far)",
                   key.empty() ? std::string_view("(none)") : key, identity, refused.owner,
                   refused.count);
    return;
  }
  Message message;
  std::uint32_t peer_version = 0;
  if (Status s = decode(payload.data(), payload.size(), &message, &peer_version); !s.ok()) {
    spdlog::warn("dropped a frame of {} bytes from '{}': {}", payload.size(), identity,
                 s.message());
    if (peer_version != 0 && peer_version != kProtocolVersion) send(identity, Refuse{s.message()});
    return;
  }
  handle(groups_.at(identity, key, std::chrono::steady_clock::now()), message);
}

void Coordinator::handle(Group& group, const Message& message) {
  if (const auto* hello = std::get_if<Hello>(&message)) {
    on_hello(group, *hello);
  } else if (std::holds_alternative<Request>(message)) {
    // An agent that kept waiting through a coordinator restart.
    groups_.join(group, std::chrono::steady_clock::now());
    if (group.trial >= 0) {
      spdlog::warn("group '{}' asked for work while running trial {}; ignored", group.name,
                   group.trial);
      return;
    }
    requeue_orphan_of(group);
    assign_or_wait(group);
  } else if (const auto* report = std::get_if<Report>(&message)) {
    on_report(group, *report);
  } else if (const auto* done = std::get_if<Done>(&message)) {
    on_done(group, *done);
  } else if (const auto* beat = std::get_if<Heartbeat>(&message)) {
    // A heartbeat naming a trial may re-adopt an orphan.
    if (beat->trial >= 0 && group.trial != beat->trial) holds(group, beat->trial, beat->attempt);
    groups_.heartbeat(group, beat->trial, beat->attempt, beat->progress,
                      std::chrono::steady_clock::now());
  } else {
    spdlog::warn("group '{}' sent '{}', which only the coordinator sends; dropped", group.name,
                 message_name(message));
  }
}

bool Coordinator::holds(Group& group, std::int64_t trial, std::int32_t attempt) {
  const GroupTable::Holding holding = groups_.holds(group, trial, attempt);
  if (holding == GroupTable::Holding::kAdopted) {
    record("group_readopted", trial, group.name, {{"attempt", attempt}});
    spdlog::info("group '{}' reconnected still running trial id {} (attempt {}); it keeps it",
                 group.name, trial, attempt);
  }
  return holding != GroupTable::Holding::kNo;
}

void Coordinator::on_hello(Group& group, const Hello& hello) {
  const bool first = groups_.join(group, std::chrono::steady_clock::now());
  group.host = hello.host;
  group.ranks = hello.ranks;
  group.topology = hello.topology;
  group.version = hello.version;
  group.job = hello.job;
  group.job_log = hello.job_log;
  if (hello.job_ends_at > 0) {
    // Slurm keeps the nodes' clocks in step with the controller's, so with this node's too.
    const auto left = std::chrono::seconds(hello.job_ends_at - static_cast<std::int64_t>(::time(nullptr)));
    group.job_ends = std::chrono::steady_clock::now() + left;
  }
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
  if (first) {  // a repeated Hello (an idle agent that heard no answer) is no new session
    spdlog::info("group '{}' joined: {} rank(s) on {}{}", group.name, hello.ranks, hello.host,
                 hello.topology.empty() ? "" : " [" + hello.topology + "]");
    record("group_joined", -1, group.name,
           {{"host", hello.host}, {"ranks", hello.ranks}, {"topology", hello.topology},
            {"version", hello.version}});
  }
  if (group.trial >= 0) {
    reassign(group);  // this Hello crossed our Assign: the same identity is the same process
    return;
  }
  requeue_orphan_of(group);
  assign_or_wait(group);
}

void Coordinator::requeue_orphan_of(const Group& group) {
  if (const std::optional<std::int64_t> trial = groups_.take_orphan_of(group))
    requeue(*trial, "its group came back without it: the assignment never reached the group",
            Requeue::kNotTheTrialsFault);
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
  // Through which epoch the report's trial may train, and its newest attempt.
  std::int32_t last_epoch = 0;
  std::int32_t newest_attempt = 0;
  if (const TrialBook::Trial* live = book_->find(report.trial); current && live != nullptr) {
    last_epoch = book_->effective_target(live->params, live->target_epoch);
    newest_attempt = report.attempt;
  } else {
    TrialRecord record;
    if (!store_->get_trial(report.trial, &record).ok() ||
        record.experiment_id != experiment_.id) {
      spdlog::warn("dropped report for unknown trial {} from '{}'", report.trial, group.name);
      return;
    }
    // Targets only grow, so no older attempt was given more than the trial's current one.
    last_epoch = book_->effective_target(record.params, record.target_epoch);
    newest_attempt = record.attempt;
  }
  if (report.attempt < 1 || report.attempt > newest_attempt) {
    spdlog::warn("dropped report of trial {} from '{}': attempt {} was never started (newest "
                 "attempt {})",
                 report.trial, group.name, report.attempt, newest_attempt);
    return;
  }
  if (report.epoch > last_epoch) {
    spdlog::warn("dropped report of trial {} attempt {} epoch {} from '{}': the trial trains "
                 "through epoch {}",
                 report.trial, report.attempt, report.epoch, group.name, last_epoch);
    return;
  }
  if (!current) {
    if (const Group* other = groups_.running(report.trial, report.attempt)) {
      spdlog::warn("dropped report for trial {} attempt {} from '{}': group '{}' runs it",
                   report.trial, report.attempt, group.name, other->name);
      return;
    }
    // A late report (resent after a reconnect) comes from the group that ran the attempt,
    // under the key it ran with; any other authorized key may not write into its record.
    std::string ran_on, ran_with;
    if (Status s = store_->attempt_owner(report.trial, report.attempt, &ran_on, &ran_with);
        !s.ok()) {
      spdlog::warn("dropped report of trial {} attempt {} from '{}': {}", report.trial,
                   report.attempt, group.name, s.message());
      return;
    }
    if (ran_on != group.name || ran_with != group.key) {
      spdlog::warn("dropped report of trial {} attempt {} epoch {} from '{}': that attempt ran "
                   "on group '{}'{}",
                   report.trial, report.attempt, report.epoch, group.name, ran_on,
                   ran_on == group.name ? " under another key" : "");
      return;
    }
  }
  // A late report of an older attempt, or of a trial that ended meanwhile (resent after a
  // reconnect), is stored but stays out of the trial's series; the store refuses unknown
  // trials and attempts that never started.
  // Checked above: what fails now is the store itself.
  if (Status s = store_->append_report(report.trial, report.attempt, report.epoch, report.metrics,
                                       report.checkpointed);
      !s.ok()) {
    stop_on(s.With("cannot store a report from '" + group.name + "'"));
    return;
  }
  send(group.name, Ack{report.trial, report.attempt, report.epoch});
  if (const auto it = report.metrics.find("epoch_s"); current && it != report.metrics.end()) {
    if (group.reported)
      epoch_clock_.epoch_took(report.trial, it->second);
    else
      epoch_clock_.first_report_after(
          std::chrono::duration<double>(std::chrono::steady_clock::now() - group.assigned_at).count());
    group.reported = true;
  }
  const TrialBook::Trial* t = current ? book_->find(report.trial) : nullptr;
  if (t == nullptr) return;
  // The first epoch at info says the trial trains; every epoch at info would be 100,000 lines
  // a second under load, so the rest are debug (the store has them all anyway).
  const auto level = report.epoch == 1 ? spdlog::level::info : spdlog::level::debug;
  if (spdlog::should_log(level))
    spdlog::log(level, "trial {} epoch {}: {}", t->number, report.epoch, describe(report.metrics));
  const std::optional<double> loss = book_->objective(report.metrics);
  const std::string reason = book_->reported(report.trial, report.epoch, loss);
  if (reason.empty()) return;
  spdlog::info("trial {} stopped: {}", t->number, reason);
  record("trial_stopped", report.trial, group.name,
         {{"epoch", report.epoch}, {"objective", *loss}, {"reason", reason}});
  send(group.name, Stop{report.trial, reason});
}

void Coordinator::on_done(Group& group, const Done& done) {
  const bool current = holds(group, done.trial, done.attempt);
  // A Done resent after both sides restarted, for a trial the previous coordinator left
  // running: the group has moved on, but the result is good.
  const bool orphan_done = !current && groups_.end_orphan(done.trial, done.attempt);
  if (!current && !orphan_done) {
    // Resent after a reconnect, or an attempt given up meanwhile: acknowledge so the agent's
    // outbox empties, change nothing.
    spdlog::info("done for trial {} attempt {} from '{}' is not current; acknowledged only",
                 done.trial, done.attempt, group.name);
    send(group.name, Ack{done.trial, done.attempt, 0});
    if (group.trial < 0 && group.joined) {
      // A group that came back with an unacknowledged Done never saw the Assign the previous
      // coordinator sent after it: that orphan is its next trial, as if it had come back idle.
      requeue_orphan_of(group);
      assign_or_wait(group);
    }
    return;
  }
  epoch_clock_.attempt_ended(done.trial);
  const TrialBook::Trial* t = book_->find(done.trial);
  if (t == nullptr) {
    // Held or orphaned, yet not in the book: our state disagrees with itself.
    stop_on(Status::Error("trial id " + std::to_string(done.trial) +
                          " is held by a group but is not a live trial"));
    return;
  }
  if (!done.provenance.empty()) {
    // What the worker says decided the numbers; without it the results still stand.
    if (Status s = store_->merge_provenance(done.trial, done.attempt, done.provenance); !s.ok())
      spdlog::warn("trial id {}: the worker's provenance is not kept: {}", done.trial, s.message());
  }
  if (done.preempted) {
    requeue(done.trial,
            done.checkpointed ? "preempted (SIGTERM); resumes from the checkpoint it took"
                              : "preempted (SIGTERM) without a checkpoint; resumes from its last epoch",
            done.checkpointed ? Requeue::kPreemptedWithCheckpoint : Requeue::kNotTheTrialsFault);
    send(group.name, Ack{done.trial, done.attempt, 0});
    if (current) group.trial = -1;
    return;  // the group is exiting
  }
  if (current && done.ok && group.cut_after > 0 && t->stop_reason.empty()) {
    const std::int32_t cut = group.cut_after;
    requeue(done.trial,
            "stopped after epoch " + std::to_string(cut) + ", before the time limit of job " +
                group.job + "; continues from that checkpoint in another group",
            Requeue::kPreemptedWithCheckpoint);
    send(group.name, Ack{done.trial, done.attempt, 0});
    group.trial = -1;
    group.cut_after = 0;
    // It was given all the epochs that fit: what is left of its time is margin. Another
    // attempt would only be cut shorter and shorter.
    release(group, "it trained as many epochs as fit before job " + group.job +
                       "'s time limit, so the group leaves and the job returns its time");
    return;
  }
  const AttemptEnd end = book_->end_of(done.trial, done.ok, done.error);
  if (Status s = store_->finish_trial(done.trial, done.attempt, end.state, end.why,
                                      done.final_metrics);
      !s.ok()) {
    // Not acknowledged: the agent sends it again to the restarted coordinator.
    stop_on(s.With("cannot record the end of trial id " + std::to_string(done.trial)));
    return;
  }
  send(group.name, Ack{done.trial, done.attempt, 0});
  const std::int32_t number = t->number;
  const std::optional<double> final_loss = book_->objective(done.final_metrics);
  const std::optional<double> loss = t->loss ? t->loss : final_loss;
  {
    nlohmann::json body = {{"attempt", done.attempt}, {"state", to_string(end.state)},
                           {"epoch", end.epoch}, {"reason", end.why}};
    if (loss) body["objective"] = *loss;
    record(end.state == TrialState::kPaused ? "trial_paused" : "trial_ended", done.trial,
           group.name, std::move(body));
  }
  if (end.state == TrialState::kCompleted && loss) shelve(*t, done.trial, done, *loss);
  book_->attempt_ended(done.trial, end, final_loss);
  const SweepProgress& progress = book_->progress();
  switch (end.state) {
    case TrialState::kPaused:
      spdlog::info("trial {} paused after epoch {}: {}", number, end.epoch,
                   describe(done.final_metrics));
      break;
    case TrialState::kCompleted:
      spdlog::info("trial {} completed: {} [{}/{} done]", number, describe(done.final_metrics),
                   progress.ended(), progress.total);
      break;
    case TrialState::kPruned:
      spdlog::info("trial {} pruned after epoch {} [{}/{} done]", number,
                   done.final_metrics.empty() ? 0 : end.epoch, progress.ended(), progress.total);
      break;
    default:
      spdlog::error("trial {} failed: {} [{}/{} done]", number, done.error, progress.ended(),
                    progress.total);
      break;
  }
  if (end.state == TrialState::kFailed && done.error_kind == ErrorKind::kDataset) {
    stop_sweep(done.trial, number, done.error);
    return;
  }
  if (!current) return;
  group.trial = -1;
  assign_or_wait(group);
}

void Coordinator::record(const char* kind, std::int64_t trial, const std::string& group,
                         nlohmann::json body) {
  EventRecord event;
  event.experiment_id = experiment_.id;
  event.kind = kind;
  event.trial_id = trial;
  event.group = group;
  event.body = body.dump();
  if (Status s = store_->append_event(&event); !s.ok()) stop_on(s);
}

void Coordinator::stop_on(const Status& error) {
  if (!fatal_.ok()) return;
  spdlog::error("stopping: {}", error.message());
  fatal_ = error;
}

void Coordinator::stop_sweep(std::int64_t trial, std::int32_t number, const std::string& error) {
  const std::string reason = "trial " + std::to_string(number) +
                             " failed on the dataset, which every trial reads: " + error;
  std::vector<std::int64_t> running;
  for (const auto& [identity, group] : groups_.groups())
    if (group.trial >= 0 && group.trial != trial) running.push_back(group.trial);
  for (const std::int64_t other : running)
    requeue(other, "the sweep stopped: " + reason, Requeue::kNotTheTrialsFault);
  if (Status s = store_->set_experiment_state(experiment_.id, "failed"); !s.ok()) {
    stop_on(s.With("cannot record that the sweep stopped"));
    return;
  }
  experiment_.state = "failed";
  const SweepProgress& progress = book_->progress();
  record("sweep_stopped", trial, "",
         {{"reason", reason}, {"trials", progress.proposed}, {"completed", progress.completed},
          {"failed", progress.failed}, {"requeued", running.size()},
          {"never_started", std::max(0, progress.total - progress.proposed)}});
  for (const auto& [identity, group] : groups_.groups())
    send(identity, Shutdown{"the sweep stopped: " + reason});
  spdlog::error("stopping the sweep: {}", reason);
  stopped_ = Status::Error(
      reason + " (" + std::to_string(std::max(0, progress.total - progress.proposed)) +
      " trial(s) never started; fix the dataset and run the same spec again: the sweep resumes)");
}

void Coordinator::requeue(std::int64_t trial, const std::string& reason, Requeue why) {
  bool failed = false;
  if (Status s = store_->requeue_trial(trial, reason, why, options_.max_failures, &failed);
      !s.ok()) {
    stop_on(s.With("cannot requeue trial id " + std::to_string(trial)));
    return;
  }
  const TrialBook::Trial* t = book_->find(trial);
  const std::int32_t number = t != nullptr ? t->number : -1;
  static constexpr const char* kWhy[] = {"lost", "preempted_with_checkpoint", "not_the_trials_fault"};
  record("trial_requeued", trial, "",
         {{"reason", reason}, {"why", kWhy[static_cast<int>(why)]}, {"failed", failed}});
  book_->requeued(trial, failed);
  if (failed) {
    const SweepProgress& progress = book_->progress();
    spdlog::error("trial {} failed: {} ({} attempts lost) [{}/{} done]", number, reason,
                  options_.max_failures, progress.ended(), progress.total);
    return;
  }
  spdlog::warn("trial {} requeued: {}", number, reason);
}

std::string Coordinator::checkpoint_base(std::int32_t number) const {
  if (options_.checkpoint_dir.empty()) return {};
  return options_.checkpoint_dir + "/" + experiment_.name + "/trial-" + std::to_string(number) +
         ".ckpt";
}

std::optional<std::int64_t> Coordinator::new_trial(const Decision& d) {
  TrialRecord record;
  record.experiment_id = experiment_.id;
  record.number = d.number;
  record.params = d.params;
  record.seed = d.seed;
  record.target_epoch = d.job.until_epoch;
  if (Status s = store_->add_trial(&record); !s.ok()) {
    stop_on(s.With("cannot add trial " + std::to_string(record.number)));
    return std::nullopt;
  }
  this->record("trial_proposed", record.id, "",
               {{"number", record.number}, {"params", params_object(record.params)},
                {"until_epoch", d.job.until_epoch}, {"seed", record.seed}});
  book_->proposed(record.id, d);
  return record.id;
}

bool Coordinator::continue_trial(const Job& job) {
  const TrialBook::Trial& t = *book_->find(job.trial);  // paused: TrialBook::next checked
  const std::int32_t paused_at = book_->effective_target(t.params, t.target_epoch);
  // The checkpoint lives where only workers may see it: whether it was written, the store
  // knows from the reports that said so. A file lost after that (a purged scratch) fails the
  // next attempt on the worker, which names it.
  std::string from = checkpoint_file(checkpoint_base(t.number), paused_at);
  TrialRecord own;
  bool written = store_->get_trial(job.trial, &own).ok() && own.checkpoint_epoch >= paused_at;
  std::int32_t donor_number = -1;
  if (job.donor >= 0) {
    TrialRecord donor;
    written = store_->get_trial(job.donor, &donor).ok() && donor.checkpoint_epoch >= job.donor_epoch;
    donor_number = donor.number;
    from = exploit_snapshot(checkpoint_base(donor.number), job.donor_epoch);
  }
  if (checkpoint_base(t.number).empty() || !written) {
    const std::string reason = "cannot continue after epoch " + std::to_string(paused_at) +
                               " (" + job.reason + "): checkpoint " + from +
                               " is missing: no report said it was written";
    if (Status s = store_->end_paused_trial(job.trial, TrialState::kFailed, reason); !s.ok()) {
      stop_on(s.With("cannot fail trial " + std::to_string(t.number)));
      return false;
    }
    record("trial_ended", job.trial, "", {{"state", "failed"}, {"reason", reason}});
    spdlog::error("trial {} failed: {}", t.number, reason);
    book_->paused_trial_ended(job.trial, TrialState::kFailed);
    return false;
  }
  Status s;
  if (job.donor >= 0) {
    LineageRecord exploit;
    exploit.trial_id = job.trial;
    exploit.epoch = paused_at;
    exploit.donor_id = job.donor;
    exploit.donor_epoch = job.donor_epoch;
    exploit.params_before = t.params;
    exploit.params_after = job.params;
    exploit.reason = job.reason + "; donor: trial " + std::to_string(donor_number);
    s = store_->exploit_trial(exploit, job.until_epoch, from);
  } else {
    s = store_->continue_trial(job.trial, job.until_epoch);
  }
  if (!s.ok()) {
    stop_on(s.With("cannot continue trial " + std::to_string(t.number)));
    return false;
  }
  if (job.donor >= 0) {
    record("trial_exploited", job.trial, "",
           {{"epoch", paused_at}, {"donor", donor_number}, {"donor_epoch", job.donor_epoch},
            {"params", params_object(job.params)}, {"until_epoch", job.until_epoch},
            {"reason", job.reason}});
  } else {
    record("trial_promoted", job.trial, "",
           {{"from_epoch", paused_at}, {"until_epoch", job.until_epoch}, {"reason", job.reason}});
  }
  spdlog::info("trial {} continues: {}", t.number, job.reason);
  book_->continued(job);
  return true;
}

void Coordinator::release(Group& group, const std::string& reason) {
  spdlog::info("group '{}': {}", group.name, reason);
  record("group_released", -1, group.name, {{"reason", reason}, {"job", group.job}});
  send(group.name, Shutdown{reason});
}

std::optional<int> Coordinator::epochs_before_time_limit(const Group& group) const {
  if (!group.job_ends || !epoch_clock_.known()) return std::nullopt;
  const double left =
      std::chrono::duration<double>(*group.job_ends - std::chrono::steady_clock::now()).count();
  return epoch_clock_.epochs_fitting(left,
                                     std::chrono::duration<double>(options_.walltime_margin).count());
}

void Coordinator::assign_or_wait(Group& group) {
  const Wait wait{static_cast<std::int32_t>(options_.wait_retry.count())};
  if (const std::optional<int> fit = epochs_before_time_limit(group); fit && *fit < 1) {
    const double left =
        std::chrono::duration<double>(*group.job_ends - std::chrono::steady_clock::now()).count();
    release(group, fmt::format(
        "job {} ends in {:.0f} s and an epoch takes {:.1f} s (start-up {:.1f} s, margin "
        "{:.0f} s): no epoch fits, so the group leaves and the job returns its time",
        group.job, left, epoch_clock_.epoch_seconds(), epoch_clock_.startup_seconds(),
        std::chrono::duration<double>(options_.walltime_margin).count()));
    return;
  }
  for (;;) {
    if (!fatal_.ok()) return;
    Decision d;
    if (Status s = book_->next(&d); !s.ok()) {
      stop_on(s);
      return;
    }
    switch (d.kind) {
      case Decision::Kind::kFinished:
        send(group.name, Shutdown{"sweep finished"});
        return;
      case Decision::Kind::kStart:
        start(group, d.trial);
        return;
      case Decision::Kind::kWaitForResults:
        if (groups_.waits_for_results(group, std::chrono::steady_clock::now())) {
          spdlog::debug("group '{}' waits: trial {} learns from trials below {} (search.lag {}), "
                        "and trial {} has not stopped yet",
                        group.name, d.number, d.number - book_->feed().lag(),
                        book_->feed().lag(), book_->feed().first_unstopped());
        }
        send(group.name, wait);
        return;
      case Decision::Kind::kWait:
        send(group.name, wait);
        return;
      case Decision::Kind::kNew: {
        const std::optional<std::int64_t> id = new_trial(d);
        if (!id) return;  // the store refused it: stopping
        start(group, *id);
        return;
      }
      case Decision::Kind::kContinue:
        if (continue_trial(d.job)) {
          start(group, d.trial);
          return;
        }
        if (!fatal_.ok()) return;
        continue;  // it failed on a missing checkpoint, and the book has forgotten it
    }
  }
}

void Coordinator::start(Group& group, std::int64_t id) {
  StartedAttempt started;
  if (Status s = store_->start_trial(id, group.name, provenance(group), &started); !s.ok()) {
    stop_on(s.With("cannot start trial id " + std::to_string(id)));
    return;
  }
  book_->started(id);
  const TrialBook::Trial& t = *book_->find(id);
  groups_.started(group, id, started.attempt, std::chrono::steady_clock::now());
  const std::int32_t until = book_->effective_target(t.params, t.target_epoch);
  const std::int32_t epochs = book_->epochs_of(t.params);
  const std::int32_t from = started.resume ? started.resume_epoch : 0;
  if (const std::optional<int> fit = epochs_before_time_limit(group); fit && until - from > *fit) {
    group.cut_after = from + std::max(1, *fit);
    spdlog::info("trial {} (attempt {}) stops after epoch {} on group '{}', before job {}'s time "
                 "limit; it continues in another group",
                 t.number, started.attempt, group.cut_after, group.name, group.job);
  }
  nlohmann::json started_body = {{"attempt", started.attempt},
                                 {"resume_epoch", from},
                                 {"warm_start", started.warm_start},
                                 {"until_epoch", until}};
  if (group.cut_after > 0) started_body["cut_after_epoch"] = group.cut_after;
  record("attempt_started", id, group.name, std::move(started_body));
  spdlog::info("trial {} (attempt {}{}{}) -> group '{}': {}", t.number, started.attempt,
               started.resume_epoch > 0
                   ? ", resuming after epoch " + std::to_string(started.resume_epoch)
                   : std::string(),
               until < epochs ? ", through epoch " + std::to_string(until) : std::string(),
               group.name, describe(t.params));
  Assign assign;
  assign.trial = id;
  assign.attempt = started.attempt;
  assign.experiment = experiment_.name;
  assign.number = t.number;
  assign.seed = t.seed;
  assign.params = t.params;
  assign.dataset = spec_.dataset;
  assign.checkpoint = checkpoint_base(t.number);
  assign.resume = started.resume && !assign.checkpoint.empty();
  assign.resume_epoch = assign.resume ? started.resume_epoch : 0;
  assign.warm_start = assign.resume ? started.warm_start : std::string();
  assign.stop_epoch = group.cut_after > 0 ? group.cut_after : (until < epochs ? until : 0);
  if (spec_.scheduler.type == "pbt") assign.exploit_snapshots = kExploitSnapshotsKept;
  group.assignment = assign;
  send(group.name, assign);
}

std::string Coordinator::provenance(const Group& group) const {
  return nlohmann::json{{"group", group.name},
                        {"key", group.key},
                        {"host", group.host},
                        {"ranks", group.ranks},
                        {"topology", group.topology},
                        {"worker_version", group.version},
                        {"job", group.job},
                        {"job_log", group.job_log},
                        {"coordinator_version", TRELLIS_VERSION " " TRELLIS_GIT_REVISION},
                        {"spec_hash", experiment_.spec_hash},
                        {"dataset", spec_.dataset.path},
                        // The experiment's splits, the same for every trial (worker/data/dataset.h).
                        {"split", {{"seed", spec_.dataset.split_seed},
                                   {"validation_fraction", spec_.dataset.validation_fraction},
                                   {"test_fraction", spec_.dataset.test_fraction},
                                   {"stratified", spec_.dataset.task == "classification"}}}}
      .dump();
}

void Coordinator::expire_groups() {
  const auto now = std::chrono::steady_clock::now();
  for (const GroupTable::Loss& loss : groups_.expire(now)) {
    if (loss.silent) record("group_lost", loss.trial, loss.group, {{"reason", loss.reason}});
    if (loss.trial < 0) continue;
    requeue(loss.trial, loss.reason, Requeue::kLost);
    if (!loss.silent) send(loss.group, Stop{loss.trial, loss.reason});
  }
  for (const std::int64_t trial : groups_.expired_orphans(now))
    requeue(trial, "its group did not come back after the coordinator restarted",
            Requeue::kNotTheTrialsFault);
}

void Coordinator::send_heartbeats() {
  const auto now = std::chrono::steady_clock::now();
  if (now - last_heartbeat_ < options_.heartbeat) return;
  last_heartbeat_ = now;
  for (const auto& [identity, group] : groups_.groups()) send(identity, Heartbeat{});
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
