#include "worker/data/dataset.h"

#include <algorithm>
#include <cmath>
#include <exception>
#include <new>
#include <string>

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

// Sorts this rank's rows (ascending offsets) into its shards and into training / validation.
void bin_rows(const std::vector<std::int64_t>& offsets, std::int64_t data_begin,
              std::int64_t size, const DatasetRef& d, const LayoutOptions& l, RankData* out) {
  const int shards = virtual_shards(l.ranks);
  const int per_rank = shards / l.ranks;
  const int first = l.rank * per_rank;
  RankDataStaging& st = out->staging;
  st.own_train_rows.assign(static_cast<std::size_t>(per_rank), {});
  st.own_val_rows.assign(static_cast<std::size_t>(per_rank), {});
  int v = first;
  for (std::size_t i = 0; i < offsets.size(); ++i) {
    const std::int64_t row = offsets[i];
    // Lines start inside the rank's range by construction; clamp anyway so a row is never lost.
    while (v + 1 < first + per_rank && row >= split_bytes(data_begin, size, shards, v).end) ++v;
    const auto k = static_cast<std::size_t>(v - first);
    if (is_validation_row(l.seed, row, d.validation_fraction)) {
      st.own_val_rows[k].push_back(row);
      out->val_columns.push_back(static_cast<std::int64_t>(i));
    } else {
      st.own_train_rows[k].push_back(row);
    }
  }
  out->train_row_ids = offsets;
}

