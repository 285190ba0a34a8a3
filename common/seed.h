#pragma once
// All randomness derives from the sweep seed and the trial id: mix them here, never with
// time or addresses, so the same spec and seed give the same trials.

#include <cstdint>
#include <initializer_list>

namespace trellis {

// SplitMix64 finaliser: a bijective mix with good avalanche.
constexpr std::uint64_t mix64(std::uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

// A seed for one purpose derived from a parent seed and a list of integers (trial, epoch...).
inline std::uint64_t derive_seed(std::uint64_t parent, std::initializer_list<std::uint64_t> parts) {
  std::uint64_t s = mix64(parent);
  for (std::uint64_t p : parts) s = mix64(s ^ mix64(p));
  return s;
}

}  // namespace trellis
