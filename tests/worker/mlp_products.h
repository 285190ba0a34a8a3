#pragma once
// The four GEMM shapes of a 784-256-128-10 MLP step at batch 128 (forward, weight gradient,
// input gradient, the output layer), with operands drawn from `rng` in a fixed order: what
// the GEMM probes multiply to see the kernel's bits.

#include <random>
#include <vector>

#include "worker/kernels/gemm.h"

namespace trellis::worker::testing {

struct Product {
  int m, n, k;
  bool ta, tb;
  std::vector<float> a, b;

  // c (m x n, column-major) = op(a) op(b).
  void multiply(float* c) const {
    kernels::gemm(ta, tb, m, n, k, a.data(), ta ? k : m, b.data(), tb ? n : k, 0.0f, c, m);
  }
  std::size_t out_size() const { return static_cast<std::size_t>(m) * n; }
};

// Each product's a then b, uniform in [-1, 1).
inline std::vector<Product> mlp_products(std::mt19937& rng) {
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  std::vector<Product> out;
  for (const Product& shape : {Product{256, 128, 784, false, false, {}, {}},
                               Product{256, 784, 128, false, true, {}, {}},
                               Product{256, 128, 128, true, false, {}, {}},
                               Product{10, 128, 128, false, false, {}, {}}}) {
    Product p = shape;
    p.a.resize(static_cast<std::size_t>(p.m) * p.k);
    p.b.resize(static_cast<std::size_t>(p.k) * p.n);
    for (float& x : p.a) x = u(rng);
    for (float& x : p.b) x = u(rng);
    out.push_back(std::move(p));
  }
  return out;
}

}  // namespace trellis::worker::testing
