#pragma once
// Checkpoint: everything needed to continue a trial exactly where an epoch ended, in one file.
//
// The trainer's randomness is stateless by design: data order derives from (seed, epoch),
// dropout masks from (seed, step, row), the learning rate from the step. So "RNG state" is the
// epoch and optimizer step counters, and weights plus optimizer buffers complete the state;
// resuming from epoch k replays epochs k+1.. exactly as the uninterrupted run would.
//
// File layout (little endian):
//   "TRLSCKPT" | u32 version | u32 crc32 of everything after this field |
//   i64 trial | i32 epoch | i64 step | f64 partial_loss | u64 seed | i64 optimizer_steps |
//   str fingerprint | u32 metric count | { str name | f64 value }... |
//   u32 buffer count | { str name | u64 floats | f32 data... }...
// where str = u32 length + bytes. Writes go to PATH.tmp, are fsynced, then renamed over PATH,
// so a crash mid-write leaves the previous checkpoint intact.

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/status.h"

namespace trellis::worker {

struct Checkpoint {
  std::int64_t trial = 0;
  std::int32_t epoch = 0;  // the last completed epoch
  // Steps already taken in epoch + 1 (a checkpoint taken mid-epoch at preemption), and the
  // sum of their losses, so the resumed epoch reports the same train_loss.
  std::int64_t step = 0;
  double partial_loss = 0;
  std::uint64_t seed = 0;
  std::int64_t optimizer_steps = 0;
  // What the state belongs to (model shape, optimizer, data layout); a resume with another
  // fingerprint is refused instead of silently loading mismatched buffers.
  std::string fingerprint;
  // The last completed epoch's metrics (train_loss and the validation metrics), so a trial resumed
  // after its final epoch still reports them with its final metrics.
  std::vector<std::pair<std::string, double>> metrics;
  std::vector<std::pair<std::string, std::vector<float>>> buffers;  // "params", "adam.m", ...
  // The GEMM the state was computed with (kernels::GemmChoice::summary(), "" in a version-1
  // file): a resume on a node that chooses another logs it, since the results then agree only
  // up to float summation order.
  std::string compute;

  const std::vector<float>* find(const std::string& name) const;
};

[[nodiscard]] Status write_checkpoint(const std::string& path, const Checkpoint& checkpoint);
// Verifies magic, version and checksum; every failure names the file and what is wrong.
[[nodiscard]] Status read_checkpoint(const std::string& path, Checkpoint* out);

// The file's bytes, and back: a trial's final model travels to the coordinator in this form
// (Done::model). `what` names the bytes in errors ("the model of trial 7").
std::string encode_checkpoint(const Checkpoint& checkpoint);
[[nodiscard]] Status decode_checkpoint(std::string_view bytes, const std::string& what,
                                       Checkpoint* out);

}  // namespace trellis::worker
