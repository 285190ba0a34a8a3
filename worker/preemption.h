#pragma once
// Preemption: SIGTERM (Slurm preemption or time limit; mpirun forwards it to every rank) asks
// the group to checkpoint now and leave. The handler only sets a flag; the trainer folds each
// rank's flag into the step's all-reduce, so the whole group stops after the same step.

namespace trellis::worker {

// Installs the SIGTERM handler (call once, before training).
void install_preemption_handler();

// True once this process got SIGTERM.
bool preemption_requested();

}  // namespace trellis::worker
