#pragma once
// Denormal floats flushed to zero (MXCSR FTZ and DAZ) in the thread that calls this. Every GEMM
// library measured ran 100-250x slower on subnormal operands and none sets the mode itself, and
// training never needs magnitudes below 1.2e-38. The mode is per thread: the trainer sets it in
// its thread before the first step; threads created after that (a library's pool, started on
// its first call) inherit it from their creator on Linux/x86-64, and with one core per rank the
// libraries run in the caller's thread anyway.

namespace trellis::worker::kernels {

void flush_denormals_in_this_thread();

// Whether both FTZ and DAZ are set in the calling thread.
[[nodiscard]] bool denormals_flushed_in_this_thread();

}  // namespace trellis::worker::kernels
