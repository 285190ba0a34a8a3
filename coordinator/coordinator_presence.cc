#include "coordinator/coordinator_presence.h"

#include <unistd.h>

#include <cstdio>
#include <ctime>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

namespace trellis::coordinator {

std::string this_host() {
  char host[256] = {};
  ::gethostname(host, sizeof host - 1);
  return host;
}

bool parse_store_time(const std::string& text, double* seconds) {
  std::tm tm{};
  int millis = 0;
  if (std::sscanf(text.c_str(), "%4d-%2d-%2dT%2d:%2d:%2d.%3dZ", &tm.tm_year, &tm.tm_mon,
                  &tm.tm_mday, &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &millis) < 6)
    return false;
  tm.tm_year -= 1900;
  tm.tm_mon -= 1;
  *seconds = static_cast<double>(timegm(&tm)) + millis / 1000.0;
  return true;
}

bool process_started_by(std::int64_t pid, double not_after) {
  if (pid <= 0) return false;
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string text((std::istreambuf_iterator<char>(stat)), std::istreambuf_iterator<char>());
  // "PID (COMM) STATE ... STARTTIME(22nd) ...": COMM may hold spaces and parentheses.
  const auto close = text.rfind(')');
  if (close == std::string::npos) return false;
  std::istringstream fields(text.substr(close + 1));
  std::string state;
  fields >> state;
  if (state == "Z" || state == "X") return false;
  std::string skip;
  for (int i = 4; i < 22; ++i) fields >> skip;  // fields 4..21
  unsigned long long start_ticks = 0;
  if (!(fields >> start_ticks)) return false;
  std::ifstream proc_stat("/proc/stat");
  double boot = -1;
  for (std::string line; std::getline(proc_stat, line);)
    if (line.rfind("btime ", 0) == 0) boot = std::stod(line.substr(6));
  if (boot < 0) return false;
  const double started = boot + static_cast<double>(start_ticks) / sysconf(_SC_CLK_TCK);
  return started <= not_after + 1.0;
}

Status coordinator_presence(ExperimentStore& store, const ExperimentRecord& experiment,
                            CoordinatorPresence* out) {
  *out = CoordinatorPresence();
  std::optional<EventRecord> started;
  if (Status s = store.last_event(experiment.id, "coordinator_started", &started); !s.ok())
    return s;
  if (!started) return Status::Ok();
  out->seq = started->seq;
  out->after_report = started->after_report;
  out->started_at = started->created_at;
  const nlohmann::json body = nlohmann::json::parse(started->body, nullptr, false);
  if (body.is_object()) {
    out->pid = body.value("pid", std::int64_t{0});
    out->host = body.value("host", std::string());
    out->checkpoint_dir = body.value("checkpoint_dir", std::string());
  }
  double at = 0;
  if (!out->host.empty() && out->host != this_host()) {
    out->state = CoordinatorPresence::State::kOtherHost;
  } else if (parse_store_time(out->started_at, &at) && process_started_by(out->pid, at)) {
    out->state = CoordinatorPresence::State::kServing;
  } else {
    out->state = CoordinatorPresence::State::kGone;
  }
  return Status::Ok();
}

std::string CoordinatorPresence::describe() const {
  if (state == State::kNever) return "no coordinator has recorded itself";
  std::string who = "coordinator pid " + std::to_string(pid) + (host.empty() ? "" : " on " + host) +
                    ", started " + started_at;
  switch (state) {
    case State::kServing: return who + ": serving";
    case State::kGone: return who + ": not running";
    default: return who + ": another host, so this one cannot tell whether it still runs";
  }
}

}  // namespace trellis::coordinator
