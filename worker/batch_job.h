#pragma once
// The Slurm job a worker group runs in, as rank 0 reports it in its Hello: the job's id, its
// output file and when its time limit ends, so the coordinator gives the group only work that
// fits before then (coordinator/walltime.h).
//
// Slurm 22.05 puts no end time in a job's environment, so it is asked: `scontrol -o show job`
// gives TimeLimit and RunTime, and the end is now + (TimeLimit - RunTime).

#include <cstdint>
#include <string>
#include <string_view>

#include "common/status.h"

namespace trellis::worker {

struct BatchJob {
  std::string id;          // "123", or "120_3" for task 3 of array 120; empty outside a job
  std::string log;         // its StdOut path
  std::int64_t ends_at = 0;  // Unix seconds; 0: no limit
};

// Slurm's durations: "[days-]hours:minutes:seconds", "minutes:seconds", "UNLIMITED"
// (-1 for no limit). False when `text` is none of these.
bool parse_slurm_duration(std::string_view text, std::int64_t* seconds);

// The job of this process from Slurm's environment and scontrol; an empty id outside a job.
// An error when scontrol cannot say (the group then runs without a known limit).
[[nodiscard]] Status current_batch_job(BatchJob* out);

}  // namespace trellis::worker
