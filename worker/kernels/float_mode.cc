#include "worker/kernels/float_mode.h"

#include <xmmintrin.h>

namespace trellis::worker::kernels {

namespace {
constexpr unsigned kFtz = 1u << 15;  // flush results that would be subnormal to zero
constexpr unsigned kDaz = 1u << 6;   // read subnormal operands as zero
}  // namespace

void flush_denormals_in_this_thread() { _mm_setcsr(_mm_getcsr() | kFtz | kDaz); }

bool denormals_flushed_in_this_thread() {
  return (_mm_getcsr() & (kFtz | kDaz)) == (kFtz | kDaz);
}

}  // namespace trellis::worker::kernels
