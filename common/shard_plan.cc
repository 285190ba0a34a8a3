#include "common/shard_plan.h"

#include <algorithm>
#include <numeric>
#include <random>
#include <stdexcept>

#include "common/seed.h"

namespace trellis {

RowRange split_rows(std::int64_t rows, int parts, int index) {
  const std::int64_t base = rows / parts, extra = rows % parts;
  RowRange r;
  r.begin = index * base + std::min<std::int64_t>(index, extra);
  r.end = r.begin + base + (index < extra ? 1 : 0);
  return r;
}

bool is_validation_row(std::uint64_t seed, std::int64_t row, double validation_fraction) {
  if (validation_fraction <= 0) return false;
  const std::uint64_t h = derive_seed(seed, {0x7661u /* "va" */, static_cast<std::uint64_t>(row)});
  // Top 53 bits as a uniform double in [0, 1).
  return static_cast<double>(h >> 11) * 0x1.0p-53 < validation_fraction;
}

ShardPlan::ShardPlan(std::int64_t train_file_rows, double validation_fraction, std::uint64_t seed,
                     int global_batch, int ranks)
    : file_rows_(train_file_rows), seed_(seed), global_batch_(global_batch), ranks_(ranks) {
  if (ranks < 1 || global_batch < 1) throw std::invalid_argument("ShardPlan: ranks and batch >= 1");
  shards_ = kDefaultVirtualShards;
  if (shards_ % ranks != 0) shards_ = std::lcm(kDefaultVirtualShards, ranks);
  train_rows_.resize(shards_);
  val_rows_.resize(shards_);
  for (int v = 0; v < shards_; ++v) {
    const RowRange r = split_rows(file_rows_, shards_, v);
    for (std::int64_t row = r.begin; row < r.end; ++row)
      (is_validation_row(seed_, row, validation_fraction) ? val_rows_ : train_rows_)[v].push_back(row);
  }
  steps_per_epoch_ = -1;
  for (int v = 0; v < shards_; ++v) {
    const int b = shard_batch(v);
    if (b == 0) continue;
    const std::int64_t steps = static_cast<std::int64_t>(train_rows_[v].size()) / b;
    steps_per_epoch_ = steps_per_epoch_ < 0 ? steps : std::min(steps_per_epoch_, steps);
  }
  if (steps_per_epoch_ < 0) steps_per_epoch_ = 0;
}

std::pair<int, int> ShardPlan::rank_shards(int rank) const {
  const int per_rank = shards_ / ranks_;
  return {rank * per_rank, (rank + 1) * per_rank};
}

RowRange ShardPlan::rank_rows(int rank) const {
  const auto [first, last] = rank_shards(rank);
  return RowRange{split_rows(file_rows_, shards_, first).begin,
                  split_rows(file_rows_, shards_, last - 1).end};
}

int ShardPlan::shard_batch(int v) const {
  return global_batch_ / shards_ + (v < global_batch_ % shards_ ? 1 : 0);
}

std::vector<std::int64_t> ShardPlan::epoch_order(int v, int epoch) const {
  std::vector<std::int64_t> order = train_rows_[v];
  std::mt19937_64 rng(derive_seed(seed_, {0x7368u /* "sh" */, static_cast<std::uint64_t>(epoch),
                                          static_cast<std::uint64_t>(v)}));
  // Fisher-Yates with our own index draw: std::shuffle's use of the engine is unspecified and
  // differs between standard libraries, which would break cross-machine reproducibility.
  for (std::size_t i = order.size(); i > 1; --i) std::swap(order[i - 1], order[rng() % i]);
  return order;
}

std::int64_t ShardPlan::train_rows() const {
  std::int64_t n = 0;
  for (const auto& t : train_rows_) n += static_cast<std::int64_t>(t.size());
  return n;
}

std::int64_t ShardPlan::validation_rows() const {
  std::int64_t n = 0;
  for (const auto& t : val_rows_) n += static_cast<std::int64_t>(t.size());
  return n;
}

}  // namespace trellis
