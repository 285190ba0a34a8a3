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
#include <tuple>
#include <vector>

#include "worker/kernels/gemm.h"
#include "worker/preemption.h"

namespace {

struct Product {
  int m, n, k;
  bool ta, tb;
  std::vector<float> a, b, reference, out;
};

void multiply(Product& p, std::vector<float>* c) {
  trellis::worker::kernels::gemm(p.ta, p.tb, p.m, p.n, p.k, p.a.data(), p.ta ? p.k : p.m,
                                 p.b.data(), p.tb ? p.n : p.k, 0.0f, c->data(), p.m);
}

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
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  std::vector<Product> products;
  for (const auto& [m, n, k, ta, tb] : {std::tuple{256, 128, 784, false, false},
                                       std::tuple{256, 784, 128, false, true},
                                       std::tuple{256, 128, 128, true, false},
                                       std::tuple{10, 128, 128, false, false}}) {
    Product p{m, n, k, ta, tb, {}, {}, {}, {}};
    p.a.resize(static_cast<std::size_t>(m) * k);
    p.b.resize(static_cast<std::size_t>(k) * n);
    for (float& x : p.a) x = u(rng);
    for (float& x : p.b) x = u(rng);
    p.reference.resize(static_cast<std::size_t>(m) * n);
    p.out.resize(p.reference.size());
    multiply(p, &p.reference);
    products.push_back(std::move(p));
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
    for (Product& p : products) {
      multiply(p, &p.out);
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
