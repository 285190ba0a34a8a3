#include "worker/data/dataset.h"

#include <algorithm>
#include <cmath>
#include <exception>
#include <functional>
#include <new>
#include <string>
#include <tuple>
#include <utility>

#include "common/seed.h"

#include "worker/data/csv_reader.h"
#include "worker/data/idx_reader.h"
#include "worker/data/libsvm_reader.h"

namespace trellis::worker {
namespace {

constexpr int kTrain = 0;
constexpr int kTest = 1;
// A variance this small next to the mean's square is float rounding of a constant feature;
// dividing by its root would blow rounding noise up to unit scale.
constexpr double kConstantRelativeVariance = 1e-10;
// Purposes mixed into the experiment's split seed: the test and validation draws are
// independent of each other and of every trial's own streams.
constexpr std::uint64_t kTestSplitTag = 0x7465;        // "te"
constexpr std::uint64_t kValidationSplitTag = 0x7661;  // "va"
// Radix select over 64-bit hashes, a byte per round: 8 rounds at most, 256 counts per stratum.
constexpr int kDigitBits = 8;
constexpr int kDigits = 1 << kDigitBits;
// What each column of train_x is, as the splits are drawn.
enum Role : std::uint8_t { kTrainRow = 0, kValidationRow = 1, kTestRow = 2 };

std::string file_in(const std::string& dir, const std::string& name,
                    const std::string& fallback) {
  const std::string& file = name.empty() ? fallback : name;
  if (!file.empty() && file.front() == '/') return file;
  if (dir.empty() || dir.back() == '/') return dir + file;
  return dir + "/" + file;
}

Status check_request(const DatasetRef& d, const LayoutOptions& l) {
  const std::string format = d.format.empty() ? "idx" : d.format;
  if (format != "idx" && format != "csv" && format != "libsvm")
    return Status::Error("dataset format '" + d.format + "' is not supported (idx, csv, libsvm)");
  if (d.task != "classification" && d.task != "regression")
    return Status::Error("dataset task '" + d.task + "' is not supported (classification, regression)");
  if (format == "idx" && d.task != "classification")
    return Status::Error("idx datasets are classification only");
  if (!d.scaling.empty() && d.scaling != "none" && d.scaling != "standard")
    return Status::Error("dataset scaling '" + d.scaling + "' is not supported (none, standard)");
  if (!(d.validation_fraction >= 0 && d.validation_fraction < 1))
    return Status::Error("validation_fraction must be in [0, 1)");
  if (!(d.test_fraction >= 0 && d.test_fraction < 1))
    return Status::Error("test_fraction must be in [0, 1)");
  if (d.test_fraction > 0 && format == "idx")
    return Status::Error("test_fraction: idx datasets come with their test files (t10k-*)");
  if (d.test_fraction > 0 && !d.test.empty())
    return Status::Error("the dataset names a test file ('" + d.test +
                         "') and a test_fraction; give one of them");
  if (d.classes < 0 || d.classes > kMaxClasses)
    return Status::Error("dataset classes must be in [0, " + std::to_string(kMaxClasses) + "]");
  if (d.features < 0 || d.features > kMaxLibsvmFeatures)
    return Status::Error("dataset features must be in [0, " + std::to_string(kMaxLibsvmFeatures) + "]");
  if (l.global_batch < 1) return Status::Error("batch_size must be >= 1");
  if (l.ranks < 1 || l.rank < 0 || l.rank >= l.ranks)
    return Status::Error("rank " + std::to_string(l.rank) + " of " + std::to_string(l.ranks));
  return Status::Ok();
}

// The byte range of the training file rank `rank` reads: its virtual shards.
ByteRange rank_bytes(std::int64_t data_begin, std::int64_t size, int shards, int first, int last) {
  return ByteRange{split_bytes(data_begin, size, shards, first).begin,
                   split_bytes(data_begin, size, shards, last - 1).end};
}

// Records the virtual shard of each of this rank's rows (ascending offsets).
void bin_rows(const std::vector<std::int64_t>& offsets, std::int64_t data_begin,
              std::int64_t size, const LayoutOptions& l, RankData* out) {
  const int shards = virtual_shards(l.ranks);
  const int per_rank = shards / l.ranks;
  const int first = l.rank * per_rank;
  std::vector<std::int32_t>& row_shard = out->staging.row_shard;
  row_shard.resize(offsets.size());
  int v = first;
  for (std::size_t i = 0; i < offsets.size(); ++i) {
    // Lines start inside the rank's range by construction; clamp anyway so a row is never lost.
    while (v + 1 < first + per_rank && offsets[i] >= split_bytes(data_begin, size, shards, v).end) ++v;
    row_shard[i] = v;
  }
  out->train_row_ids = offsets;
}

Status read_idx(const DatasetRef& d, const LayoutOptions& l, RankData* out) {
  IdxInfo train_info, test_info;
  Status s = read_idx_info(d.path, IdxSplit::kTrain, &train_info);
  if (!s.ok()) return s;
  s = read_idx_info(d.path, IdxSplit::kTest, &test_info);
  if (!s.ok()) return s;
  out->files = {train_info.images_path, train_info.labels_path, test_info.images_path,
                test_info.labels_path};
  if (test_info.height != train_info.height || test_info.width != train_info.width)
    return Status::Error("feature count mismatch: " +
                         test_info.images_path + " is " + std::to_string(test_info.height) + "x" +
                         std::to_string(test_info.width) + " but " + train_info.images_path +
                         " is " + std::to_string(train_info.height) + "x" +
                         std::to_string(train_info.width));
  const int shards = virtual_shards(l.ranks);
  const int per_rank = shards / l.ranks;
  const int first = l.rank * per_rank, last = first + per_rank;
  const RowRange rows{split_rows(train_info.rows, shards, first).begin,
                      split_rows(train_info.rows, shards, last - 1).end};
  IdxRows train, test;
  s = read_idx_rows(train_info, rows, &train);
  if (!s.ok()) return s;
  s = read_idx_rows(test_info, split_rows(test_info.rows, l.ranks, l.rank), &test);
  if (!s.ok()) return s;

  out->train_x = std::move(train.images);
  out->train_y.assign(train.labels.begin(), train.labels.end());
  out->train_row_ids.resize(out->train_y.size());
  for (std::size_t i = 0; i < out->train_row_ids.size(); ++i)
    out->train_row_ids[i] = rows.begin + static_cast<std::int64_t>(i);
  for (int v = first; v < last; ++v)
    out->staging.row_shard.insert(out->staging.row_shard.end(),
                                  static_cast<std::size_t>(split_rows(train_info.rows, shards, v).size()), v);
  out->test_x = std::move(test.images);
  out->test_y.assign(test.labels.begin(), test.labels.end());

  const int f = train_info.features();
  out->staging.local_features = f;
  out->staging.local_max_label = kIdxClasses - 1;
  out->staging.declared_classes = kIdxClasses;
  out->rows_read = static_cast<std::int64_t>(out->train_y.size() + out->test_y.size());
  out->bytes_read = out->rows_read * (f + 1);  // pixels and label byte per row
  return Status::Ok();
}

Status check_same_columns(const CsvHeader& train, const CsvHeader& test) {
  if (test.columns.size() != train.columns.size() || test.label_column != train.label_column)
    return Status::Error("feature count mismatch: " + test.path + " has " +
                         std::to_string(test.features()) + " feature columns but " + train.path +
                         " has " + std::to_string(train.features()));
  for (std::size_t c = 0; c < train.columns.size(); ++c)
    if (test.columns[c] != train.columns[c])
      return Status::Error("column " + std::to_string(c + 1) + " is '" + test.columns[c] + "' in " +
                           test.path + " but '" + train.columns[c] + "' in " + train.path);
  return Status::Ok();
}

float max_target(const std::vector<float>& y) {
  float m = -1;
  for (float v : y) m = std::max(m, v);
  return m;
}

Status read_csv(const DatasetRef& d, const LayoutOptions& l, const TargetRule& rule,
                RankData* out) {
  CsvHeader train, test;
  Status s = read_csv_header(file_in(d.path, d.train, "train.csv"), d.label, &train);
  if (!s.ok()) return s;
  // With test_fraction the test rows come out of the training file; no test file is read.
  const bool test_file = d.test_fraction <= 0;
  out->files = {train.path};
  if (test_file) {
    s = read_csv_header(file_in(d.path, d.test, "test.csv"), d.label, &test);
    if (!s.ok()) return s;
    out->files.push_back(test.path);
    s = check_same_columns(train, test);
    if (!s.ok()) return s;
  }

  const int shards = virtual_shards(l.ranks);
  const int per_rank = shards / l.ranks;
  CsvRows train_rows, test_rows;
  s = read_csv_rows(train, rank_bytes(train.data_begin, train.file_size, shards,
                                      l.rank * per_rank, (l.rank + 1) * per_rank),
                    rule, &train_rows);
  if (!s.ok()) return s;
  if (test_file) {
    s = read_csv_rows(test, split_bytes(test.data_begin, test.file_size, l.ranks, l.rank), rule,
                      &test_rows);
    if (!s.ok()) return s;
  }

  const int f = train.features();
  const auto n_train = static_cast<Eigen::Index>(train_rows.targets.size());
  const auto n_test = static_cast<Eigen::Index>(test_rows.targets.size());
  out->train_x = Eigen::Map<const Eigen::MatrixXf>(train_rows.features.data(), f, n_train);
  out->test_x = Eigen::Map<const Eigen::MatrixXf>(test_rows.features.data(), f, n_test);
  bin_rows(train_rows.offsets, train.data_begin, train.file_size, l, out);
  out->train_y = std::move(train_rows.targets);
  out->test_y = std::move(test_rows.targets);
  out->staging.local_features = f;
  out->staging.local_max_label =
      static_cast<int>(std::max(max_target(out->train_y), max_target(out->test_y)));
  out->rows_read = n_train + n_test;
  out->bytes_read = train.bytes_read + test.bytes_read + train_rows.bytes_read + test_rows.bytes_read;
  return Status::Ok();
}

Status read_libsvm(const DatasetRef& d, const LayoutOptions& l, const TargetRule& rule,
                   RankData* out) {
  const std::string train_path = file_in(d.path, d.train, "train.libsvm");
  const std::string test_path = file_in(d.path, d.test, "test.libsvm");
  std::int64_t train_size = 0, test_size = 0;
  Status s = libsvm_file_size(train_path, &train_size);
  if (!s.ok()) return s;
  const bool test_file = d.test_fraction <= 0;  // else the test rows come out of the training file
  out->files = {train_path};
  if (test_file) {
    out->files.push_back(test_path);
    s = libsvm_file_size(test_path, &test_size);
    if (!s.ok()) return s;
  }

  const int shards = virtual_shards(l.ranks);
  const int per_rank = shards / l.ranks;
  LibsvmRows rows[2];
  s = read_libsvm_rows(train_path,
                       rank_bytes(0, train_size, shards, l.rank * per_rank, (l.rank + 1) * per_rank),
                       d.features, rule, &rows[kTrain]);
  if (!s.ok()) return s;
  if (test_file) {
    s = read_libsvm_rows(test_path, split_bytes(0, test_size, l.ranks, l.rank), d.features, rule,
                         &rows[kTest]);
    if (!s.ok()) return s;
  }

  bin_rows(rows[kTrain].offsets, 0, train_size, l, out);
  for (int part : {kTrain, kTest}) {
    out->staging.sparse_begin[part] = std::move(rows[part].row_begin);
    out->staging.sparse_index[part] = std::move(rows[part].index);
    out->staging.sparse_value[part] = std::move(rows[part].value);
  }
  out->train_y = std::move(rows[kTrain].targets);
  out->test_y = std::move(rows[kTest].targets);
  out->staging.local_features = std::max(rows[kTrain].max_index, rows[kTest].max_index);
  out->staging.local_max_label =
      static_cast<int>(std::max(max_target(out->train_y), max_target(out->test_y)));
  out->rows_read = static_cast<std::int64_t>(out->train_y.size() + out->test_y.size());
  out->bytes_read = rows[kTrain].bytes_read + rows[kTest].bytes_read;
  return Status::Ok();
}

// ---- phase 2. The ranks of a group this process holds (one under MPI, all of them in
// finish_in_process) go through the same stages; between stages, a Combiner makes every rank's
// vector the element-wise combination over the whole group, which is all that differs between
// the two ways of finishing.

enum class Op { kSum, kMax, kMin };

struct Combiner {
  // One vector per rank held here, all the same length; returns the group's combination.
  std::function<std::vector<std::int64_t>(std::vector<std::vector<std::int64_t>>, Op)> ints;
  std::function<std::vector<double>(std::vector<std::vector<double>>)> sum_doubles;
};

// Runs a phase that may throw. Whatever fails in it is the dataset's fault unless the phase
// said otherwise, or memory ran out (another attempt, on another node, may have enough).
template <class Phase>
Status guarded(const char* what, DataFault* fault, Phase&& phase) {
  Status s;
  try {
    s = phase();
  } catch (const std::bad_alloc&) {
    *fault = DataFault::kTrial;
    return Status::Error(std::string("out of memory ") + what);
  } catch (const std::exception& e) {
    s = Status::Error(std::string(what) + ": " + e.what());
  }
  if (!s.ok() && *fault == DataFault::kNone) *fault = DataFault::kDataset;
  return s;
}


// Runs `step` on every rank held here and agrees on the outcome over the group. Verdicts
// decided from group-wide numbers are the same everywhere; a local surprise (out of memory)
// must still not leave the other ranks inside the next collective.
template <class Step>
Status on_every_rank(const std::vector<RankData*>& ranks, const Combiner& c, Step&& step) {
  Status first;
  std::vector<std::vector<std::int64_t>> ok;
  for (RankData* d : ranks) {
    const Status s = guarded("finishing the dataset", &d->fault, [&] { return step(d); });
    if (!s.ok() && first.ok()) first = s;
    ok.push_back({s.ok() ? 1 : 0});
  }
  if (c.ints(std::move(ok), Op::kMin)[0] == 1) return Status::Ok();
  if (!first.ok()) return first;
  // Not the dataset: another rank's memory, say.
  for (RankData* d : ranks) d->fault = DataFault::kTrial;
  return Status::Error("another rank failed to finish loading the data");
}

Eigen::MatrixXf densify(const RankDataStaging& st, int part, int features) {
  const std::vector<std::int64_t>& begin = st.sparse_begin[part];
  const auto rows = static_cast<Eigen::Index>(begin.size() - 1);
  Eigen::MatrixXf x = Eigen::MatrixXf::Zero(features, rows);
  for (Eigen::Index r = 0; r < rows; ++r)
    for (std::int64_t e = begin[r]; e < begin[r + 1]; ++e)
      x(st.sparse_index[part][e], r) = st.sparse_value[part][e];
  return x;
}

// Stage 1: features and classes from [features, max label] maxed over the group.
Status apply_dimensions(const std::vector<std::int64_t>& group, RankData* data) {
  RankDataStaging& st = data->staging;
  data->features = st.declared_features > 0 ? st.declared_features : static_cast<int>(group[0]);
  if (data->features < 1) return Status::Error("dataset has no features (no index in any row)");
  if (st.classification) {
    data->classes = st.declared_classes > 0 ? st.declared_classes : static_cast<int>(group[1]) + 1;
    if (data->classes < 2)
      return Status::Error("classification needs at least 2 classes, the labels give " +
                           std::to_string(data->classes));
  } else {
    data->classes = 0;
  }
  if (st.format == "libsvm") {
    data->train_x = densify(st, kTrain, data->features);
    data->test_x = densify(st, kTest, data->features);
    for (int part : {kTrain, kTest}) {
      st.sparse_begin[part] = {};
      st.sparse_index[part] = {};
      st.sparse_value[part] = {};
    }
  }
  return Status::Ok();
}

// A draw's strata: each class, or for regression one stratum of every row.
int strata(const RankData& d) { return d.classes > 0 ? d.classes : 1; }
int stratum(const RankData& d, std::size_t column) {
  return d.classes > 0 ? static_cast<int>(d.train_y[column]) : 0;
}

// Per stratum, the rows of this rank whose role is kTrainRow.
std::vector<std::int64_t> eligible_counts(const RankData& d, const std::vector<std::uint8_t>& role) {
  std::vector<std::int64_t> n(static_cast<std::size_t>(strata(d)), 0);
  for (std::size_t c = 0; c < role.size(); ++c)
    if (role[c] == kTrainRow) ++n[static_cast<std::size_t>(stratum(d, c))];
  return n;
}

// Gives role `to` to round(fraction x n) of each stratum's kTrainRow rows (n of them over the
// group): those whose key, a hash of the split seed, `tag` and the row id, is smallest. A radix
// select over the group: each round all-reduces, for every stratum not yet settled, the count
// of eligible keys per value of the next byte below the prefix found so far, and narrows the
// prefix to the byte where the stratum's k-th smallest key lies. A stratum is settled when
// the keys up to the end of a byte are exactly its k; the chosen rows are then the keys at or
// below a cut. Keys are distinct but for 64-bit collisions, in which case both rows are taken.
void draw_split(const std::vector<RankData*>& ranks, const Combiner& combine, double fraction,
                std::uint64_t tag, std::uint8_t to, std::vector<std::vector<std::uint8_t>>* roles) {
  if (fraction <= 0) return;
  const RankData& any = *ranks.front();
  std::vector<std::vector<std::int64_t>> parts;
  for (std::size_t i = 0; i < ranks.size(); ++i) parts.push_back(eligible_counts(*ranks[i], (*roles)[i]));
  const std::vector<std::int64_t> n = combine.ints(std::move(parts), Op::kSum);
  const auto s_count = static_cast<std::size_t>(strata(any));
  std::vector<std::int64_t> need(s_count);
  for (std::size_t s = 0; s < s_count; ++s)
    need[s] = std::llround(fraction * static_cast<double>(n[s]));

  std::vector<std::vector<std::uint64_t>> keys(ranks.size());
  for (std::size_t i = 0; i < ranks.size(); ++i) {
    const RankData& d = *ranks[i];
    keys[i].resize(d.train_row_ids.size());
    for (std::size_t c = 0; c < keys[i].size(); ++c)
      keys[i][c] = derive_seed(d.staging.split_seed,
                               {tag, static_cast<std::uint64_t>(d.train_row_ids[c])});
  }
  std::vector<std::uint64_t> prefix(s_count, 0), cut(s_count, 0);
  std::vector<char> open(s_count, 0), take(s_count, 0);
  for (std::size_t s = 0; s < s_count; ++s) open[s] = take[s] = need[s] > 0;
  for (int shift = 64 - kDigitBits; shift >= 0; shift -= kDigitBits) {
    std::vector<std::size_t> slot(s_count, 0);  // an open stratum's place in the histograms
    std::size_t open_count = 0;
    for (std::size_t s = 0; s < s_count; ++s)
      if (open[s]) slot[s] = open_count++;
    if (open_count == 0) break;
    const int above = 64 - shift - kDigitBits;  // bits of the prefix fixed so far
    const auto same_prefix = [&](std::uint64_t key, std::size_t s) {
      return above == 0 || (key >> (shift + kDigitBits)) == (prefix[s] >> (shift + kDigitBits));
    };
    parts.clear();
    for (std::size_t i = 0; i < ranks.size(); ++i) {
      const RankData& d = *ranks[i];
      std::vector<std::int64_t> h(open_count * kDigits, 0);
      for (std::size_t c = 0; c < keys[i].size(); ++c) {
        if ((*roles)[i][c] != kTrainRow) continue;
        const auto s = static_cast<std::size_t>(stratum(d, c));
        if (!open[s] || !same_prefix(keys[i][c], s)) continue;
        ++h[slot[s] * kDigits + ((keys[i][c] >> shift) & (kDigits - 1))];
      }
      parts.push_back(std::move(h));
    }
    const std::vector<std::int64_t> h = combine.ints(std::move(parts), Op::kSum);
    for (std::size_t s = 0; s < s_count; ++s) {
      if (!open[s]) continue;
      std::int64_t below = 0;
      std::uint64_t b = 0;
      while (below + h[slot[s] * kDigits + b] < need[s]) below += h[slot[s] * kDigits + b++];
      const std::uint64_t low = shift == 0 ? 0 : (std::uint64_t{1} << shift) - 1;
      prefix[s] |= b << shift;
      need[s] -= below;
      if (need[s] == h[slot[s] * kDigits + b] || shift == 0) {
        cut[s] = prefix[s] | low;
        open[s] = 0;
      }
    }
  }
  for (std::size_t i = 0; i < ranks.size(); ++i)
    for (std::size_t c = 0; c < keys[i].size(); ++c) {
      const auto s = static_cast<std::size_t>(stratum(*ranks[i], c));
      if ((*roles)[i][c] == kTrainRow && take[s] && keys[i][c] <= cut[s]) (*roles)[i][c] = to;
    }
}

// Keeps the columns of `x` (and entries of the per-column vectors) where keep[c].
template <class T>
void keep_entries(const std::vector<char>& keep, std::vector<T>* v) {
  std::size_t to = 0;
  for (std::size_t c = 0; c < keep.size(); ++c)
    if (keep[c]) (*v)[to++] = (*v)[c];
  v->resize(to);
}

// Moves the test rows out of the training arrays, and lists per owned shard which rows train
// and which validate. Returns this rank's [train per shard | validation per shard | test rows].
std::vector<std::int64_t> apply_roles(const std::vector<std::uint8_t>& role, RankData* d,
                                      std::vector<std::vector<std::int64_t>>* own_train,
                                      std::vector<std::vector<std::int64_t>>* own_val) {
  RankDataStaging& st = d->staging;
  const auto cols = static_cast<Eigen::Index>(role.size());
  const Eigen::Index tests = std::count(role.begin(), role.end(), kTestRow);
  if (tests > 0) {
    Eigen::MatrixXf test_x(d->train_x.rows(), tests), train_x(d->train_x.rows(), cols - tests);
    std::vector<char> keep(role.size());
    d->test_y.clear();
    for (Eigen::Index c = 0, t = 0, k = 0; c < cols; ++c) {
      keep[static_cast<std::size_t>(c)] = role[static_cast<std::size_t>(c)] != kTestRow;
      if (keep[static_cast<std::size_t>(c)]) {
        train_x.col(k++) = d->train_x.col(c);
      } else {
        test_x.col(t++) = d->train_x.col(c);
        d->test_y.push_back(d->train_y[static_cast<std::size_t>(c)]);
      }
    }
    d->train_x = std::move(train_x);
    d->test_x = std::move(test_x);
    keep_entries(keep, &d->train_y);
    keep_entries(keep, &d->train_row_ids);
    keep_entries(keep, &st.row_shard);
  }
  const int shards = virtual_shards(d->ranks);
  const int first = d->rank * (shards / d->ranks);
  own_train->assign(static_cast<std::size_t>(shards / d->ranks), {});
  own_val->assign(own_train->size(), {});
  std::vector<std::int64_t> counts(static_cast<std::size_t>(2 * shards + 1), 0);
  d->val_columns.clear();
  for (std::size_t c = 0, kept = 0; c < role.size(); ++c) {
    if (role[c] == kTestRow) continue;
    const int v = st.row_shard[kept];
    const bool val = role[c] == kValidationRow;
    if (val) d->val_columns.push_back(static_cast<std::int64_t>(kept));
    (val ? *own_val : *own_train)[static_cast<std::size_t>(v - first)].push_back(d->train_row_ids[kept]);
    ++counts[static_cast<std::size_t>((val ? shards : 0) + v)];
    ++kept;
  }
  counts[static_cast<std::size_t>(2 * shards)] = static_cast<std::int64_t>(d->test_y.size());
  return counts;
}

std::vector<char> held_out(const RankData& data) {
  std::vector<char> out(static_cast<std::size_t>(data.train_x.cols()), 0);
  for (std::int64_t c : data.val_columns) out[static_cast<std::size_t>(c)] = 1;
  return out;
}

// [sum per feature | sum of squares per feature | rows] over this rank's training split.
std::vector<double> local_moments(const RankData& data) {
  const int f = data.features;
  std::vector<double> m(static_cast<std::size_t>(2 * f + 1), 0.0);
  const std::vector<char> held = held_out(data);
  for (Eigen::Index c = 0; c < data.train_x.cols(); ++c) {
    if (held[static_cast<std::size_t>(c)]) continue;
    for (int i = 0; i < f; ++i) {
      const double x = data.train_x(i, c);
      m[i] += x;
      m[f + i] += x * x;
    }
    m[2 * f] += 1;
  }
  return m;
}

// Mean and standard deviation from [sum, sum of squares] of n values; a variance that is only
// the rounding of a constant gives 1, so a constant is only centred.
std::pair<double, double> mean_and_std(double sum, double sum_sq, double n) {
  const double mean = sum / n;
  const double var = sum_sq / n - mean * mean;
  const bool varies = var > 0 && var > kConstantRelativeVariance * mean * mean;
  return {mean, varies ? std::sqrt(var) : 1.0};
}

void apply_moments(const std::vector<double>& group, RankData* data) {
  const int f = data->features;
  data->scale_mean.assign(static_cast<std::size_t>(f), 0.0);
  data->scale_std.assign(static_cast<std::size_t>(f), 1.0);
  for (int i = 0; i < f; ++i)
    std::tie(data->scale_mean[i], data->scale_std[i]) = mean_and_std(group[i], group[f + i], group[2 * f]);
  std::vector<float> mean, inv_std;
  applied_scaling(*data, &mean, &inv_std);
  const Eigen::Map<const Eigen::VectorXf> m(mean.data(), f), s(inv_std.data(), f);
  for (Eigen::MatrixXf* x : {&data->train_x, &data->test_x})
    *x = (x->colwise() - m).array().colwise() * s.array();
}

// [sum, sum of squares, rows] of the target over this rank's training split.
std::vector<double> local_target_moments(const RankData& data) {
  std::vector<double> m(3, 0.0);
  const std::vector<char> held = held_out(data);
  for (std::size_t c = 0; c < data.train_y.size(); ++c) {
    if (held[c]) continue;
    const double y = data.train_y[c];
    m[0] += y;
    m[1] += y * y;
    m[2] += 1;
  }
  return m;
}

void standardise_target(const std::vector<double>& group, RankData* data) {
  std::tie(data->target_mean, data->target_std) = mean_and_std(group[0], group[1], group[2]);
  for (std::vector<float>* y : {&data->train_y, &data->test_y})
    for (float& v : *y) v = static_cast<float>((v - data->target_mean) / data->target_std);
}

template <class Local>
auto per_rank(const std::vector<RankData*>& ranks, Local&& local) {
  std::vector<decltype(local(*ranks.front()))> parts;
  for (const RankData* d : ranks) parts.push_back(local(*d));
  return parts;
}

Status finish(const std::vector<RankData*>& ranks, const Combiner& combine) {
  const std::vector<std::int64_t> dims = combine.ints(
      per_rank(ranks, [](const RankData& d) {
        return std::vector<std::int64_t>{d.staging.local_features, d.staging.local_max_label};
      }),
      Op::kMax);
  if (Status s = on_every_rank(ranks, combine, [&](RankData* d) { return apply_dimensions(dims, d); });
      !s.ok())
    return s;

  const RankDataStaging& st = ranks.front()->staging;
  std::vector<std::vector<std::uint8_t>> roles;
  for (const RankData* d : ranks) roles.emplace_back(d->train_row_ids.size(), kTrainRow);
  draw_split(ranks, combine, st.test_fraction, kTestSplitTag, kTestRow, &roles);
  draw_split(ranks, combine, st.validation_fraction, kValidationSplitTag, kValidationRow, &roles);

  std::vector<std::vector<std::vector<std::int64_t>>> own_train(ranks.size()), own_val(ranks.size());
  std::vector<std::vector<std::int64_t>> counts;
  for (std::size_t i = 0; i < ranks.size(); ++i) {
    ranks[i]->file_rows_total = static_cast<std::int64_t>(roles[i].size());
    counts.push_back(apply_roles(roles[i], ranks[i], &own_train[i], &own_val[i]));
  }
  std::vector<std::vector<std::int64_t>> file_rows;
  for (const RankData* d : ranks) file_rows.push_back({d->file_rows_total});
  const std::int64_t file_rows_total = combine.ints(std::move(file_rows), Op::kSum)[0];
  const std::vector<std::int64_t> group = combine.ints(std::move(counts), Op::kSum);
  const int shards = virtual_shards(ranks.front()->ranks);
  std::size_t next = 0;
  Status s = on_every_rank(ranks, combine, [&](RankData* d) {
    const std::size_t i = next++;
    d->file_rows_total = file_rows_total;
    d->test_rows_total = group[static_cast<std::size_t>(2 * shards)];
    ShardCounts c;
    c.train.assign(group.begin(), group.begin() + shards);
    c.validation.assign(group.begin() + shards, group.begin() + 2 * shards);
    d->plan = std::make_unique<ShardPlan>(c, d->rank, std::move(own_train[i]), std::move(own_val[i]),
                                          d->staging.layout.seed, d->staging.layout.global_batch,
                                          d->ranks);
    if (d->plan->steps_per_epoch() < 1) {
      d->fault = DataFault::kTrial;  // batch_size is the trial's: a smaller one fits
      return Status::Error("batch_size " + std::to_string(d->staging.layout.global_batch) +
                           " exceeds the " + std::to_string(d->plan->train_rows()) +
                           " training rows");
    }
    return Status::Ok();
  });
  if (!s.ok()) return s;

  if (st.standard_scaling) {
    const std::vector<double> moments = combine.sum_doubles(per_rank(ranks, local_moments));
    for (RankData* d : ranks) apply_moments(moments, d);
  }
  if (!st.classification) {
    const std::vector<double> moments = combine.sum_doubles(per_rank(ranks, local_target_moments));
    for (RankData* d : ranks) standardise_target(moments, d);
  }
  return Status::Ok();
}

}  // namespace

std::vector<std::vector<std::int64_t>> RankData::epoch_columns(int epoch) const {
  std::vector<std::vector<std::int64_t>> steps = plan->rank_epoch_rows(rank, epoch);
  for (auto& step : steps)
    for (std::int64_t& row : step)
      row = std::lower_bound(train_row_ids.begin(), train_row_ids.end(), row) - train_row_ids.begin();
  return steps;
}

Status read_local(const DatasetRef& dataset, const LayoutOptions& layout, RankData* out) {
  *out = RankData();
  Status s = check_request(dataset, layout);
  if (!s.ok()) {
    // The batch and the rank are the trial's and the launch's; the rest is the dataset's.
    const bool trials = layout.global_batch < 1 || layout.ranks < 1 || layout.rank < 0 ||
                        layout.rank >= layout.ranks;
    out->fault = trials ? DataFault::kTrial : DataFault::kDataset;
    return s;
  }
  out->rank = layout.rank;
  out->ranks = layout.ranks;
  RankDataStaging& st = out->staging;
  st.layout = layout;
  st.format = dataset.format.empty() ? "idx" : dataset.format;
  st.classification = dataset.task == "classification";
  st.standard_scaling =
      dataset.scaling.empty() ? st.format != "idx" : dataset.scaling == "standard";
  st.declared_classes = dataset.classes;
  st.declared_features = st.format == "libsvm" ? dataset.features : 0;
  st.validation_fraction = dataset.validation_fraction;
  st.test_fraction = dataset.test_fraction;
  st.split_seed = dataset.split_seed;
  const TargetRule rule{st.classification, dataset.classes};
  // The one place that names the dataset: the readers name only its files.
  return guarded("reading the dataset", &out->fault, [&] {
           if (st.format == "idx") return read_idx(dataset, layout, out);
           if (st.format == "csv") return read_csv(dataset, layout, rule, out);
           return read_libsvm(dataset, layout, rule, out);
         })
      .With("dataset " + dataset.path);
}

Status finish_collectively(MPI_Comm comm, RankData* data) {
  Combiner c;
  c.ints = [comm](std::vector<std::vector<std::int64_t>> parts, Op op) {
    std::vector<std::int64_t> v = std::move(parts.front());
    const MPI_Op mpi_op = op == Op::kSum ? MPI_SUM : op == Op::kMax ? MPI_MAX : MPI_MIN;
    MPI_Allreduce(MPI_IN_PLACE, v.data(), static_cast<int>(v.size()), MPI_INT64_T, mpi_op, comm);
    return v;
  };
  c.sum_doubles = [comm](std::vector<std::vector<double>> parts) {
    std::vector<double> v = std::move(parts.front());
    MPI_Allreduce(MPI_IN_PLACE, v.data(), static_cast<int>(v.size()), MPI_DOUBLE, MPI_SUM, comm);
    return v;
  };
  return finish({data}, c);
}

Status finish_in_process(std::vector<RankData>* group) {
  if (group->empty()) return Status::Error("finish_in_process: empty group");
  Combiner c;
  c.ints = [](std::vector<std::vector<std::int64_t>> parts, Op op) {
    std::vector<std::int64_t> v = std::move(parts.front());
    for (std::size_t r = 1; r < parts.size(); ++r)
      for (std::size_t i = 0; i < v.size(); ++i)
        v[i] = op == Op::kSum ? v[i] + parts[r][i]
               : op == Op::kMax ? std::max(v[i], parts[r][i])
                                : std::min(v[i], parts[r][i]);
    return v;
  };
  // In rank order, as MPI_Allreduce on one process would: a group's sums are those of its ranks.
  c.sum_doubles = [](std::vector<std::vector<double>> parts) {
    std::vector<double> v = std::move(parts.front());
    for (std::size_t r = 1; r < parts.size(); ++r)
      for (std::size_t i = 0; i < v.size(); ++i) v[i] += parts[r][i];
    return v;
  };
  std::vector<RankData*> ranks;
  for (RankData& d : *group) ranks.push_back(&d);
  return finish(ranks, c);
}

void applied_scaling(const RankData& data, std::vector<float>* mean, std::vector<float>* inv_std) {
  mean->resize(data.scale_mean.size());
  inv_std->resize(data.scale_std.size());
  for (std::size_t i = 0; i < mean->size(); ++i) {
    (*mean)[i] = static_cast<float>(data.scale_mean[i]);
    (*inv_std)[i] = static_cast<float>(1.0 / data.scale_std[i]);
  }
}

}  // namespace trellis::worker
