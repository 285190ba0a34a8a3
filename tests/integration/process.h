#pragma once
// Real child processes for integration tests: started with posix_spawn, output to files,
// waited for with a deadline, and killed by pid (their whole process group) if they overrun.

#include <sys/types.h>

#include <chrono>
#include <string>
#include <vector>

namespace trellis::testing {

class Process {
 public:
  // Starts `argv` with stdout and stderr going to `log_path`. The child leads its own process
  // group, so mpirun and its ranks are stopped with it.
  Process(const std::vector<std::string>& argv, const std::string& log_path);
  ~Process();  // kills the group if still running
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;

  pid_t pid() const { return pid_; }
  // Exit code, 128+signal if killed by a signal, or -1 if still running at the deadline
  // (the process group is then killed).
  int wait(std::chrono::seconds timeout);
  bool running();
  // Sends `signal` to the whole process group (mpirun and its ranks together) and, for
  // SIGKILL, reaps it.
  void kill_group(int signal);
  std::string log() const;

 private:
  pid_t pid_ = -1;
  int status_ = -1;
  std::string log_path_;
};

struct Result {
  int code = -1;
  std::string output;  // stdout and stderr interleaved
};

// Runs to completion (or the deadline) and returns the exit code and output.
Result run(const std::vector<std::string>& argv, const std::string& log_path,
           std::chrono::seconds timeout = std::chrono::seconds(300));

// True once `needle` appears in `process`'s log; false after `timeout`, or as soon as the
// process has exited without printing it.
bool wait_for(Process& process, const std::string& needle, std::chrono::seconds timeout);

// The pid of the trellis-worker that is MPI rank `rank` among mpirun `launcher`'s
// descendants, or -1 (not started yet, or gone).
pid_t rank_pid(pid_t launcher, int rank);

// A TCP port on 127.0.0.1 that was free a moment ago.
int free_loopback_port();

std::string read_file(const std::string& path);
void write_text(const std::string& path, const std::string& text);

}  // namespace trellis::testing