Status read_idx(const DatasetRef& d, const LayoutOptions& l, RankData* out) {
  IdxInfo train_info, test_info;
  Status s = read_idx_info(d.path, IdxSplit::kTrain, &train_info);
  if (!s.ok()) return s;
  s = read_idx_info(d.path, IdxSplit::kTest, &test_info);
  if (!s.ok()) return s;
  if (test_info.height != train_info.height || test_info.width != train_info.width)
    return Status::Error("feature count mismatch: " +
                         test_info.images_path + " is " + std::to_string(test_info.height) + "x" +
                         std::to_string(test_info.width) + " but " + train_info.images_path +
                         " is " + std::to_string(train_info.height) + "x" +
                         std::to_string(train_info.width));
  out->plan = std::make_unique<ShardPlan>(train_info.rows, d.validation_fraction, l.seed,
                                          l.global_batch, l.ranks);
  const ShardPlan& plan = *out->plan;
  const RowRange rows = plan.rank_rows(l.rank);
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
  const auto [first, last] = plan.rank_shards(l.rank);
  for (int v = first; v < last; ++v)
    for (std::int64_t row : plan.shard_validation_rows(v)) out->val_columns.push_back(row - rows.begin);
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
  s = read_csv_header(file_in(d.path, d.test, "test.csv"), d.label, &test);
  if (!s.ok()) return s;
  s = check_same_columns(train, test);
  if (!s.ok()) return s;

  const int shards = virtual_shards(l.ranks);
  const int per_rank = shards / l.ranks;
  CsvRows train_rows, test_rows;
  s = read_csv_rows(train, rank_bytes(train.data_begin, train.file_size, shards,
                                      l.rank * per_rank, (l.rank + 1) * per_rank),
                    rule, &train_rows);
  if (!s.ok()) return s;
  s = read_csv_rows(test, split_bytes(test.data_begin, test.file_size, l.ranks, l.rank), rule,
                    &test_rows);
  if (!s.ok()) return s;

  const int f = train.features();
  const auto n_train = static_cast<Eigen::Index>(train_rows.targets.size());
  const auto n_test = static_cast<Eigen::Index>(test_rows.targets.size());
  out->train_x = Eigen::Map<const Eigen::MatrixXf>(train_rows.features.data(), f, n_train);
  out->test_x = Eigen::Map<const Eigen::MatrixXf>(test_rows.features.data(), f, n_test);
  bin_rows(train_rows.offsets, train.data_begin, train.file_size, d, l, out);
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
  s = libsvm_file_size(test_path, &test_size);
  if (!s.ok()) return s;

  const int shards = virtual_shards(l.ranks);
  const int per_rank = shards / l.ranks;
  LibsvmRows rows[2];
  s = read_libsvm_rows(train_path,
                       rank_bytes(0, train_size, shards, l.rank * per_rank, (l.rank + 1) * per_rank),
                       d.features, rule, &rows[kTrain]);
  if (!s.ok()) return s;
  s = read_libsvm_rows(test_path, split_bytes(0, test_size, l.ranks, l.rank), d.features, rule,
                       &rows[kTest]);
  if (!s.ok()) return s;

  bin_rows(rows[kTrain].offsets, 0, train_size, d, l, out);
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

// ---- phase 2: what the group combines, as flat arrays so one MPI_Allreduce each suffices.

struct Shape {
  // [train counts per shard | validation counts per shard | test rows]: summed.
  std::vector<std::int64_t> sums;
  // [features, max label]: maxed.
  std::vector<std::int64_t> maxima;
};

Shape local_shape(const RankData& data) {
  const int shards = virtual_shards(data.ranks);
  Shape shape;
  shape.sums.assign(static_cast<std::size_t>(2 * shards + 1), 0);
  const RankDataStaging& st = data.staging;
  const int first = data.rank * (shards / data.ranks);
  for (std::size_t k = 0; k < st.own_train_rows.size(); ++k) {
    shape.sums[first + k] = static_cast<std::int64_t>(st.own_train_rows[k].size());
    shape.sums[shards + first + k] = static_cast<std::int64_t>(st.own_val_rows[k].size());
  }
  shape.sums[2 * shards] = static_cast<std::int64_t>(data.test_y.size());
  shape.maxima = {st.local_features, st.local_max_label};
  return shape;
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

// Decided from group-wide numbers (and this rank's own consistent rows) only, so every rank
// reaches the same verdict.
Status apply_shape(const Shape& group, RankData* data) {
  RankDataStaging& st = data->staging;
  const int global_batch = st.layout.global_batch;
  const int shards = virtual_shards(data->ranks);
  data->test_rows_total = group.sums[2 * shards];
  data->features = st.declared_features > 0 ? st.declared_features
                                            : static_cast<int>(group.maxima[0]);
  if (data->features < 1) return Status::Error("dataset has no features (no index in any row)");
  if (st.classification) {
    data->classes = st.declared_classes > 0 ? st.declared_classes
                                            : static_cast<int>(group.maxima[1]) + 1;
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
  if (st.format != "idx") {
    ShardCounts counts;
    counts.train.assign(group.sums.begin(), group.sums.begin() + shards);
    counts.validation.assign(group.sums.begin() + shards, group.sums.begin() + 2 * shards);
    data->plan = std::make_unique<ShardPlan>(counts, data->rank, std::move(st.own_train_rows),
                                             std::move(st.own_val_rows), st.layout.seed, global_batch,
                                             data->ranks);
  }
  if (data->plan->steps_per_epoch() < 1) {
    data->fault = DataFault::kTrial;  // batch_size is the trial's: a smaller one fits
    return Status::Error("batch_size " + std::to_string(global_batch) + " exceeds the " +
                         std::to_string(data->plan->train_rows()) + " training rows");
  }
  return Status::Ok();
}

// [sum per feature | sum of squares per feature | rows] over this rank's training split.
std::vector<double> local_moments(const RankData& data) {
  const int f = data.features;
  std::vector<double> m(static_cast<std::size_t>(2 * f + 1), 0.0);
  std::vector<char> held_out(static_cast<std::size_t>(data.train_x.cols()), 0);
  for (std::int64_t c : data.val_columns) held_out[static_cast<std::size_t>(c)] = 1;
  for (Eigen::Index c = 0; c < data.train_x.cols(); ++c) {
    if (held_out[static_cast<std::size_t>(c)]) continue;
    for (int i = 0; i < f; ++i) {
      const double x = data.train_x(i, c);
      m[i] += x;
      m[f + i] += x * x;
    }
    m[2 * f] += 1;
  }
  return m;
}

void apply_moments(const std::vector<double>& group, RankData* data) {
  const int f = data->features;
  const double n = group[2 * f];
  data->scale_mean.assign(static_cast<std::size_t>(f), 0.0);
  data->scale_std.assign(static_cast<std::size_t>(f), 1.0);
  for (int i = 0; i < f; ++i) {
    const double mean = group[i] / n;
    const double var = group[f + i] / n - mean * mean;
    data->scale_mean[i] = mean;
    if (var > 0 && var > kConstantRelativeVariance * mean * mean) data->scale_std[i] = std::sqrt(var);
  }
  std::vector<float> mean, inv_std;
  applied_scaling(*data, &mean, &inv_std);
  const Eigen::Map<const Eigen::VectorXf> m(mean.data(), f), s(inv_std.data(), f);
  for (Eigen::MatrixXf* x : {&data->train_x, &data->test_x})
    *x = (x->colwise() - m).array().colwise() * s.array();
}

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
  Shape shape = local_shape(*data);
  MPI_Allreduce(MPI_IN_PLACE, shape.sums.data(), static_cast<int>(shape.sums.size()),
                MPI_INT64_T, MPI_SUM, comm);
  MPI_Allreduce(MPI_IN_PLACE, shape.maxima.data(), static_cast<int>(shape.maxima.size()),
                MPI_INT64_T, MPI_MAX, comm);
  Status s = guarded("finishing the dataset", &data->fault, [&] { return apply_shape(shape, data); });
  // apply_shape's verdicts are group-wide; a local surprise (out of memory) must still not
  // leave the other ranks inside the next collective.
  int ok = s.ok() ? 1 : 0;
  MPI_Allreduce(MPI_IN_PLACE, &ok, 1, MPI_INT, MPI_MIN, comm);
  if (!ok && s.ok()) {
    data->fault = DataFault::kTrial;  // apply_shape's verdicts are group-wide: another rank's
                                      // memory, not the dataset
    return Status::Error("another rank failed to finish loading the data");
  }
  if (!ok) return s;
  if (!data->staging.standard_scaling) return Status::Ok();
  std::vector<double> moments = local_moments(*data);
  MPI_Allreduce(MPI_IN_PLACE, moments.data(), static_cast<int>(moments.size()), MPI_DOUBLE,
                MPI_SUM, comm);
  apply_moments(moments, data);
  return Status::Ok();
}

Status finish_in_process(std::vector<RankData>* group) {
  if (group->empty()) return Status::Error("finish_in_process: empty group");
  Shape total = local_shape((*group)[0]);
  for (std::size_t r = 1; r < group->size(); ++r) {
    const Shape part = local_shape((*group)[r]);
    for (std::size_t i = 0; i < total.sums.size(); ++i) total.sums[i] += part.sums[i];
    for (std::size_t i = 0; i < total.maxima.size(); ++i)
      total.maxima[i] = std::max(total.maxima[i], part.maxima[i]);
  }
  for (RankData& data : *group) {
    Status s = guarded("finishing the dataset", &data.fault, [&] {
      return apply_shape(total, &data);
    });
    if (!s.ok()) return s;
  }
  if (!(*group)[0].staging.standard_scaling) return Status::Ok();
  std::vector<double> moments = local_moments((*group)[0]);
  for (std::size_t r = 1; r < group->size(); ++r) {
    const std::vector<double> part = local_moments((*group)[r]);
    for (std::size_t i = 0; i < moments.size(); ++i) moments[i] += part[i];
  }
  for (RankData& data : *group) apply_moments(moments, &data);
  return Status::Ok();
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
