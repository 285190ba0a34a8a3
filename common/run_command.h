#pragma once
// Runs a command to its end and captures what it printed: the Slurm clients (sbatch, scancel,
// squeue, scontrol) that the coordinator and the workers call.

#include <string>
#include <vector>

#include "common/status.h"

namespace trellis {

// Runs `argv` (found on PATH, stdin from /dev/null); `output`: stdout and stderr; `code`: its
// exit code (128 + signal when killed). An error when it could not be started at all.
[[nodiscard]] Status run_command(const std::vector<std::string>& argv, std::string* output,
                                 int* code);

}  // namespace trellis
