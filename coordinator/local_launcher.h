#pragma once
// LocalLauncher: starts the worker groups of `trellis run` and stops them (by pid) when the
// sweep ends. With mpirun, every group runs on this machine (`mpirun -np K trellis-worker
// --connect ENDPOINT`), each bound inside its own share of the cores (--cpu-slot). With srun,
// inside a Slurm allocation, each group is one job step (`srun --exact --nodes N --ntasks K
// --mpi=pmix trellis-worker ...`) on as few nodes as hold its ranks; Slurm gives every step
// CPUs of its own, and the workers keep the binding srun made.

#include <sys/types.h>

#include <chrono>
#include <string>
#include <vector>

#include "common/status.h"

namespace trellis::coordinator {

enum class Launcher { kMpirun, kSrun };

struct LaunchOptions {
  std::string endpoint;        // where the workers connect
  int groups = 1;
  int ranks_per_group = 1;
  Launcher launcher = Launcher::kMpirun;
  std::string mpirun = "mpirun";
  std::string srun = "srun";
  int nodes_per_group = 1;     // srun: the nodes each group's ranks are spread over
  std::string worker_binary;   // default: trellis-worker beside the running trellis
  std::vector<std::string> mpirun_args;  // extra mpirun or srun arguments, e.g. "--mca", "btl", "self,vader"
  std::vector<std::string> worker_args;  // extra trellis-worker arguments, e.g. "--insecure"
  std::string log_level = "info";
};

class LocalLauncher {
 public:
  LocalLauncher() = default;
  ~LocalLauncher();  // terminates whatever is still running
  LocalLauncher(const LocalLauncher&) = delete;
  LocalLauncher& operator=(const LocalLauncher&) = delete;

  [[nodiscard]] Status Launch(const LaunchOptions& options);

  // Reaps exited groups; true while at least one is running.
  bool any_running();
  // Exit statuses of groups that ended with an error, as text ("group 0 exited with code 2").
  std::vector<std::string> failures() const { return failures_; }

  // Waits up to `grace` for every group to exit, then SIGTERM, then SIGKILL.
  void Stop(std::chrono::milliseconds grace);

 private:
  void reap(bool block);
  std::vector<pid_t> pids_;
  std::vector<std::string> failures_;
};

// The directory of the running executable (to find trellis-worker beside trellis).
std::string executable_dir();

}  // namespace trellis::coordinator
