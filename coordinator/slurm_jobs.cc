#include "coordinator/slurm_jobs.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "common/run_command.h"
#include "coordinator/worker_script.h"

namespace trellis::coordinator {
namespace {

namespace fs = std::filesystem;

void replace_all(std::string* text, const std::string& field, const std::string& value) {
  for (std::size_t at = text->find(field); at != std::string::npos;
       at = text->find(field, at + value.size()))
    text->replace(at, field.size(), value);
}

// Single-quoted for the shell: the paths and the endpoint go into a script.
std::string quoted(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

std::string job_name(const WorkerJobs& jobs) { return "trellis-" + jobs.experiment; }

}  // namespace

std::string render_worker_script(const WorkerJobs& jobs) {
  std::string script = kWorkerJobTemplate;
  replace_all(&script, "@JOB_NAME@", job_name(jobs));
  replace_all(&script, "@LOG_DIR@", jobs.dir);
  replace_all(&script, "@RANKS@", std::to_string(jobs.ranks_per_group));
  replace_all(&script, "@WORKER@", quoted(jobs.worker));
  replace_all(&script, "@ENDPOINT@", quoted(jobs.endpoint));
  replace_all(&script, "@LOG_LEVEL@", quoted(jobs.log_level));
  return script;
}

std::vector<std::string> sbatch_command(const WorkerJobs& jobs, const std::string& script) {
  const int nodes = std::max(1, jobs.nodes_per_group);
  std::vector<std::string> argv = {
      jobs.sbatch, "--parsable",
      "--array=0-" + std::to_string(jobs.groups - 1) +
          (jobs.max_running > 0 ? "%" + std::to_string(jobs.max_running) : std::string()),
      "--nodes=" + std::to_string(nodes),
      "--ntasks-per-node=" + std::to_string((jobs.ranks_per_group + nodes - 1) / nodes)};
  if (!jobs.time.empty()) argv.push_back("--time=" + jobs.time);
  if (!jobs.partition.empty()) argv.push_back("--partition=" + jobs.partition);
  if (!jobs.account.empty()) argv.push_back("--account=" + jobs.account);
  argv.insert(argv.end(), jobs.sbatch_args.begin(), jobs.sbatch_args.end());
  argv.push_back(script);
  return argv;
}

Status submit_worker_jobs(const WorkerJobs& jobs, std::string* job_id, std::string* script) {
  if (jobs.groups < 1) return Status::Error("--groups must be at least 1");
  *script = (fs::path(jobs.dir) / (job_name(jobs) + "-workers.sbatch")).string();
  {
    std::ofstream out(*script, std::ios::trunc);
    out << render_worker_script(jobs);
    if (!out) return Status::Error("cannot write the worker job script " + *script);
  }
  fs::permissions(*script, fs::perms::owner_all | fs::perms::group_read | fs::perms::others_read);
  std::string output;
  int code = 0;
  const std::vector<std::string> argv = sbatch_command(jobs, *script);
  if (Status s = run_command(argv, &output, &code); !s.ok()) return s;
  while (!output.empty() && (output.back() == '\n' || output.back() == ' ')) output.pop_back();
  if (code != 0) {
    std::string command;
    for (const auto& a : argv) command += (command.empty() ? "" : " ") + a;
    return Status::Error("sbatch refused the worker jobs (exit " + std::to_string(code) + "): " +
                         output + " [" + command + "]");
  }
  // --parsable: "ID" or "ID;CLUSTER", after any warnings on lines of their own.
  const std::string last = output.substr(output.find_last_of('\n') + 1);
  *job_id = last.substr(0, last.find(';'));
  if (job_id->empty() || job_id->find_first_not_of("0123456789") != std::string::npos)
    return Status::Error("sbatch printed no job id: " + output);
  return Status::Ok();
}

Status cancel_jobs(const std::vector<std::string>& ids, bool pending_only) {
  if (ids.empty()) return Status::Ok();
  std::vector<std::string> argv = {"scancel"};
  if (pending_only) argv.push_back("--state=PENDING");
  argv.insert(argv.end(), ids.begin(), ids.end());
  std::string output;
  int code = 0;
  if (Status s = run_command(argv, &output, &code); !s.ok()) return s;
  if (code != 0) return Status::Error("scancel failed (exit " + std::to_string(code) + "): " + output);
  return Status::Ok();
}

Status live_jobs(const std::vector<std::string>& ids, std::vector<std::string>* live) {
  live->clear();
  if (ids.empty()) return Status::Ok();
  std::string list;
  for (const std::string& id : ids) list += (list.empty() ? "" : ",") + id;
  std::string output;
  int code = 0;
  // %F: an array task's array id (a plain job's own id).
  if (Status s = run_command({"squeue", "-h", "-j", list, "-t",
                              "PENDING,RUNNING,CONFIGURING,COMPLETING,SUSPENDED,REQUEUED", "-o", "%F"},
                             &output, &code);
      !s.ok())
    return s;
  if (code != 0) {
    if (output.find("Invalid job id") != std::string::npos) return Status::Ok();  // purged
    return Status::Error("squeue failed (exit " + std::to_string(code) + "): " + output);
  }
  std::istringstream in(output);
  for (std::string id; in >> id;)
    if (std::find(live->begin(), live->end(), id) == live->end()) live->push_back(id);
  return Status::Ok();
}

std::string submission_path(const std::string& store, const std::string& experiment) {
  return (fs::absolute(store).parent_path() / ("trellis-" + experiment + ".submit.json")).string();
}

Status read_submission(const std::string& path, Submission* out) {
  std::ifstream in(path);
  if (!in) return Status::Error(path + ": no submission here (was the sweep started with `trellis submit` on this store?)");
  const nlohmann::json doc = nlohmann::json::parse(in, nullptr, false);
  if (!doc.is_object()) return Status::Error(path + ": not a submission record (not JSON)");
  out->coordinator = doc.value("coordinator_pid", 0);
  out->endpoint = doc.value("endpoint", "");
  out->log = doc.value("log", "");
  out->jobs = doc.value("jobs", std::vector<std::string>{});
  return Status::Ok();
}

Status write_submission(const std::string& path, const Submission& s) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << nlohmann::json{{"coordinator_pid", s.coordinator},
                          {"endpoint", s.endpoint},
                          {"log", s.log},
                          {"jobs", s.jobs}}
               .dump(1)
        << "\n";
    if (!out) return Status::Error("cannot write " + tmp);
  }
  std::error_code ec;
  fs::rename(tmp, path, ec);  // readers see the old record or the new one, never half of one
  if (ec) return Status::Error("cannot write " + path + ": " + ec.message());
  return Status::Ok();
}

}  // namespace trellis::coordinator
