#pragma once
// Benchmarks that measure what a user gets run the public binaries: `trellis run SPEC`, then
// `trellis export NAME --format json`. This runs one such sweep in a directory of its own.

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace trellis::bench {

struct SweepRun {
  nlohmann::json exported;  // the export's JSON document
  double wall_s = 0;        // of `trellis run`
};

// Writes `spec_text` to DIR/NAME.yaml and runs it with store DIR/NAME.db and `run_args`
// (e.g. {"--groups", "2"}). On failure prints the command's log to stderr and returns false.
bool run_sweep(const std::string& bin, const std::string& dir, const std::string& name,
               const std::string& spec_text, const std::vector<std::string>& run_args,
               SweepRun* out);

// Sets what every benchmark that starts mpirun as root, or several ranks on few cores, needs.
void prepare_environment();

// A fresh directory under /tmp named after `tag`; empty on failure (reported).
std::string make_temp_dir(const std::string& tag);

std::string read_file(const std::string& path);

}  // namespace trellis::bench
