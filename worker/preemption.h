#pragma once
// Preemption: SIGTERM (Slurm preemption or time limit; mpirun and srun forward it to every
// rank), or SIGUSR1 (the warning of `sbatch --signal=USR1@SECONDS`, sent to the step's tasks
// before the time limit), asks the group to checkpoint now and leave. The handler only sets a flag; the trainer folds each
// rank's flag into the step's all-reduce, so the whole group stops after the same step.

namespace trellis::worker {

// Installs the SIGTERM and SIGUSR1 handler (call once, before training).
void install_preemption_handler();

// True once this process got SIGTERM or SIGUSR1.
bool preemption_requested();

}  // namespace trellis::worker
