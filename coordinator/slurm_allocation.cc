#include "coordinator/slurm_allocation.h"

#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <cstdlib>
#include <numeric>

namespace trellis::coordinator {
namespace {

bool parse_positive(std::string_view text, int* out) {
  int value = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size() || value <= 0) return false;
  *out = value;
  return true;
}

const char* env(const char* name) {
  const char* value = std::getenv(name);
  return value != nullptr && *value != '\0' ? value : nullptr;
}

}  // namespace

int SlurmAllocation::min_cpus_per_node() const {
  return cpus_per_node.empty() ? 0 : *std::min_element(cpus_per_node.begin(), cpus_per_node.end());
}

int SlurmAllocation::total_cpus() const {
  return std::accumulate(cpus_per_node.begin(), cpus_per_node.end(), 0);
}

Status parse_cpus_per_node(std::string_view text, std::vector<int>* out) {
  out->clear();
  const Status bad = Status::Error("SLURM_JOB_CPUS_PER_NODE '" + std::string(text) +
                                   "': expected a list like 4(x2),2");
  while (!text.empty()) {
    const auto comma = text.find(',');
    std::string_view item = text.substr(0, comma);
    text = comma == std::string_view::npos ? std::string_view() : text.substr(comma + 1);
    int repeat = 1;
    if (const auto paren = item.find("(x"); paren != std::string_view::npos) {
      if (item.back() != ')' ||
          !parse_positive(item.substr(paren + 2, item.size() - paren - 3), &repeat))
        return bad;
      item = item.substr(0, paren);
    }
    int cpus = 0;
    if (!parse_positive(item, &cpus)) return bad;
    out->insert(out->end(), repeat, cpus);
  }
  return out->empty() ? bad : Status::Ok();
}

Status current_allocation(std::optional<SlurmAllocation>* out) {
  out->reset();
  const char* job = env("SLURM_JOB_ID");
  if (job == nullptr) return Status::Ok();
  SlurmAllocation a;
  a.job_id = job;
  const char* cpus = env("SLURM_JOB_CPUS_PER_NODE");
  if (cpus == nullptr)
    return Status::Error("inside Slurm job " + a.job_id + " but SLURM_JOB_CPUS_PER_NODE is not set");
  if (Status s = parse_cpus_per_node(cpus, &a.cpus_per_node); !s.ok()) return s;
  const char* nodes = env("SLURM_JOB_NUM_NODES");
  if (nodes == nullptr || !parse_positive(nodes, &a.nodes))
    return Status::Error("inside Slurm job " + a.job_id + " but SLURM_JOB_NUM_NODES is '" +
                         (nodes ? nodes : "") + "', not a node count");
  if (static_cast<int>(a.cpus_per_node.size()) != a.nodes)
    return Status::Error("SLURM_JOB_CPUS_PER_NODE '" + std::string(cpus) + "' names " +
                         std::to_string(a.cpus_per_node.size()) + " node(s), SLURM_JOB_NUM_NODES " +
                         std::to_string(a.nodes));
  if (const char* tasks = env("SLURM_NTASKS"); tasks != nullptr && !parse_positive(tasks, &a.tasks))
    return Status::Error("SLURM_NTASKS '" + std::string(tasks) + "' is not a task count");
  if (const char* node = env("SLURMD_NODENAME")) {
    a.node_name = node;
  } else {
    char host[256] = {};
    if (gethostname(host, sizeof host - 1) != 0)
      return Status::Error("inside Slurm job " + a.job_id +
                           ": no SLURMD_NODENAME and no host name to give the workers");
    a.node_name = host;
  }
  *out = std::move(a);
  return Status::Ok();
}

}  // namespace trellis::coordinator
