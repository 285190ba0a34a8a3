#include "bench/sweep_run.h"

#include <stdlib.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <sstream>

namespace trellis::bench {
namespace {

// Runs `command` through the shell, output to `log`; on failure prints the log.
bool shell(const std::string& command, const std::string& log) {
  const int rc = std::system((command + " >" + log + " 2>&1").c_str());
  if (rc != 0) {
    std::cerr << "failed (" << rc << "): " << command << "\n" << read_file(log);
    return false;
  }
  return true;
}

}  // namespace

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void prepare_environment() {
  if (getuid() == 0) {  // Open MPI refuses root unless told; these are local benchmarks
    setenv("OMPI_ALLOW_RUN_AS_ROOT", "1", 0);
    setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1", 0);
  }
  // Each rank owns one core here; OpenBLAS's pthread build would otherwise start one thread
  // per core in every rank (measured 6x slower with 2 ranks on 2 cores).
  setenv("OPENBLAS_NUM_THREADS", "1", 0);
}

std::string make_temp_dir(const std::string& tag) {
  std::string path = "/tmp/trellis-bench-" + tag + "-XXXXXX";
  if (mkdtemp(path.data()) == nullptr) {
    std::perror(("mkdtemp " + path).c_str());
    return {};
  }
  return path;
}

bool run_sweep(const std::string& bin, const std::string& dir, const std::string& name,
               const std::string& spec_text, const std::vector<std::string>& run_args,
               SweepRun* out) {
  const std::string base = dir + "/" + name;
  std::ofstream(base + ".yaml") << spec_text;
  // --store and --log-level are the CLI's global options: before the subcommand.
  const std::string trellis = bin + "/trellis --log-level info --store " + base + ".db ";
  std::string args;
  for (const auto& a : run_args) args += " " + a;
  const auto t0 = std::chrono::steady_clock::now();
  if (!shell(trellis + "run " + base + ".yaml" + args, base + ".run.log")) return false;
  out->wall_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (!shell(trellis + "export " + name + " --format json -o " + base + ".json",
             base + ".export.log"))
    return false;
  out->exported = nlohmann::json::parse(read_file(base + ".json"), nullptr, false);
  if (out->exported.is_discarded() || !out->exported.contains("trials")) {
    std::cerr << "no export in " << base << ".json\n";
    return false;
  }
  return true;
}

}  // namespace trellis::bench
