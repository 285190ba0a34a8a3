#pragma once
// The worker side of `trellis submit`: the job array that runs a sweep's worker groups, written
// from the template deploy/slurm/worker.sbatch, submitted with sbatch and cancelled with
// scancel; and the record (beside the store) that ties an experiment to its detached
// coordinator and its jobs, which `trellis cancel` and `trellis status` read.

#include <sys/types.h>

#include <string>
#include <vector>

#include "common/status.h"

namespace trellis::coordinator {

struct WorkerJobs {
  std::string experiment;
  std::string endpoint;   // where the groups connect: an address the compute nodes reach
  std::string worker;     // trellis-worker, an absolute path every node sees
  std::string log_level = "info";
  int groups = 1;          // array tasks
  int ranks_per_group = 1;
  int nodes_per_group = 1;
  std::string time;       // sbatch --time; empty: the partition's default
  std::string partition;  // empty: the cluster's default
  std::string account;
  int max_running = 0;    // array throttle; 0: every group at once
  std::vector<std::string> sbatch_args;  // passed as they are, before the script
  std::string dir;        // where the script and the job logs go
  std::string sbatch = "sbatch";
};

// The job script: the template with its @FIELDS@ filled in.
std::string render_worker_script(const WorkerJobs& jobs);
// The sbatch command line that submits `script`.
std::vector<std::string> sbatch_command(const WorkerJobs& jobs, const std::string& script);
// Writes the script into jobs.dir and submits it; `job_id`: the array's id. An error carries
// what sbatch said (an unknown partition, say), or that sbatch is not on PATH.
[[nodiscard]] Status submit_worker_jobs(const WorkerJobs& jobs, std::string* job_id,
                                        std::string* script);
// scancel of `ids` (nothing to do when empty); only their tasks still queued if `pending_only`.
[[nodiscard]] Status cancel_jobs(const std::vector<std::string>& ids, bool pending_only);

// The jobs of `ids` (arrays count as one) that Slurm still holds queued or running, in
// `*live`. Jobs Slurm has forgotten count as ended.
[[nodiscard]] Status live_jobs(const std::vector<std::string>& ids, std::vector<std::string>* live);

// What `trellis submit` started for an experiment, kept at submission_path().
struct Submission {
  pid_t coordinator = 0;
  std::string endpoint;
  std::string log;               // the coordinator's log
  std::vector<std::string> jobs;  // the worker job arrays, oldest first
};
std::string submission_path(const std::string& store, const std::string& experiment);
[[nodiscard]] Status read_submission(const std::string& path, Submission* out);
[[nodiscard]] Status write_submission(const std::string& path, const Submission& submission);

}  // namespace trellis::coordinator
