#include "common/shard_plan.h"

#include <algorithm>
#include <numeric>
#include <queue>
#include <random>
#include <stdexcept>
#include <string>

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

int virtual_shards(int ranks) {
  return kDefaultVirtualShards % ranks == 0 ? kDefaultVirtualShards
                                            : std::lcm(kDefaultVirtualShards, ranks);
}

void ShardPlan::check_arguments() const {
  if (ranks_ < 1 || global_batch_ < 1) throw std::invalid_argument("ShardPlan: ranks and batch >= 1");
}

ShardPlan::ShardPlan(std::int64_t train_file_rows, double validation_fraction, std::uint64_t seed,
                     int global_batch, int ranks)
    : file_rows_(train_file_rows), seed_(seed), global_batch_(global_batch), ranks_(ranks) {
  check_arguments();
  shards_ = virtual_shards(ranks);
  train_rows_.resize(shards_);
  val_rows_.resize(shards_);
  train_count_.resize(shards_);
  val_count_.resize(shards_);
  for (int v = 0; v < shards_; ++v) {
    const RowRange r = split_rows(file_rows_, shards_, v);
    for (std::int64_t row = r.begin; row < r.end; ++row)
      (is_validation_row(seed_, row, validation_fraction) ? val_rows_ : train_rows_)[v].push_back(row);
    train_count_[v] = static_cast<std::int64_t>(train_rows_[v].size());
    val_count_[v] = static_cast<std::int64_t>(val_rows_[v].size());
  }
  interleave();
}

ShardPlan::ShardPlan(const ShardCounts& counts, int rank,
                     std::vector<std::vector<std::int64_t>> own_train_rows,
                     std::vector<std::vector<std::int64_t>> own_validation_rows,
                     std::uint64_t seed, int global_batch, int ranks)
    : file_rows_(0), seed_(seed), global_batch_(global_batch), ranks_(ranks) {
  check_arguments();
  shards_ = virtual_shards(ranks);
  if (static_cast<int>(counts.train.size()) != shards_ ||
      static_cast<int>(counts.validation.size()) != shards_)
    throw std::invalid_argument("ShardPlan: counts must cover every virtual shard");
  if (rank < 0 || rank >= ranks) throw std::invalid_argument("ShardPlan: rank out of range");
  train_count_ = counts.train;
  val_count_ = counts.validation;
  train_rows_.resize(shards_);
  val_rows_.resize(shards_);
  const auto [first, last] = rank_shards(rank);
  if (static_cast<int>(own_train_rows.size()) != last - first ||
      static_cast<int>(own_validation_rows.size()) != last - first)
    throw std::invalid_argument("ShardPlan: one row list per owned shard");
  for (int v = first; v < last; ++v) {
    train_rows_[v] = std::move(own_train_rows[v - first]);
    val_rows_[v] = std::move(own_validation_rows[v - first]);
    // A count that disagrees with the rows would make rank_epoch_rows index past the rows.
    if (static_cast<std::int64_t>(train_rows_[v].size()) != train_count_[v] ||
        static_cast<std::int64_t>(val_rows_[v].size()) != val_count_[v])
      throw std::invalid_argument("ShardPlan: shard " + std::to_string(v) +
                                  " rows disagree with its counts");
  }
  interleave();
}

void ShardPlan::interleave() {
  steps_per_epoch_ = train_rows() / global_batch_;
  // Merge the shards by the key (2k + 1) / (2 n_v) of their k-th row, compared exactly in
  // integers (k and n are < 2^31, so the products fit in 64 bits); ties go to the lower shard.
  const std::int64_t used = steps_per_epoch_ * global_batch_;
  position_shard_.reserve(static_cast<std::size_t>(used));
  std::vector<std::int64_t> next(shards_, 0);
  const auto before = [&](int a, int b) {  // priority_queue: true when a comes after b
    const std::int64_t na = train_count_[a], nb = train_count_[b];
    const std::int64_t ka = (2 * next[a] + 1) * nb, kb = (2 * next[b] + 1) * na;
    return ka != kb ? ka > kb : a > b;
  };
  std::priority_queue<int, std::vector<int>, decltype(before)> heads(before);
  for (int v = 0; v < shards_; ++v)
    if (train_count_[v] > 0) heads.push(v);
  while (static_cast<std::int64_t>(position_shard_.size()) < used) {
    const int v = heads.top();
    heads.pop();
    position_shard_.push_back(v);
    if (++next[v] < train_count_[v]) heads.push(v);
  }
}

std::pair<int, int> ShardPlan::rank_shards(int rank) const {
  const int per_rank = shards_ / ranks_;
  return {rank * per_rank, (rank + 1) * per_rank};
}

RowRange ShardPlan::rank_rows(int rank) const {
  if (file_rows_ == 0) return RowRange{};
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
  return std::accumulate(train_count_.begin(), train_count_.end(), std::int64_t{0});
}

std::int64_t ShardPlan::validation_rows() const {
  return std::accumulate(val_count_.begin(), val_count_.end(), std::int64_t{0});
}

}  // namespace trellis
