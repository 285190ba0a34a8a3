// The gradient all-reduce on real ranks. Run under mpirun -np 2 and -np 4 (ctest does both);
// on one rank the sums are trivially the input, which still checks the single-rank paths.
// Simulated nodes (GroupCommOptions::simulated_ranks_per_node) let one machine exercise the
// multi-node hierarchical path.

#include <gtest/gtest.h>
#include <mpi.h>

#include <climits>
#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
#include <string>
#include <tuple>
#include <vector>

#include "worker/collectives.h"

namespace trellis::worker {
namespace {

int world_rank() {
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  return rank;
}

int world_size() {
  int size = 1;
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  return size;
}

// Not exactly representable, different per rank and per element, so summation order shows.
float input(int rank, std::size_t i) {
  return static_cast<float>(std::sin(0.37 * static_cast<double>(i) + 1.3 * rank) * (1 + rank));
}

std::unique_ptr<GroupComm> make_group(int simulated_ranks_per_node) {
  GroupCommOptions options;
  options.simulated_ranks_per_node = simulated_ranks_per_node;
  std::unique_ptr<GroupComm> group;
  Status s = GroupComm::Create(MPI_COMM_WORLD, options, &group);
  EXPECT_TRUE(s.ok()) << s.message();
  return group;
}

// True on every rank iff every rank holds the same bytes as rank 0.
bool identical_on_all_ranks(const std::vector<float>& data) {
  std::vector<float> root(data);
  MPI_Bcast(root.data(), static_cast<int>(root.size()), MPI_FLOAT, 0, MPI_COMM_WORLD);
  int same = std::memcmp(root.data(), data.data(), data.size() * sizeof(float)) == 0 ? 1 : 0;
  int all_same = 0;
  MPI_Allreduce(&same, &all_same, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
  return all_same == 1;
}

TEST(Collectives, ParsesAlgorithmNames) {
  AllreduceAlgorithm a = AllreduceAlgorithm::kFlat;
  ASSERT_TRUE(parse_allreduce_algorithm("auto", &a).ok());
  EXPECT_EQ(a, AllreduceAlgorithm::kAuto);
  ASSERT_TRUE(parse_allreduce_algorithm("hierarchical", &a).ok());
  EXPECT_EQ(a, AllreduceAlgorithm::kHierarchical);
  ASSERT_TRUE(parse_allreduce_algorithm("flat", &a).ok());
  EXPECT_EQ(a, AllreduceAlgorithm::kFlat);
  EXPECT_EQ(to_string(AllreduceAlgorithm::kHierarchical), "hierarchical");

  Status bad = parse_allreduce_algorithm("ring", &a);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.message().find("'ring'"), std::string::npos) << bad.message();
  EXPECT_NE(bad.message().find("hierarchical"), std::string::npos) << bad.message();
}

TEST(Collectives, GroupShapeOnOneMachine) {
  auto group = make_group(0);
  ASSERT_NE(group, nullptr);
  EXPECT_EQ(group->size(), world_size());
  EXPECT_EQ(group->rank(), world_rank());
  EXPECT_EQ(group->node_count(), 1);  // mpirun here starts every rank on this machine
  EXPECT_EQ(group->local_size(), world_size());
  EXPECT_EQ(group->leaders() != MPI_COMM_NULL, group->local_rank() == 0);
  // One node: reducing inside the node first cannot save anything.
  EXPECT_EQ(group->resolve(AllreduceAlgorithm::kAuto), AllreduceAlgorithm::kFlat);
  EXPECT_EQ(group->resolve(AllreduceAlgorithm::kHierarchical), AllreduceAlgorithm::kHierarchical);
}

TEST(Collectives, AutoPicksHierarchicalOnlyForSeveralNodesWithSeveralRanks) {
  // One rank per node: many nodes but nothing to reduce locally.
  auto spread = make_group(1);
  ASSERT_NE(spread, nullptr);
  EXPECT_EQ(spread->node_count(), world_size());
  EXPECT_EQ(spread->resolve(AllreduceAlgorithm::kAuto), AllreduceAlgorithm::kFlat);

  auto paired = make_group(2);
  ASSERT_NE(paired, nullptr);
  EXPECT_EQ(paired->node_count(), (world_size() + 1) / 2);
  const bool pays = world_size() > 2;
  EXPECT_EQ(paired->resolve(AllreduceAlgorithm::kAuto),
            pays ? AllreduceAlgorithm::kHierarchical : AllreduceAlgorithm::kFlat);
}

// (algorithm, simulated ranks per node, buffer size)
class AllreduceSums
    : public ::testing::TestWithParam<std::tuple<AllreduceAlgorithm, int, std::size_t>> {};

TEST_P(AllreduceSums, SumIsCorrectAndIdenticalOnEveryRank) {
  const auto [algorithm, ranks_per_node, count] = GetParam();
  auto group = make_group(ranks_per_node);
  ASSERT_NE(group, nullptr);
  const int rank = world_rank(), size = world_size();

  std::vector<float> data(count);
  for (std::size_t i = 0; i < count; ++i) data[i] = input(rank, i);
  AllreduceOptions options;
  options.data = data.data();
  options.count = count;
  options.algorithm = algorithm;
  Status s = allreduce_gradients(*group, options);
  ASSERT_TRUE(s.ok()) << s.message();

  std::size_t wrong = 0, first_wrong = 0;
  for (std::size_t i = 0; i < count; ++i) {
    double expected = 0, magnitude = 0;
    for (int r = 0; r < size; ++r) {
      expected += input(r, i);
      magnitude += std::fabs(input(r, i));
    }
    if (std::fabs(data[i] - expected) > 1e-6 * magnitude + 1e-7) {
      if (wrong++ == 0) first_wrong = i;
    }
  }
  EXPECT_EQ(wrong, 0u) << "first wrong element " << first_wrong << " of " << count;
  EXPECT_TRUE(identical_on_all_ranks(data));
}

INSTANTIATE_TEST_SUITE_P(
    Collectives, AllreduceSums,
    ::testing::Combine(::testing::Values(AllreduceAlgorithm::kAuto, AllreduceAlgorithm::kFlat,
                                         AllreduceAlgorithm::kHierarchical),
                       ::testing::Values(0, 1, 2),
                       ::testing::Values(std::size_t{1}, std::size_t{7}, std::size_t{1000},
                                         std::size_t{1} << 20)),
    [](const auto& info) {
      return std::string(to_string(std::get<0>(info.param))) + "_node" +
             std::to_string(std::get<1>(info.param)) + "_n" +
             std::to_string(std::get<2>(info.param));
    });

TEST(Collectives, FlatAndHierarchicalAgreeUpToRounding) {
  auto group = make_group(2);
  ASSERT_NE(group, nullptr);
  const std::size_t count = 4096;
  std::vector<float> flat(count), hier(count);
  for (std::size_t i = 0; i < count; ++i) flat[i] = hier[i] = input(world_rank(), i);
  ASSERT_TRUE(allreduce_flat(*group, {flat.data(), count, AllreduceAlgorithm::kAuto}).ok());
  ASSERT_TRUE(allreduce_hierarchical(*group, {hier.data(), count, AllreduceAlgorithm::kAuto}).ok());
  for (std::size_t i = 0; i < count; ++i) {
    ASSERT_NEAR(flat[i], hier[i], 1e-5f * (1 + std::fabs(flat[i]))) << "element " << i;
  }
}

TEST(Collectives, EmptyBufferIsANoOpAndNullDataIsRefused) {
  auto group = make_group(0);
  ASSERT_NE(group, nullptr);
  EXPECT_TRUE(allreduce_gradients(*group, {nullptr, 0, AllreduceAlgorithm::kHierarchical}).ok());
  Status s = allreduce_gradients(*group, {nullptr, 5, AllreduceAlgorithm::kFlat});
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("null buffer"), std::string::npos) << s.message();
}

// 784-256-128-10: W_0 b_0 W_1 b_1 W_2 b_2 begin at these offsets.
const std::vector<std::size_t> kMlpLayers = {0, 200960, 233856};
constexpr std::size_t kMlpParams = 235146;

TEST(Collectives, BucketsCloseAtLayerBoundariesFromTheEnd) {
  // Back layers (32,896 + 1,290 floats) fit one 256 KiB bucket; the front layer is alone.
  EXPECT_EQ(plan_gradient_buckets(kMlpLayers, kMlpParams), (std::vector<std::size_t>{0, 200960}));
  // A bucket bigger than the model: one bucket, the fused all-reduce.
  EXPECT_EQ(plan_gradient_buckets(kMlpLayers, kMlpParams, std::size_t{1} << 30),
            (std::vector<std::size_t>{0}));
  // A tiny cap: every layer alone, none split inside.
  EXPECT_EQ(plan_gradient_buckets(kMlpLayers, kMlpParams, 4), kMlpLayers);
  // Empty layers are skipped; no layers at all is one bucket.
  EXPECT_EQ(plan_gradient_buckets(std::vector<std::size_t>{0, 10, 10}, 20, 40),
            (std::vector<std::size_t>{0, 10}));
  EXPECT_EQ(plan_gradient_buckets({}, 5), (std::vector<std::size_t>{0}));
  // A layer longer than an MPI count can say is cut into INT_MAX pieces.
  const std::size_t huge = std::size_t{INT_MAX} + 10;
  EXPECT_EQ(plan_gradient_buckets(std::vector<std::size_t>{0}, huge),
            (std::vector<std::size_t>{0, std::size_t{INT_MAX}}));
}

// Reduces `layers` of `count` floats plus a tail of 2 the way the trainer does: each layer is
// written only just before it is declared ready (NaN until then, so a bucket started early
// would sum NaN), last layer first.
std::vector<float> bucketed_sum(const GroupComm& group, const std::vector<std::size_t>& layers,
                                std::size_t count, std::size_t bucket_bytes) {
  const std::size_t tail = 2;
  std::vector<float> data(count + tail, std::numeric_limits<float>::quiet_NaN());
  BucketedAllreduce reduce(group, plan_gradient_buckets(layers, count, bucket_bytes), count);
  reduce.begin(data.data());
  for (std::size_t l = layers.size(); l-- > 0;) {
    const std::size_t end = l + 1 < layers.size() ? layers[l + 1] : count;
    for (std::size_t i = layers[l]; i < end; ++i) data[i] = input(group.rank(), i);
    Status s = reduce.ready_from(layers[l]);
    EXPECT_TRUE(s.ok()) << s.message();
  }
  for (std::size_t i = count; i < count + tail; ++i) data[i] = input(group.rank(), i);
  Status s = reduce.finish(tail);
  EXPECT_TRUE(s.ok()) << s.message();
  return data;
}

TEST(Collectives, BucketedSumIsCorrectIdenticalOnEveryRankAndRepeatsBitForBit) {
  auto group = make_group(0);
  ASSERT_NE(group, nullptr);
  // Several buckets (4 KiB cap: layers of 1,000 floats and more stand alone).
  const std::vector<std::size_t> layers = {0, 3000, 3007, 9000, 9100};
  const std::size_t count = 10000;
  EXPECT_GT(plan_gradient_buckets(layers, count, 4096).size(), 3u);
  const std::vector<float> first = bucketed_sum(*group, layers, count, 4096);
  const std::vector<float> second = bucketed_sum(*group, layers, count, 4096);
  ASSERT_EQ(first.size(), count + 2);
  std::size_t wrong = 0, first_wrong = 0;
  for (std::size_t i = 0; i < first.size(); ++i) {
    double expected = 0, magnitude = 0;
    for (int r = 0; r < world_size(); ++r) {
      expected += input(r, i);
      magnitude += std::fabs(input(r, i));
    }
    if (!(std::fabs(first[i] - expected) <= 1e-6 * magnitude + 1e-7) && wrong++ == 0) {
      first_wrong = i;
    }
  }
  EXPECT_EQ(wrong, 0u) << "first wrong element " << first_wrong;
  EXPECT_TRUE(identical_on_all_ranks(first));
  EXPECT_EQ(std::memcmp(first.data(), second.data(), first.size() * sizeof(float)), 0)
      << "the same buckets summed twice gave different bits";
}

TEST(Collectives, BucketedSumEqualsTheFusedOneUpToRounding) {
  auto group = make_group(0);
  ASSERT_NE(group, nullptr);
  const std::vector<float> bucketed = bucketed_sum(*group, kMlpLayers, kMlpParams,
                                                   kGradientBucketBytes);
  std::vector<float> fused(kMlpParams + 2);
  for (std::size_t i = 0; i < fused.size(); ++i) fused[i] = input(world_rank(), i);
  ASSERT_TRUE(allreduce_flat(*group, {fused.data(), fused.size(), AllreduceAlgorithm::kFlat}).ok());
  for (std::size_t i = 0; i < fused.size(); ++i) {
    ASSERT_NEAR(bucketed[i], fused[i], 1e-5f * (1 + std::fabs(fused[i]))) << "element " << i;
  }
}

}  // namespace
}  // namespace trellis::worker
