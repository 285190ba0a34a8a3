// gemm_probe: prints, as one JSON line, the GEMM this process chose (worker/kernels/gemm.h) and
// a hash of the exact bits it computes: GEMMs at the MLP's shapes and a few Adam-free SGD steps
// of a 784-256-128-10 Mlp. kernels_test runs it as separate processes (with and without an ISA
// cap) to check that the choice and the bits are a function of the node, not of the run.

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <random>
#include <span>
#include <vector>

#include <Eigen/Core>

#include "tests/worker/mlp_products.h"
#include "worker/kernels/gemm.h"
#include "worker/models/mlp.h"

namespace {

std::uint64_t fnv(const float* p, std::size_t n, std::uint64_t h) {
  const auto* bytes = reinterpret_cast<const unsigned char*>(p);
  for (std::size_t i = 0; i < n * sizeof(float); ++i) h = (h ^ bytes[i]) * 1099511628211ull;
  return h;
}

}  // namespace

int main() {
  namespace tk = trellis::worker::kernels;
  namespace tw = trellis::worker;
  std::mt19937 rng(5);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  std::uint64_t h = 1469598103934665603ull;
  for (const tw::testing::Product& p : tw::testing::mlp_products(rng)) {
    std::vector<float> out(p.out_size());
    p.multiply(out.data());
    h = fnv(out.data(), out.size(), h);
  }
  tw::MlpShape shape;
  shape.inputs = 784;
  shape.hidden = {256, 128};
  shape.outputs = 10;
  tw::Mlp model(shape, 128);
  model.init(3);
  Eigen::MatrixXf x(784, 128);
  for (Eigen::Index i = 0; i < x.size(); ++i) x.data()[i] = 0.5f * (u(rng) + 1.0f);
  std::vector<std::int32_t> labels(128);
  for (auto& l : labels) l = static_cast<std::int32_t>(rng() % 10);
  for (int step = 0; step < 3; ++step) {
    model.forward_backward(x, std::span<const std::int32_t>(labels), tw::BatchKey{}, 1.0f / 128,
                           tw::GradMode::kAssign);
    model.params() -= 0.1f * model.grads();
  }
  h = fnv(model.params().data(), static_cast<std::size_t>(model.params().size()), h);
  const tk::GemmChoice& g = tk::gemm_choice();
  std::printf("{\"library\": \"%s\", \"kernel\": \"%s\", \"cpu\": \"%s\", \"bits\": \"%016llx\"}\n",
              g.library.c_str(), g.kernel.c_str(), g.cpu.c_str(),
              static_cast<unsigned long long>(h));
  return 0;
}
