#pragma once
// ShardPlan: which rows of a split each rank of a group owns, and which rows each step uses.
//
// The layout does not depend on the number of ranks, so a trial trained by 1, 2 or 4 ranks
// sees the same samples in the same steps and ends with the same weights up to float
// summation order:
//
//   * Which rows validate is given: workers pass each shard's training and validation rows as
//     the group drew them (the experiment's stratified split, worker/data/dataset.h). The
//     constructor from a row count alone picks them row by row with a hash of (seed, row).
//   * The remaining training rows fall in `shards` contiguous virtual shards of file rows.
//     Rank r of K owns virtual shards [r*V/K, (r+1)*V/K): one contiguous range of the file.
//   * An epoch is one sequence of training rows: the shards interleaved in proportion to their
//     sizes (the k-th of a shard's n rows sits at (k + 1/2) / n of the way through), each
//     shard's rows in an order shuffled per (seed, epoch, shard). Step s takes positions
//     [s*B, (s+1)*B) of that sequence; a rank trains on those from its own shards. Every
//     training row is used once per epoch, but for the fewer than B that would only fill a
//     partial last batch (a different few each epoch).
//   * Which shard fills each position does not depend on the epoch, so it is computed once.
//
// Row ids need not be row numbers: files of variable-length lines (CSV, LIBSVM) are cut into
// virtual shards by byte ranges, and a row's id is the byte offset where its line starts. Only
// the rank that read a shard knows its row ids, so such a plan is built from every shard's
// counts (exchanged between the ranks after reading) and the rank's own shards' rows. The
// interleave depends only on the counts, so both kinds of plan give the same steps.

#include <cstdint>
#include <vector>

namespace trellis {

struct RowRange {
  std::int64_t begin = 0;
  std::int64_t end = 0;  // exclusive
  std::int64_t size() const { return end - begin; }
};

// Default number of virtual shards: divisible by 1, 2, 3, 4, 6, 8, 12, 16, 24 and 48 ranks.
inline constexpr int kDefaultVirtualShards = 48;

// Every virtual shard's row counts, indexed by shard; identical on all ranks of a group.
struct ShardCounts {
  std::vector<std::int64_t> train;
  std::vector<std::int64_t> validation;
};

// The virtual shard count for a group of `ranks`: kDefaultVirtualShards when `ranks` divides
// it, else lcm(kDefaultVirtualShards, ranks). Readers need it before any plan exists.
int virtual_shards(int ranks);

// Splits [0, rows) into `parts` contiguous ranges as evenly as possible; returns range `index`.
RowRange split_rows(std::int64_t rows, int parts, int index);

// True when the row with id `row` (file row, or line start offset) of the training file belongs to the validation split.
bool is_validation_row(std::uint64_t seed, std::int64_t row, double validation_fraction);

class ShardPlan {
 public:
  // `train_file_rows`: rows in the training file. The shard count is kDefaultVirtualShards
  // when `ranks` divides it, else lcm(kDefaultVirtualShards, ranks).
  ShardPlan(std::int64_t train_file_rows, double validation_fraction, std::uint64_t seed,
            int global_batch, int ranks);
  // A plan for a file whose row ids only their readers know. `counts` covers every virtual
  // shard (virtual_shards(ranks) entries); `own_train_rows` / `own_validation_rows` hold, for
  // each shard of rank `rank` in order, its row ids in file order. Such a plan knows the rows
  // of `rank`'s shards only: ask rank_epoch_rows, epoch_order and shard_*_rows about those;
  // rank_rows is meaningless (it has no file rows) and returns an empty range.
  ShardPlan(const ShardCounts& counts, int rank,
            std::vector<std::vector<std::int64_t>> own_train_rows,
            std::vector<std::vector<std::int64_t>> own_validation_rows, std::uint64_t seed,
            int global_batch, int ranks);

  int shards() const { return shards_; }
  int ranks() const { return ranks_; }
  int global_batch() const { return global_batch_; }

  // The contiguous file rows rank `rank` must read (its virtual shards, val rows included).
  RowRange rank_rows(int rank) const;
  // The virtual shards rank `rank` owns: [first, last).
  std::pair<int, int> rank_shards(int rank) const;

  // Training row ids of virtual shard v, in file order (empty for a shard this plan does not
  // know).
  const std::vector<std::int64_t>& shard_train_rows(int v) const { return train_rows_[v]; }
  // Validation row ids of virtual shard v, in file order (same caveat).
  const std::vector<std::int64_t>& shard_validation_rows(int v) const { return val_rows_[v]; }

  // Full global batches in an epoch (0 when the batch exceeds the training rows).
  std::int64_t steps_per_epoch() const { return steps_per_epoch_; }
  // The most rows rank `rank` contributes to any one step (the same for every epoch).
  int max_step_rows(int rank) const;

  // For each step of `epoch`, the row ids rank `rank` trains on in that step.
  std::vector<std::vector<std::int64_t>> rank_epoch_rows(int rank, int epoch) const;

  // Shuffled order of shard v's training rows for an epoch.
  std::vector<std::int64_t> epoch_order(int v, int epoch) const;

  // Training / validation rows of virtual shard v, known for every shard.
  std::int64_t shard_train_count(int v) const { return train_count_[v]; }
  std::int64_t shard_validation_count(int v) const { return val_count_[v]; }

  std::int64_t train_rows() const;       // all shards
  std::int64_t validation_rows() const;  // all shards

 private:
  std::int64_t file_rows_;
  std::uint64_t seed_;
  int global_batch_;
  int ranks_;
  int shards_;
  std::int64_t steps_per_epoch_ = 0;
  std::vector<std::int64_t> train_count_;  // every shard
  std::vector<std::int64_t> val_count_;
  std::vector<std::vector<std::int64_t>> train_rows_;  // the shards this plan knows, else empty
  std::vector<std::vector<std::int64_t>> val_rows_;
  std::vector<std::int32_t> position_shard_;  // epoch position -> virtual shard it draws from

  void check_arguments() const;
  // Fills steps_per_epoch_ and position_shard_ from train_count_.
  void interleave();
};

}  // namespace trellis
