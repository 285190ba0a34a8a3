#include "worker/preemption.h"

#include <pthread.h>
#include <signal.h>

#include <atomic>
#include <thread>

namespace trellis::worker {
namespace {

std::atomic<bool> g_requested{false};
static_assert(std::atomic<bool>::is_always_lock_free, "set from a signal handler");

void on_signal(int) { g_requested.store(true, std::memory_order_relaxed); }

sigset_t preemption_signals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGUSR1);
  return set;
}

}  // namespace

void start_preemption_watch() {
  // Threads started before main (OpenBLAS's pool, from its library's constructor) still take
  // the signals: the handler serves them there, where a frame is harmless (OpenBLAS kept every
  // product exact under 200,000 signals). Without the handler, their default action would end
  // the process.
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  sigaction(SIGTERM, &sa, nullptr);
  sigaction(SIGUSR1, &sa, nullptr);
  const sigset_t set = preemption_signals();
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  // Takes them when no such thread is there to (no OpenBLAS pool, or a serial OpenBLAS).
  // Detached: it waits until the process ends, which takes it down wherever it waits.
  std::thread([set] {
    for (;;) {
      int sig = 0;
      if (sigwait(&set, &sig) == 0) g_requested.store(true, std::memory_order_relaxed);
    }
  }).detach();
}

bool preemption_requested() { return g_requested.load(std::memory_order_relaxed); }

}  // namespace trellis::worker
