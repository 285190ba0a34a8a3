// preemption_probe: GEMMs at the MLP's shapes on the main thread while another thread sends
// this process SIGUSR1 thousands of times, as a preempting scheduler signals a rank in the
// middle of a product. Prints one JSON line: how many signals were sent, how many products
// differed from the same product computed before the storm, whether the preemption flag was
// raised, and whether a thread started after the watch began has the preemption signals
// blocked (so no handler frame can ever land on a computing thread). kernels_test runs it as a
// separate process, since the watch is process-wide and cannot be undone.

#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstring>
#include <random>
#include <thread>
#include <vector>

#include "tests/worker/mlp_products.h"
#include "worker/kernels/gemm.h"
#include "worker/preemption.h"

namespace {

bool preemption_signals_blocked_here() {
  sigset_t mask;
  pthread_sigmask(SIG_BLOCK, nullptr, &mask);
  return sigismember(&mask, SIGTERM) == 1 && sigismember(&mask, SIGUSR1) == 1;
}

}  // namespace

int main() {
  trellis::worker::start_preemption_watch();
  bool blocked_in_new_thread = false;
  std::thread([&] { blocked_in_new_thread = preemption_signals_blocked_here(); }).join();

  std::mt19937 rng(11);
  struct Run {
    trellis::worker::testing::Product product;
    std::vector<float> reference, out;
  };
  std::vector<Run> products;
  for (trellis::worker::testing::Product& p : trellis::worker::testing::mlp_products(rng)) {
    Run r{std::move(p), {}, {}};
    r.reference.resize(r.product.out_size());
    r.out.resize(r.reference.size());
    r.product.multiply(r.reference.data());
    products.push_back(std::move(r));
  }

  constexpr int kSignals = 20000;
  std::atomic<bool> storm_over{false};
  std::thread storm([&] {
    for (int i = 0; i < kSignals; ++i) {
      kill(getpid(), SIGUSR1);
      if (i % 8 == 0) std::this_thread::yield();
    }
    storm_over = true;
  });
  long mismatches = 0, rounds = 0;
  while (!storm_over.load() || rounds < 50) {
    for (Run& p : products) {
      p.product.multiply(p.out.data());
      if (std::memcmp(p.out.data(), p.reference.data(), p.out.size() * sizeof(float)) != 0)
        ++mismatches;
    }
    ++rounds;
  }
  storm.join();
  for (int i = 0; i < 1000 && !trellis::worker::preemption_requested(); ++i) usleep(1000);
  std::printf("{\"signals\": %d, \"rounds\": %ld, \"mismatches\": %ld, \"preempted\": %s, "
              "\"blocked_in_new_thread\": %s, \"library\": \"%s\", \"kernel\": \"%s\"}\n",
              kSignals, rounds, mismatches,
              trellis::worker::preemption_requested() ? "true" : "false",
              blocked_in_new_thread ? "true" : "false",
              trellis::worker::kernels::gemm_choice().library.c_str(),
              trellis::worker::kernels::gemm_choice().kernel.c_str());
  return 0;
}
