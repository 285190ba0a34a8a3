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
    if (t.state == TrialState::kRunning) {
      // Its group belonged to a coordinator that is gone; run it again.
      if (Status s = store_->requeue_trial(t.id, "coordinator restarted"); !s.ok()) return s;
      t.state = TrialState::kPending;
    }
    if (t.state == TrialState::kPending) pending_.push_back(t.id);
    if (t.state == TrialState::kCompleted || t.state == TrialState::kPruned) ++progress_.completed;
    if (t.state == TrialState::kFailed) ++progress_.failed;
    ++progress_.proposed;
    trials_[t.id] = std::move(t);
  }
  return Status::Ok();
}

Status Coordinator::Run(const std::function<bool()>& keep_going) {
  while (!progress_.finished()) {
    if (!keep_going()) return Status::Ok();
    zmq::pollitem_t items[] = {{socket_->handle(), 0, ZMQ_POLLIN, 0}};
    try {
      zmq::poll(items, 1, options_.poll_interval);
    } catch (const zmq::error_t& e) {
      if (e.num() != EINTR) return Status::Error(std::string("poll failed: ") + e.what());
      continue;  // a signal: keep_going() decides
    }
    std::vector<zmq::message_t> parts;
    while (zmq::recv_multipart(*socket_, std::back_inserter(parts), zmq::recv_flags::dontwait)) {
      if (parts.size() != 2) {
        spdlog::warn("dropped a message of {} frames (expected identity + payload)", parts.size());
      } else {
        handle_frame(parts[0].to_string(), parts[1]);
      }
      parts.clear();
    }
    expire_silent_groups();
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
}

void Coordinator::handle(Group& group, const Message& message) {
  if (const auto* hello = std::get_if<Hello>(&message)) {
    group.host = hello->host;
    group.ranks = hello->ranks;
    group.topology = hello->topology;
    group.version = hello->version;
    spdlog::info("group '{}' joined: {} rank(s) on {}{}", group.name, hello->ranks, hello->host,
                 hello->topology.empty() ? "" : " [" + hello->topology + "]");
    if (group.trial >= 0) {
      // The group restarted while we thought it busy: its old attempt is gone.
      if (Status s = store_->requeue_trial(group.trial, "group restarted"); !s.ok())
        spdlog::error("{}", s.message());
      pending_.insert(pending_.begin(), group.trial);
      --progress_.running;
      group.trial = -1;
    }
    assign_or_wait(group);
  } else if (std::holds_alternative<Request>(message)) {
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
  } else if (std::holds_alternative<Heartbeat>(message)) {
    // group_for() already refreshed last_seen.
  } else {
    spdlog::warn("group '{}' sent '{}', which only the coordinator sends; dropped", group.name,
                 message_name(message));
  }
}

void Coordinator::on_report(Group& group, const Report& report) {
  if (report.trial != group.trial || report.attempt != group.attempt) {
    spdlog::warn("dropped report for trial {} attempt {} from '{}': it runs trial {} attempt {}",
                 report.trial, report.attempt, group.name, group.trial, group.attempt);
    return;
  }
  if (report.epoch < 1) {
    spdlog::warn("dropped report with epoch {} from '{}': epochs start at 1", report.epoch,
                 group.name);
    return;
  }
  if (Status s = store_->append_report(report.trial, report.attempt, report.epoch, report.metrics,
                                       report.checkpointed);
      !s.ok()) {
    spdlog::error("cannot store report of trial {}: {}", report.trial, s.message());
    return;
  }
  const TrialRecord& t = trials_[report.trial];
  spdlog::info("trial {} epoch {}: {}", t.number, report.epoch, describe(report.metrics));
}

void Coordinator::on_done(Group& group, const Done& done) {
  if (done.trial != group.trial || done.attempt != group.attempt) {
    spdlog::warn("dropped done for trial {} attempt {} from '{}': it runs trial {} attempt {}",
                 done.trial, done.attempt, group.name, group.trial, group.attempt);
    return;
  }
  const TrialState state = done.ok ? TrialState::kCompleted : TrialState::kFailed;
  if (Status s = store_->finish_trial(done.trial, done.attempt, state, done.error,
                                      done.final_metrics);
      !s.ok()) {
    // Not acknowledged: the trial stays running and is requeued if the group moves on.
    spdlog::error("cannot record the end of trial {}: {}", done.trial, s.message());
    return;
  }
  TrialRecord& t = trials_[done.trial];
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
  group.trial = -1;
  assign_or_wait(group);
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
  assign.resume_epoch = assign.checkpoint.empty() ? 0 : started.resume_epoch;
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
    if (g.trial >= 0) {
      spdlog::warn("group '{}' silent for {} ms: trial {} requeued", g.name,
                   options_.liveness.count(), trials_[g.trial].number);
      if (Status s = store_->requeue_trial(g.trial, "worker group '" + g.name + "' lost");
          !s.ok()) {
        spdlog::error("{}", s.message());
      } else {
        trials_[g.trial].state = TrialState::kPending;
        pending_.insert(pending_.begin(), g.trial);
        --progress_.running;
      }
    }
    it = groups_.erase(it);
  }
}

void Coordinator::send(const std::string& identity, const Message& message) {
  const std::string frame = encode(message);
  std::array<zmq::const_buffer, 2> parts = {zmq::buffer(identity), zmq::buffer(frame)};
  try {
    zmq::send_multipart(*socket_, parts, zmq::send_flags::dontwait);
  } catch (const zmq::error_t& e) {
    spdlog::warn("cannot send {} to '{}': {}", message_name(message), identity, e.what());
  }
}

}  // namespace trellis::coordinator
