#pragma once
// Preemption: SIGTERM (Slurm preemption or time limit; mpirun and srun forward it to every
// rank), or SIGUSR1 (the warning of `sbatch --signal=USR1@SECONDS`, sent to the step's tasks
// before the time limit), asks the group to checkpoint now and leave. Only a flag is raised;
// the trainer folds each rank's flag into the step's all-reduce, so the whole group stops after
// the same step.
//
// No signal lands on a thread that computes with oneDNN: the signals are blocked in the main
// thread and every thread started after it, and taken by sigwait() on a thread of the watch's
// own (or by a handler on a thread started before main, such as OpenBLAS's pool). A handler's
// frame is pushed onto whichever thread the signal interrupts, and oneDNN 2.6's JIT GEMM
// kernels keep data below the stack pointer past the red zone, so a frame pushed mid-product
// corrupted the heap (tests/worker/preemption_probe.cc).

namespace trellis::worker {

// Blocks SIGTERM and SIGUSR1 in this thread and starts the thread that waits for them. Call
// once, first thing in main: before MPI_Init and before any other thread starts, since threads
// inherit the mask and a thread that left the signals unblocked would take them with their
// default action (the process would end without a checkpoint).
void start_preemption_watch();

// True once this process got SIGTERM or SIGUSR1.
bool preemption_requested();

}  // namespace trellis::worker
