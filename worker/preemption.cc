#include "worker/preemption.h"

#include <signal.h>

#include <atomic>

namespace trellis::worker {
namespace {

std::atomic<bool> g_requested{false};
static_assert(std::atomic<bool>::is_always_lock_free, "set from a signal handler");

void on_sigterm(int) { g_requested.store(true, std::memory_order_relaxed); }

}  // namespace

void install_preemption_handler() {
  struct sigaction sa {};
  sa.sa_handler = on_sigterm;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;  // a write or MPI call in flight goes on; the flag is read later
  sigaction(SIGTERM, &sa, nullptr);
  sigaction(SIGUSR1, &sa, nullptr);
}

bool preemption_requested() { return g_requested.load(std::memory_order_relaxed); }

}  // namespace trellis::worker
