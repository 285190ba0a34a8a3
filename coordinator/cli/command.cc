#include "coordinator/cli/command.h"

#include <signal.h>

#include <atomic>
#include <filesystem>
#include <iostream>

#include "coordinator/trial_table.h"

namespace trellis::cli {
namespace {

std::atomic<int> g_signal{0};

void on_signal(int sig) { g_signal = sig; }

}  // namespace

int fail(const Status& s) {
  std::cerr << "trellis: " << s.message() << "\n";
  return 1;
}

void install_signal_handlers() {
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
}

int pending_signal() { return g_signal; }

Status open_store(const CommonArgs& common, bool read_only,
                  std::unique_ptr<coordinator::ExperimentStore>* out) {
  return coordinator::ExperimentStore::Open(common.store, read_only, out);
}

int print_ranking(coordinator::ExperimentStore& store, const std::string& experiment) {
  coordinator::TrialTableOptions options;
  options.experiment = experiment;
  if (Status s = coordinator::print_trials(store, options, std::cout); !s.ok()) return fail(s);
  return 0;
}

std::string model_dir(const std::string& store) {
  return std::filesystem::absolute(store).lexically_normal().string() + ".models";
}

std::string joined(const std::vector<std::string>& items, const char* separator) {
  std::string out;
  for (const std::string& item : items) out += (out.empty() ? "" : separator) + item;
  return out;
}

}  // namespace trellis::cli
