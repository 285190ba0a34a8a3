#pragma once
// Which vector instruction set the training step's elementwise kernels (kernels/elementwise.h)
// and the optimizer's fused pass run with. The binaries are built for baseline x86-64 (no
// -march); the wider variants are compiled per function (GCC `target` attributes) and chosen
// at run time from the CPU's features alone, never from a timing, so one node always takes the
// same path. Provenance records the path's name.
//
// Every path computes the same bits: the kernels use only IEEE adds, multiplies, divides,
// square roots, compares and selects, element by element, with no fused multiply-add, and the
// same summation order (column sums run over the batch in column order at every vector width).
// kernels/elementwise.cc and optimizer.cc are built with -ffp-contract=off for this: GCC's C++
// default contracts a * b + c into an FMA in any function whose target has FMA.
// So a trial resumed on a node with another path continues with the same arithmetic, and
// ranks on different CPUs stay identical.

#include "common/status.h"

namespace trellis::worker {

enum class VectorPath { kGeneric, kAvx2, kAvx512 };

// The widest path this CPU runs: kAvx512 with AVX-512 F+VL+BW+DQ, kAvx2 with AVX2+FMA (FMA
// is not used, but it is what separates the Haswell-class cores this variant is tuned for),
// else kGeneric (baseline SSE2 on x86-64; every other architecture).
[[nodiscard]] VectorPath detect_vector_path();
[[nodiscard]] bool vector_path_supported(VectorPath path);

// The path in use: detect_vector_path() unless set_vector_path() chose another.
[[nodiscard]] VectorPath vector_path();
// "generic" | "avx2" | "avx512".
[[nodiscard]] const char* vector_path_name(VectorPath path);

// Runs the kernels on `path` from now on (tests compare the variants this way); fails, and
// changes nothing, when this CPU lacks the path's instructions.
[[nodiscard]] Status set_vector_path(VectorPath path);

}  // namespace trellis::worker
