#include "coordinator/local_launcher.h"

#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <spdlog/spdlog.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <thread>

extern char** environ;

namespace trellis::coordinator {

std::string executable_dir() {
  std::error_code ec;
  const auto exe = std::filesystem::read_symlink("/proc/self/exe", ec);
  return ec ? std::string(".") : exe.parent_path().string();
}

LocalLauncher::~LocalLauncher() { Stop(std::chrono::milliseconds(0)); }

Status LocalLauncher::Launch(const LaunchOptions& options) {
  const std::string worker =
      options.worker_binary.empty() ? executable_dir() + "/trellis-worker" : options.worker_binary;
  if (access(worker.c_str(), X_OK) != 0)
    return Status::Error("worker binary '" + worker + "' is not executable: " + std::strerror(errno));
  const unsigned cores = std::max(1u, std::thread::hardware_concurrency());
  const bool srun = options.launcher == Launcher::kSrun;
  for (int g = 0; g < options.groups; ++g) {
    std::vector<std::string> args;
    if (srun) {
      const int nodes = std::max(1, options.nodes_per_group);
      // --exact: the step gets just the CPUs of its tasks, so the groups' steps run side by
      // side in the allocation instead of one after the other.
      args = {options.srun, "--exact", "--nodes=" + std::to_string(nodes),
              "--ntasks=" + std::to_string(options.ranks_per_group),
              "--ntasks-per-node=" + std::to_string((options.ranks_per_group + nodes - 1) / nodes),
              "--mpi=pmix", "--kill-on-bad-exit=1", "--job-name=trellis-group-" + std::to_string(g),
              // Each rank on its own cores. Said outright because srun inside a batch script
              // inherits the script's SLURM_CPU_BIND (a mask of the whole allocation), which
              // turns task/affinity's own per-task binding off.
              "--cpu-bind=cores"};
      args.insert(args.end(), options.mpirun_args.begin(), options.mpirun_args.end());
      args.insert(args.end(), {worker, "--connect", options.endpoint, "--log-level",
                               options.log_level});
    } else {
      args = {options.mpirun, "-np", std::to_string(options.ranks_per_group)};
      // Placement by topology is the worker's job; mpirun's default core binding would put
      // rank 0 of every group on the same core.
      args.insert(args.end(), {"--bind-to", "none"});
      if (static_cast<unsigned>(options.groups * options.ranks_per_group) > cores)
        args.push_back("--oversubscribe");
      args.insert(args.end(), options.mpirun_args.begin(), options.mpirun_args.end());
      // Each group binds its ranks inside its own share of the node's cores.
      args.insert(args.end(), {worker, "--connect", options.endpoint, "--log-level",
                               options.log_level, "--cpu-slot",
                               std::to_string(g) + "/" + std::to_string(options.groups)});
    }
    args.insert(args.end(), options.worker_args.begin(), options.worker_args.end());
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    pid_t pid = 0;
    const int rc = posix_spawnp(&pid, argv[0], nullptr, nullptr, argv.data(), environ);
    if (rc != 0)
      return Status::Error("cannot start '" + args[0] + "': " + std::strerror(rc) +
                           (srun ? " (is Slurm's srun on PATH?)" : " (is OpenMPI installed and on PATH?)"));
    spdlog::info("started worker group {} (pid {}): {} rank(s){}", g, pid, options.ranks_per_group,
                 srun ? " with srun on " + std::to_string(options.nodes_per_group) + " node(s)"
                      : std::string());
    pids_.push_back(pid);
  }
  return Status::Ok();
}

void LocalLauncher::reap(bool block) {
  for (auto it = pids_.begin(); it != pids_.end();) {
    int status = 0;
    const pid_t r = waitpid(*it, &status, block ? 0 : WNOHANG);
    if (r == 0) {
      ++it;
      continue;
    }
    if (r == *it) {
      if (WIFEXITED(status) && WEXITSTATUS(status) != 0)
        failures_.push_back("worker group pid " + std::to_string(*it) + " exited with code " +
                            std::to_string(WEXITSTATUS(status)));
      else if (WIFSIGNALED(status))
        failures_.push_back("worker group pid " + std::to_string(*it) + " killed by signal " +
                            std::to_string(WTERMSIG(status)));
    }
    it = pids_.erase(it);
  }
}

bool LocalLauncher::any_running() {
  reap(false);
  return !pids_.empty();
}

void LocalLauncher::Stop(std::chrono::milliseconds grace) {
  const auto deadline = std::chrono::steady_clock::now() + grace;
  while (any_running() && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  if (pids_.empty()) return;
  // mpirun and srun forward SIGTERM to their ranks and exit.
  for (pid_t pid : pids_) kill(pid, SIGTERM);
  const auto kill_deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (any_running() && std::chrono::steady_clock::now() < kill_deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  for (pid_t pid : pids_) kill(pid, SIGKILL);
  reap(true);
}

}  // namespace trellis::coordinator
