#include "worker/kernels/vector_path.h"

#include <atomic>
#include <string>

namespace trellis::worker {
namespace {

// -1: not chosen yet (the first vector_path() detects).
std::atomic<int> g_path{-1};

}  // namespace

VectorPath detect_vector_path() {
#if defined(__x86_64__) || defined(__i386__)
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
      __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq"))
    return VectorPath::kAvx512;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return VectorPath::kAvx2;
#endif
  return VectorPath::kGeneric;
}

bool vector_path_supported(VectorPath path) {
  return static_cast<int>(path) <= static_cast<int>(detect_vector_path());
}

VectorPath vector_path() {
  int p = g_path.load(std::memory_order_relaxed);
  if (p < 0) {
    p = static_cast<int>(detect_vector_path());
    g_path.store(p, std::memory_order_relaxed);
  }
  return static_cast<VectorPath>(p);
}

const char* vector_path_name(VectorPath path) {
  switch (path) {
    case VectorPath::kGeneric:
      return "generic";
    case VectorPath::kAvx2:
      return "avx2";
    case VectorPath::kAvx512:
      return "avx512";
  }
  return "unknown";
}

Status set_vector_path(VectorPath path) {
  if (!vector_path_supported(path))
    return Status::Error(std::string("vector path ") + vector_path_name(path) +
                         " needs instructions this CPU lacks (it supports up to " +
                         vector_path_name(detect_vector_path()) + ")");
  g_path.store(static_cast<int>(path), std::memory_order_relaxed);
  return Status::Ok();
}

}  // namespace trellis::worker
