#pragma once
// NormalSource: standard normals by Box-Muller over our own uniforms from std::mt19937_64.
// std::normal_distribution's algorithm is unspecified and differs between standard libraries;
// this one gives the same weights for the same seed everywhere (every model's init uses it).

#include <cmath>
#include <cstdint>
#include <random>

namespace trellis::worker {

class NormalSource {
 public:
  explicit NormalSource(std::uint64_t seed) : rng_(seed) {}
  double next() {
    if (has_spare_) {
      has_spare_ = false;
      return spare_;
    }
    const double u1 = uniform_open(), u2 = uniform_open();
    const double r = std::sqrt(-2.0 * std::log(u1));
    spare_ = r * std::sin(kTwoPi * u2);
    has_spare_ = true;
    return r * std::cos(kTwoPi * u2);
  }

 private:
  static constexpr double kTwoPi = 6.283185307179586476925286766559;
  // Uniform in (0, 1): the top 53 bits, shifted half a step so log(u) is always finite.
  double uniform_open() { return (static_cast<double>(rng_() >> 11) + 0.5) * 0x1.0p-53; }

  std::mt19937_64 rng_;
  bool has_spare_ = false;
  double spare_ = 0;
};

}  // namespace trellis::worker
