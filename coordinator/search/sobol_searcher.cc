#include "coordinator/search/sobol_searcher.h"

#include <bit>
#include <random>

#include "common/seed.h"

namespace trellis::coordinator {
namespace {

// Dimensions 2..40 of new-joe-kuo-6.21201 (S. Joe and F. Y. Kuo, "Constructing Sobol sequences
// with better two-dimensional projections", SIAM J. Sci. Comput. 30, 2008): the degree s of
// the primitive polynomial, its inner coefficients a, and the initial direction numbers m_1..m_s.
// Dimension 1 has m_k = 1 for every k.
struct JoeKuoRow {
  int s;
  std::uint32_t a;
  std::array<std::uint32_t, 8> m;
};
constexpr JoeKuoRow kJoeKuo[SobolSearcher::kMaxDimensions - 1] = {
    {1, 0, {1}},                                 {2, 1, {1, 3}},
    {3, 1, {1, 3, 1}},                           {3, 2, {1, 1, 1}},
    {4, 1, {1, 1, 3, 3}},                        {4, 4, {1, 3, 5, 13}},
    {5, 2, {1, 1, 5, 5, 17}},                    {5, 4, {1, 1, 5, 5, 5}},
    {5, 7, {1, 1, 7, 11, 19}},                   {5, 11, {1, 1, 5, 1, 1}},
    {5, 13, {1, 1, 1, 3, 11}},                   {5, 14, {1, 3, 5, 5, 31}},
    {6, 1, {1, 3, 3, 9, 7, 49}},                 {6, 13, {1, 1, 1, 15, 21, 21}},
    {6, 16, {1, 3, 1, 13, 27, 49}},              {6, 19, {1, 1, 1, 15, 7, 5}},
    {6, 22, {1, 3, 1, 15, 13, 25}},              {6, 25, {1, 1, 5, 5, 19, 61}},
    {7, 1, {1, 3, 7, 11, 23, 15, 103}},          {7, 4, {1, 3, 7, 13, 13, 15, 69}},
    {7, 7, {1, 1, 3, 13, 7, 35, 63}},            {7, 8, {1, 3, 5, 9, 1, 25, 53}},
    {7, 14, {1, 3, 1, 13, 9, 35, 107}},          {7, 19, {1, 3, 1, 5, 27, 61, 31}},
    {7, 21, {1, 1, 5, 11, 19, 41, 61}},          {7, 28, {1, 3, 5, 3, 3, 13, 69}},
    {7, 31, {1, 1, 7, 13, 1, 19, 1}},            {7, 32, {1, 3, 7, 5, 13, 19, 59}},
    {7, 37, {1, 1, 3, 9, 25, 29, 41}},           {7, 41, {1, 3, 5, 13, 23, 1, 55}},
    {7, 42, {1, 3, 7, 3, 13, 59, 17}},           {7, 50, {1, 3, 1, 3, 5, 53, 69}},
    {7, 55, {1, 1, 5, 5, 23, 33, 13}},           {7, 56, {1, 1, 7, 7, 1, 61, 123}},
    {7, 59, {1, 1, 7, 9, 13, 61, 49}},           {7, 62, {1, 3, 3, 5, 3, 55, 33}},
    {8, 14, {1, 3, 1, 15, 31, 13, 49, 245}},     {8, 21, {1, 3, 5, 15, 31, 59, 63, 97}},
    {8, 22, {1, 3, 1, 11, 11, 11, 77, 249}},
};

using Directions = std::array<std::uint32_t, SobolSearcher::kBits>;

// v_k = m_k / 2^k as a 32-bit binary fraction; past the table, Bratley & Fox's recurrence
// v_k = a_1 v_{k-1} ^ ... ^ a_{s-1} v_{k-s+1} ^ v_{k-s} ^ (v_{k-s} >> s).
Directions directions(std::size_t dim) {
  constexpr int kBits = SobolSearcher::kBits;
  Directions v{};
  if (dim == 0) {
    for (int k = 0; k < kBits; ++k) v[k] = 1u << (kBits - 1 - k);
    return v;
  }
  const JoeKuoRow& row = kJoeKuo[dim - 1];
  for (int k = 0; k < row.s; ++k) v[k] = row.m[k] << (kBits - 1 - k);
  for (int k = row.s; k < kBits; ++k) {
    v[k] = v[k - row.s] ^ (v[k - row.s] >> row.s);
    for (int j = 1; j < row.s; ++j)
      if ((row.a >> (row.s - 1 - j)) & 1u) v[k] ^= v[k - j];
  }
  return v;
}

// Linear matrix scramble: each direction number, as a column of binary digits (most
// significant first), is multiplied by a random lower-triangular matrix with a unit diagonal,
// so output digit r depends on input digits 1..r only and the net property survives.
void scramble_directions(Directions* v, std::mt19937_64& rng) {
  constexpr int kBits = SobolSearcher::kBits;
  std::array<std::uint32_t, kBits> rows{};  // row r: which input digits make output digit r
  for (int r = 0; r < kBits; ++r) {
    const std::uint32_t above = r == 0 ? 0u : ~0u << (kBits - r);
    rows[r] = (static_cast<std::uint32_t>(rng()) & above) | (1u << (kBits - 1 - r));
  }
  for (std::uint32_t& x : *v) {
    std::uint32_t y = 0;
    for (int r = 0; r < kBits; ++r)
      y |= static_cast<std::uint32_t>(std::popcount(x & rows[r]) & 1) << (kBits - 1 - r);
    x = y;
  }
}

}  // namespace

SobolSearcher::SobolSearcher(std::vector<SearchParam> space, std::uint64_t seed, bool scramble)
    : space_(order_by_conditions(std::move(space))) {
  std::mt19937_64 rng(derive_seed(seed, {0x736f62u /* "sob" */}));
  for (std::size_t d = 0; d < space_.size(); ++d) {
    directions_.push_back(directions(d));
    shifts_.push_back(0);
    if (!scramble) continue;
    scramble_directions(&directions_.back(), rng);
    shifts_.back() = static_cast<std::uint32_t>(rng());
  }
}

std::optional<ParamMap> SobolSearcher::propose(std::int32_t number) {
  // Gray-code order: point n is the XOR of the direction numbers at the set bits of n ^ (n >> 1),
  // so any n is reached directly.
  const auto n = static_cast<std::uint32_t>(number);
  const std::uint32_t gray = n ^ (n >> 1);
  ParamMap params;
  for (std::size_t d = 0; d < space_.size(); ++d) {
    std::uint32_t x = shifts_[d];
    for (int k = 0; k < kBits; ++k)
      if ((gray >> k) & 1u) x ^= directions_[d][k];
    if (is_active(space_[d], params))
      params[space_[d].name] = domain_value(space_[d].domain, x * 0x1.0p-32);
  }
  return params;
}

}  // namespace trellis::coordinator
