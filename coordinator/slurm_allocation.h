#pragma once
// The Slurm allocation this process runs in, read from the environment Slurm gives a batch
// script or an salloc shell (SLURM_JOB_ID, SLURM_JOB_NUM_NODES, SLURM_JOB_CPUS_PER_NODE,
// SLURM_NTASKS, SLURMD_NODENAME). `trellis run` starts its worker groups inside it with srun.

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace trellis::coordinator {

struct SlurmAllocation {
  std::string job_id;
  int nodes = 0;
  std::vector<int> cpus_per_node;  // one entry per node, in node order
  int tasks = 0;                   // SLURM_NTASKS; 0 when the job did not ask for tasks
  std::string node_name;           // this node (the batch host), as the others reach it
  // The CPUs of the smallest node: how many ranks of a group one node can take.
  int min_cpus_per_node() const;
  int total_cpus() const;
};

// Slurm's compressed CPU list, "4(x2),2" -> {4, 4, 2}.
[[nodiscard]] Status parse_cpus_per_node(std::string_view text, std::vector<int>* out);

// The allocation of this process, or nullopt outside one (no SLURM_JOB_ID); an error naming the
// variable when one Slurm sets is malformed or missing.
[[nodiscard]] Status current_allocation(std::optional<SlurmAllocation>* out);

}  // namespace trellis::coordinator
