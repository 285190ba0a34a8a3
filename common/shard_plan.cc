#include "common/shard_plan.h"

#include <algorithm>
#include <numeric>
#include <queue>
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
  steps_per_epoch_ = train_rows() / global_batch_;

  // Merge the shards by the key (2k + 1) / (2 n_v) of their k-th row, compared exactly in
  // integers (k and n are < 2^31, so the products fit in 64 bits); ties go to the lower shard.
  const std::int64_t used = steps_per_epoch_ * global_batch_;
  position_shard_.reserve(static_cast<std::size_t>(used));
  std::vector<std::int64_t> next(shards_, 0);
  const auto before = [&](int a, int b) {  // priority_queue: true when a comes after b
    const auto na = static_cast<std::int64_t>(train_rows_[a].size());
    const auto nb = static_cast<std::int64_t>(train_rows_[b].size());
    const std::int64_t ka = (2 * next[a] + 1) * nb, kb = (2 * next[b] + 1) * na;
    return ka != kb ? ka > kb : a > b;
  };
  std::priority_queue<int, std::vector<int>, decltype(before)> heads(before);
  for (int v = 0; v < shards_; ++v)
    if (!train_rows_[v].empty()) heads.push(v);
  while (static_cast<std::int64_t>(position_shard_.size()) < used) {
    const int v = heads.top();
    heads.pop();
    position_shard_.push_back(v);
    if (++next[v] < static_cast<std::int64_t>(train_rows_[v].size())) heads.push(v);
  }
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

std::vector<std::int64_t> ShardPlan::epoch_order(int v, int epoch) const {
  std::vector<std::int64_t> order = train_rows_[v];
  std::mt19937_64 rng(derive_seed(seed_, {0x7368u /* "sh" */, static_cast<std::uint64_t>(epoch),
                                          static_cast<std::uint64_t>(v)}));
  // Fisher-Yates with our own index draw: std::shuffle's use of the engine is unspecified and
  // differs between standard libraries, which would break cross-machine reproducibility.
  for (std::size_t i = order.size(); i > 1; --i) std::swap(order[i - 1], order[rng() % i]);
  return order;
}

int ShardPlan::max_step_rows(int rank) const {
  const auto [first, last] = rank_shards(rank);
  int most = 0;
  for (std::int64_t s = 0; s < steps_per_epoch_; ++s) {
    int n = 0;
    for (std::int64_t p = s * global_batch_; p < (s + 1) * global_batch_; ++p)
      n += position_shard_[p] >= first && position_shard_[p] < last;
    most = std::max(most, n);
  }
  return most;
}

std::vector<std::vector<std::int64_t>> ShardPlan::rank_epoch_rows(int rank, int epoch) const {
  const auto [first, last] = rank_shards(rank);
  std::vector<std::vector<std::int64_t>> orders;
  for (int v = first; v < last; ++v) orders.push_back(epoch_order(v, epoch));
  std::vector<std::size_t> taken(orders.size(), 0);
  std::vector<std::vector<std::int64_t>> steps(static_cast<std::size_t>(steps_per_epoch_));
  for (std::size_t p = 0; p < position_shard_.size(); ++p) {
    const int v = position_shard_[p];
    if (v < first || v >= last) continue;
    const auto i = static_cast<std::size_t>(v - first);
    steps[p / static_cast<std::size_t>(global_batch_)].push_back(orders[i][taken[i]++]);
  }
  return steps;
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
