#include "worker/data/dataset.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "tests/worker/idx_fixture.h"

namespace trellis::worker {
namespace {

namespace fs = std::filesystem;

constexpr std::uint64_t kSeed = 99;
constexpr int kBatch = 32;

bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

// Four digits, zero padded: a probe file and the real one then have their lines at the same
// offsets (the row ids of csv), so they hold out the same rows.
std::string pad4(int v) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "%04d", v);
  return buf;
}

// A text file written line by line, remembering where each line starts.
struct TextFile {
  std::string text;
  std::vector<std::int64_t> line_starts;
  std::size_t max_line = 0;
  void add(const std::string& line) {
    line_starts.push_back(static_cast<std::int64_t>(text.size()));
    text += line + "\n";
    max_line = std::max(max_line, line.size() + 1);
  }
  void write(const fs::path& path) const {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out << text;
  }
};

// Row i has feature f0 = i so a test can tell which file row a column holds; line lengths vary.
TextFile make_csv(int rows, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  TextFile f;
  f.add("f0,f1,label,f2");
  for (int i = 0; i < rows; ++i) {
    const int digits = static_cast<int>(rng() % 7);
    std::string f1 = std::to_string(rng() % 1000) + (digits ? "." + std::string(digits, '3') : "");
    f.add(std::to_string(i) + "," + f1 + "," + std::to_string(i % 3) + ",-2.5");
  }
  return f;
}

TextFile make_libsvm(int rows, int extra_index) {
  TextFile f;
  for (int i = 0; i < rows; ++i) {
    std::string line = std::to_string(i % 3) + " 1:" + std::to_string(i);
    if (i % 2) line += " 2:0.125";
    if (i % 5 == 0) line += " 4:" + std::to_string(i * 1000);
    if (i == rows / 2 && extra_index > 0) line += " " + std::to_string(extra_index) + ":7";
    f.add(line);
  }
  return f;
}

DatasetRef ref(const fs::path& dir, const std::string& format) {
  DatasetRef d;
  d.format = format;
  d.path = dir.string();
  d.validation_fraction = 0.2;
  d.scaling = "none";
  return d;
}

LayoutOptions layout(int ranks, int rank, int batch = kBatch) {
  LayoutOptions l;
  l.seed = kSeed;
  l.global_batch = batch;
  l.ranks = ranks;
  l.rank = rank;
  return l;
}

// Reads and finishes a K-rank group in this process.
std::vector<RankData> load_group(const DatasetRef& d, int ranks, int batch = kBatch) {
  std::vector<RankData> group(static_cast<std::size_t>(ranks));
  for (int r = 0; r < ranks; ++r) {
    const Status s = read_local(d, layout(ranks, r, batch), &group[r]);
    EXPECT_TRUE(s.ok()) << s.message();
  }
  const Status s = finish_in_process(&group);
  EXPECT_TRUE(s.ok()) << s.message();
  return group;
}

std::string read_error(const DatasetRef& d, int ranks = 1) {
  for (int r = 0; r < ranks; ++r) {
    RankData data;
    const Status s = read_local(d, layout(ranks, r), &data);
    if (!s.ok()) return s.message();
  }
  return "";
}

class DataTest : public ::testing::Test {
 protected:
  void SetUp() override { dir_ = testing::fresh_dir("data"); }
  void TearDown() override { fs::remove_all(dir_); }
  fs::path dir_;
};

TEST_F(DataTest, CsvParsesLabelColumnAnywhere) {
  TextFile train, test;
  train.add("a, label ,b");
  train.add("1.5,2,-3");
  train.add("");  // blank lines are skipped
  train.add("4,0,5e-1\r");
  test.add("a,label,b");
  test.add("7,1,8");
  train.write(dir_ / "train.csv");
  test.write(dir_ / "test.csv");
  DatasetRef d = ref(dir_, "csv");
  d.validation_fraction = 0;
  const std::vector<RankData> g = load_group(d, 1, /*batch=*/1);
  ASSERT_EQ(g[0].train_x.cols(), 2);
  EXPECT_EQ(g[0].features, 2);
  EXPECT_EQ(g[0].classes, 3);  // max label 2 + 1
  EXPECT_FLOAT_EQ(g[0].train_x(0, 0), 1.5f);
  EXPECT_FLOAT_EQ(g[0].train_x(1, 0), -3.0f);
  EXPECT_FLOAT_EQ(g[0].train_x(1, 1), 0.5f);
  EXPECT_EQ(g[0].train_y, (std::vector<float>{2, 0}));
  EXPECT_EQ(g[0].train_row_ids, (std::vector<std::int64_t>{train.line_starts[1], train.line_starts[3]}));
  ASSERT_EQ(g[0].test_x.cols(), 1);
  EXPECT_FLOAT_EQ(g[0].test_x(1, 0), 8.0f);
  EXPECT_EQ(g[0].test_y, (std::vector<float>{1}));
  EXPECT_EQ(g[0].rows_read, 3);
}

TEST_F(DataTest, RegressionTargetsAreAnyFloat) {
  TextFile train;
  train.add("x,y");
  for (int i = 0; i < 40; ++i) train.add(std::to_string(i) + "," + std::to_string(-0.25 * i));
  train.write(dir_ / "train.csv");
  train.write(dir_ / "test.csv");
  DatasetRef d = ref(dir_, "csv");
  d.label = "y";
  d.task = "regression";
  const std::vector<RankData> g = load_group(d, 1, /*batch=*/8);
  EXPECT_EQ(g[0].classes, 0);
  // Held standardised; back in the target's units the file's values reappear.
  const float low = *std::min_element(g[0].train_y.begin(), g[0].train_y.end());
  EXPECT_NEAR(low * g[0].target_std + g[0].target_mean, -9.75, 1e-5);
  EXPECT_LT(low, -1.0f) << "standardised: the most negative target is well below the mean";
}

TEST_F(DataTest, LibsvmDensifiesToTheLargestIndexOfTrainAndTest) {
  TextFile train, test;
  train.add("1 1:0.5 3:2  # comment");
  train.add("0 2:-1");
  train.add("# only a comment");
  test.add("1 5:4");
  train.write(dir_ / "train.libsvm");
  test.write(dir_ / "test.libsvm");
  DatasetRef d = ref(dir_, "libsvm");
  d.validation_fraction = 0;
  d.classes = 2;
  std::vector<RankData> g(1);
  ASSERT_TRUE(read_local(d, layout(1, 0), &g[0]).ok());
  // Batch 32 > 2 rows: the group, not one rank, decides, and says so.
  const Status s = finish_in_process(&g);
  ASSERT_FALSE(s.ok());
  EXPECT_TRUE(contains(s.message(), "exceeds the 2 training rows")) << s.message();

  LayoutOptions small = layout(1, 0);
  small.global_batch = 1;
  g.clear();
  g.resize(1);
  ASSERT_TRUE(read_local(d, small, &g[0]).ok());
  ASSERT_TRUE(finish_in_process(&g).ok());
  EXPECT_EQ(g[0].features, 5);
  ASSERT_EQ(g[0].train_x.cols(), 2);
  Eigen::MatrixXf expected(5, 2);
  expected << 0.5f, 0, 0, -1, 2, 0, 0, 0, 0, 0;
  EXPECT_EQ(g[0].train_x, expected);
  EXPECT_FLOAT_EQ(g[0].test_x(4, 0), 4.0f);
  EXPECT_EQ(g[0].train_y, (std::vector<float>{1, 0}));
}

// The heart of byte sharding, for both text formats and K = 1..4 ranks read in one process.
class ShardedText : public DataTest, public ::testing::WithParamInterface<std::string> {};

TEST_P(ShardedText, RanksReadOnlyTheirShardAndTheLayoutIgnoresK) {
  const std::string format = GetParam();
  constexpr int kRows = 997;
  TextFile train, test;
  if (format == "csv") {
    train = make_csv(kRows, 1);
    test = make_csv(101, 2);
    train.write(dir_ / "train.csv");
    test.write(dir_ / "test.csv");
  } else {
    train = make_libsvm(kRows, 0);
    test = make_libsvm(101, 6);
    train.write(dir_ / "train.libsvm");
    test.write(dir_ / "test.libsvm");
  }
  const std::int64_t header = format == "csv" ? train.line_starts[1] : 0;
  const std::int64_t test_header = format == "csv" ? test.line_starts[1] : 0;
  const std::vector<std::int64_t> all_rows(train.line_starts.begin() + (format == "csv"),
                                           train.line_starts.end());
  const DatasetRef d = ref(dir_, format);

  std::set<std::int64_t> val_k1;
  std::vector<std::vector<std::int64_t>> steps_k1;  // epoch 2, rows of the first 5 steps
  for (int ranks : {1, 2, 3, 4}) {
    const std::vector<RankData> g = load_group(d, ranks);
    const int shards = virtual_shards(ranks);
    std::vector<std::int64_t> seen;
    std::set<std::int64_t> val;
    std::int64_t test_rows = 0;
    for (const RankData& r : g) {
      EXPECT_EQ(r.features, format == "csv" ? 3 : 6);  // libsvm: test's index 6 counts
      EXPECT_EQ(r.classes, 3);
      EXPECT_EQ(r.train_x.cols(), static_cast<Eigen::Index>(r.train_row_ids.size()));
      seen.insert(seen.end(), r.train_row_ids.begin(), r.train_row_ids.end());
      for (std::int64_t c : r.val_columns) val.insert(r.train_row_ids[c]);
      test_rows += r.test_x.cols();
      // Column content matches the file row it claims: feature 0 is the row number.
      for (Eigen::Index c = 0; c < r.train_x.cols(); c += 37) {
        const auto at = std::lower_bound(all_rows.begin(), all_rows.end(), r.train_row_ids[c]);
        ASSERT_NE(at, all_rows.end());
        EXPECT_FLOAT_EQ(r.train_x(0, c), static_cast<float>(at - all_rows.begin()));
      }
      // Only its own shard: a 1/K share of each file's data, plus header, one byte before,
      // the rounding of V/K shard boundaries and the rest of one line after.
      const std::int64_t bound =
          header + (static_cast<std::int64_t>(train.text.size()) - header) / ranks + shards / ranks +
          2 + static_cast<std::int64_t>(train.max_line) + test_header +
          (static_cast<std::int64_t>(test.text.size()) - test_header) / ranks + 2 +
          static_cast<std::int64_t>(test.max_line);
      EXPECT_LE(r.bytes_read, bound) << format << " K=" << ranks << " rank " << r.rank;
      if (ranks > 1) {
        EXPECT_LT(r.rows_read, kRows * 2 / ranks + 101) << "K=" << ranks;
      }
    }
    std::sort(seen.begin(), seen.end());
    EXPECT_EQ(seen, all_rows) << "the ranks' rows must tile the file, K=" << ranks;
    EXPECT_EQ(test_rows, 101);
    EXPECT_EQ(g[0].test_rows_total, 101);
    EXPECT_EQ(g[0].validation_rows_total(), static_cast<std::int64_t>(val.size()));
    EXPECT_NEAR(static_cast<double>(val.size()) / kRows, 0.2, 0.06);

    std::vector<std::vector<std::int64_t>> steps(5);
    for (const RankData& r : g) {
      const auto cols = r.epoch_columns(2);
      ASSERT_GE(cols.size(), 5u);
      EXPECT_LE(static_cast<int>(cols[0].size()), r.max_step_rows());
      const std::set<std::int64_t> held(r.val_columns.begin(), r.val_columns.end());
      for (int s = 0; s < 5; ++s)
        for (std::int64_t c : cols[s]) {
          ASSERT_GE(c, 0);
          ASSERT_LT(c, r.train_x.cols());
          EXPECT_EQ(held.count(c), 0u) << "validation column used for training";
          steps[s].push_back(r.train_row_ids[c]);
        }
    }
    for (auto& s : steps) {
      std::sort(s.begin(), s.end());
      EXPECT_EQ(static_cast<int>(s.size()), kBatch);
    }
    if (ranks == 1) {
      val_k1 = val;
      steps_k1 = steps;
    } else {
      EXPECT_EQ(val, val_k1) << "validation set changed with K=" << ranks;
      EXPECT_EQ(steps, steps_k1) << "step samples changed with K=" << ranks;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Formats, ShardedText, ::testing::Values("csv", "libsvm"));

// Validation rows have x = 1000 + i, training rows x = i % 10: a mean fitted on anything but
// the training split would be far from the training mean. Which rows validate the loader
// decides; a first load with x = row number tells them.
TEST_F(DataTest, ScalingIsFittedOnTheTrainingSplitOnly) {
  const double fraction = 0.25;
  constexpr int kRows = 400;
  DatasetRef d = ref(dir_, "csv");
  d.validation_fraction = fraction;
  d.split_seed = kSeed;
  std::set<std::int64_t> val_rows;  // file row numbers
  {
    TextFile probe;
    probe.add("x,c,label");
    for (int i = 0; i < kRows; ++i) probe.add(pad4(i) + ",5," + std::to_string(i % 2));
    probe.write(dir_ / "train.csv");
    probe.write(dir_ / "test.csv");
    for (const RankData& r : load_group(d, 1))
      for (std::int64_t c : r.val_columns) val_rows.insert(static_cast<std::int64_t>(r.train_x(0, c)));
  }
  ASSERT_EQ(val_rows.size(), 100u) << "a quarter of each class, exactly";
  TextFile train;
  train.add("x,c,label");
  std::vector<double> train_x;
  for (int i = 0; i < kRows; ++i) {
    const bool val = val_rows.count(i) > 0;
    const double x = val ? 1000 + i : (i % 10);
    if (!val) train_x.push_back(x);
    train.add(pad4(static_cast<int>(x)) + ",5," + std::to_string(i % 2));
  }
  train.write(dir_ / "train.csv");
  TextFile test;
  test.add("x,c,label");
  test.add("4.5,5,1");
  test.write(dir_ / "test.csv");
  double mean = 0, var = 0;
  for (double x : train_x) mean += x;
  mean /= static_cast<double>(train_x.size());
  for (double x : train_x) var += (x - mean) * (x - mean);
  const double sd = std::sqrt(var / static_cast<double>(train_x.size()));

  d.scaling = "";  // csv default: standard
  for (int ranks : {1, 3}) {
    const std::vector<RankData> g = load_group(d, ranks);
    for (const RankData& r : g) {
      ASSERT_EQ(r.scale_mean.size(), 2u);
      EXPECT_NEAR(r.scale_mean[0], mean, 1e-9) << "K=" << ranks;
      EXPECT_NEAR(r.scale_std[0], sd, 1e-9);
      EXPECT_DOUBLE_EQ(r.scale_mean[1], 5.0);
      EXPECT_DOUBLE_EQ(r.scale_std[1], 1.0) << "a constant feature is only centred";
      if (r.test_x.cols() > 0) {  // the one test row lands on one rank
        EXPECT_NEAR(r.test_x(0, 0), (4.5 - mean) / sd, 1e-5);
        EXPECT_FLOAT_EQ(r.test_x(1, 0), 0.0f);
      }
      const std::set<std::int64_t> held(r.val_columns.begin(), r.val_columns.end());
      for (Eigen::Index c = 0; c < r.train_x.cols(); ++c) {
        if (held.count(c) == 0) continue;
        EXPECT_GT(r.train_x(0, c), (1000 - mean) / sd - 1e-3);
      }
    }
  }
}

// One real collective path on MPI_COMM_SELF: it must equal the in-process arithmetic.
TEST_F(DataTest, FinishCollectivelyMatchesInProcess) {
  make_libsvm(300, 0).write(dir_ / "train.libsvm");
  make_libsvm(50, 0).write(dir_ / "test.libsvm");
  DatasetRef d = ref(dir_, "libsvm");
  d.scaling = "standard";
  const std::vector<RankData> expected = load_group(d, 1);
  RankData mine;
  ASSERT_TRUE(read_local(d, layout(1, 0), &mine).ok());
  const Status s = finish_collectively(MPI_COMM_SELF, &mine);
  ASSERT_TRUE(s.ok()) << s.message();
  EXPECT_EQ(mine.features, 4);
  EXPECT_EQ(mine.scale_mean, expected[0].scale_mean);
  EXPECT_TRUE(mine.train_x.isApprox(expected[0].train_x));
  EXPECT_EQ(mine.epoch_columns(1), expected[0].epoch_columns(1));
  EXPECT_NEAR(mine.train_x.row(0).mean(), 0.0, 0.2);  // scaled (val rows are in there too)
}

TEST_F(DataTest, IdxLoadsThroughTheSameApi) {
  testing::write_dataset(dir_, testing::make_pattern_data(300, 4, 1),
                         testing::make_pattern_data(40, 4, 2), /*gz=*/false);
  DatasetRef d = ref(dir_, "idx");
  d.scaling = "";  // idx default: none
  const std::vector<RankData> one = load_group(d, 1);
  const std::vector<RankData> two = load_group(d, 2);
  EXPECT_EQ(one[0].classes, 10);
  EXPECT_EQ(one[0].features, 16);
  EXPECT_TRUE(one[0].scale_mean.empty());
  EXPECT_EQ(two[0].train_x.cols() + two[1].train_x.cols(), 300);
  EXPECT_EQ(two[1].train_row_ids.front(), two[0].train_row_ids.back() + 1);
  std::vector<std::int64_t> a, b;
  const auto first_step = [](const RankData& r, std::vector<std::int64_t>* rows) {
    const auto steps = r.epoch_columns(1);
    for (std::int64_t c : steps[0]) rows->push_back(r.train_row_ids[c]);
  };
  first_step(one[0], &a);
  for (const RankData& r : two) first_step(r, &b);
  ASSERT_EQ(a.size(), static_cast<std::size_t>(kBatch));
  std::sort(a.begin(), a.end());
  std::sort(b.begin(), b.end());
  EXPECT_EQ(a, b);
  EXPECT_EQ(one[0].test_rows_total, 40);
}

// ---- bad input: every message names the file and the line.

struct BadCase {
  const char* name;
  const char* format;
  const char* train;  // file content; "\n" separated
  const char* expect;
};

class BadInput : public DataTest, public ::testing::WithParamInterface<BadCase> {};

TEST_P(BadInput, NamesFileLineAndProblem) {
  const BadCase& c = GetParam();
  const std::string ext = c.format;
  const std::string good = ext == "csv" ? "a,label\n1,0\n2,1\n" : "0 1:1\n1 2:1\n";
  std::ofstream(dir_ / ("train." + ext), std::ios::binary) << c.train;
  std::ofstream(dir_ / ("test." + ext), std::ios::binary) << good;
  DatasetRef d = ref(dir_, c.format);
  d.classes = 3;
  d.features = ext == "libsvm" ? 4 : 0;
  // Three ranks: the rank holding the bad line must still know its absolute line number.
  const std::string message = read_error(d, 3);
  EXPECT_TRUE(contains(message, (dir_ / ("train." + ext)).string())) << message;
  EXPECT_TRUE(contains(message, c.expect)) << message;
}

INSTANTIATE_TEST_SUITE_P(
    Cases, BadInput,
    ::testing::Values(
        BadCase{"CsvFieldCount", "csv", "a,label\n1,0\n2,1\n3,1,9\n4,0\n", ":4: expected 2 fields, got 3"},
        BadCase{"CsvTooFew", "csv", "a,label\n1,0\n2,1\n3,1\n4,0\n5,2\n6\n", ":7: expected 2 fields, got 1"},
        BadCase{"CsvNotNumber", "csv", "a,label\n1,0\n2,1\nx7,1\n", ":4: field 1 ('a') is not a finite number: 'x7'"},
        BadCase{"CsvEmptyField", "csv", "a,label\n1,0\n,1\n", ":3: field 1 ('a') is not a finite number"},
        BadCase{"CsvNoLabel", "csv", "a,target\n1,0\n", ":1: no column named 'label' in the header (columns: a, target)"},
        BadCase{"CsvLabelRange", "csv", "a,label\n1,0\n2,1\n3,2\n4,3\n", ":5: label 3 out of range (3 classes declared)"},
        BadCase{"CsvLabelNotInteger", "csv", "a,label\n1,0\n2,0.5\n", ":3: label 0.5 is not a class id"},
        BadCase{"CsvEmpty", "csv", "", "file is empty"},
        BadCase{"CsvHeaderOnly", "csv", "a,label\n", "has a header but no rows"},
        BadCase{"LibsvmIndexZero", "libsvm", "0 1:1\n1 2:1\n0 0:5\n", ":3: index 0 in '0:5' (LIBSVM indices are 1-based)"},
        BadCase{"LibsvmMalformed", "libsvm", "0 1:1\n1 2:1\n1 2:1\n0 3-1\n", ":4: malformed pair '3-1'"},
        BadCase{"LibsvmBadValue", "libsvm", "0 1:1\n1 2:abc\n", ":2: malformed pair '2:abc'"},
        BadCase{"LibsvmIndexAboveDeclared", "libsvm", "0 1:1\n1 5:1\n", ":2: index 5 exceeds the declared 4 features"},
        BadCase{"LibsvmLabel", "libsvm", "0 1:1\nfoo 1:1\n", ":2: label is not a finite number: 'foo'"},
        BadCase{"LibsvmEmpty", "libsvm", "", "file is empty"}),
    [](const ::testing::TestParamInfo<BadCase>& info) { return std::string(info.param.name); });

TEST_F(DataTest, CsvTrainAndTestMustHaveTheSameColumns) {
  std::ofstream(dir_ / "train.csv") << "a,b,label\n1,2,0\n";
  std::ofstream(dir_ / "test.csv") << "a,label\n1,0\n";
  const std::string m = read_error(ref(dir_, "csv"));
  EXPECT_TRUE(contains(m, "feature count mismatch")) << m;
  EXPECT_TRUE(contains(m, "test.csv has 1 feature columns but")) << m;
  EXPECT_TRUE(contains(m, "train.csv has 2")) << m;
}

TEST_F(DataTest, MissingFileAndUnknownFormat) {
  EXPECT_TRUE(contains(read_error(ref(dir_, "csv")), (dir_ / "train.csv").string() + ": cannot open"));
  EXPECT_TRUE(contains(read_error(ref(dir_, "parquet")), "format 'parquet' is not supported"));
}

// ---- the experiment's splits and the regression target.

// Rows of three classes in shares 0.8 / 0.17 / 0.03; f0 is the file row number.
TextFile make_imbalanced_csv(int rows) {
  TextFile f;
  f.add("f0,f1,label");
  for (int i = 0; i < rows; ++i) {
    const int m = i % 100;
    const int label = m < 80 ? 0 : m < 97 ? 1 : 2;
    f.add(std::to_string(i) + "," + std::to_string((i * 7) % 13) + "," + std::to_string(label));
  }
  return f;
}

// What a loaded group holds out, by file row number (feature 0) and by class.
struct Held {
  std::set<std::int64_t> val, test;
  std::map<int, std::int64_t> val_per_class, test_per_class, all_per_class;
};

Held held_rows(const std::vector<RankData>& g) {
  Held h;
  for (const RankData& r : g) {
    for (std::int64_t c : r.val_columns) {
      h.val.insert(static_cast<std::int64_t>(r.train_x(0, c)));
      ++h.val_per_class[static_cast<int>(r.train_y[static_cast<std::size_t>(c)])];
    }
    for (Eigen::Index c = 0; c < r.test_x.cols(); ++c) {
      h.test.insert(static_cast<std::int64_t>(r.test_x(0, c)));
      ++h.test_per_class[static_cast<int>(r.test_y[static_cast<std::size_t>(c)])];
    }
    for (float y : r.train_y) ++h.all_per_class[static_cast<int>(y)];
    for (float y : r.test_y) ++h.all_per_class[static_cast<int>(y)];
  }
  return h;
}

std::vector<RankData> load_with_trial_seed(const DatasetRef& d, int ranks, std::uint64_t seed) {
  std::vector<RankData> group(static_cast<std::size_t>(ranks));
  for (int r = 0; r < ranks; ++r) {
    LayoutOptions l = layout(ranks, r);
    l.seed = seed;
    const Status s = read_local(d, l, &group[r]);
    EXPECT_TRUE(s.ok()) << s.message();
  }
  const Status s = finish_in_process(&group);
  EXPECT_TRUE(s.ok()) << s.message();
  return group;
}

TEST_F(DataTest, ValidationRowsAreTheExperimentsWhateverTheTrialSeedAndRankCount) {
  constexpr int kRows = 1003;
  make_imbalanced_csv(kRows).write(dir_ / "train.csv");
  make_imbalanced_csv(50).write(dir_ / "test.csv");
  DatasetRef d = ref(dir_, "csv");
  d.split_seed = 7;
  const std::set<std::int64_t> first = held_rows(load_with_trial_seed(d, 1, 11)).val;
  ASSERT_FALSE(first.empty());
  for (std::uint64_t trial_seed : {11u, 12345u})
    for (int ranks : {1, 2, 3}) {
      const std::vector<RankData> g = load_with_trial_seed(d, ranks, trial_seed);
      EXPECT_EQ(held_rows(g).val, first) << "trial seed " << trial_seed << ", K=" << ranks;
    }
  // The shuffles stay the trial's own.
  EXPECT_NE(load_with_trial_seed(d, 1, 11)[0].epoch_columns(1),
            load_with_trial_seed(d, 1, 12345)[0].epoch_columns(1));
  d.split_seed = 8;
  EXPECT_NE(held_rows(load_with_trial_seed(d, 1, 11)).val, first)
      << "another experiment seed draws other rows";
}

TEST_F(DataTest, ValidationIsStratifiedExactlyUpToRounding) {
  constexpr int kRows = 1003;  // classes of 803, 170 and 30 rows
  make_imbalanced_csv(kRows).write(dir_ / "train.csv");
  make_imbalanced_csv(50).write(dir_ / "test.csv");
  DatasetRef d = ref(dir_, "csv");
  d.validation_fraction = 0.15;
  for (std::uint64_t split_seed : {1u, 2u, 3u}) {
    d.split_seed = split_seed;
    for (int ranks : {1, 2, 3}) {
      const std::vector<RankData> g = load_group(d, ranks);
      Held h = held_rows(g);
      std::map<int, std::int64_t> in_file;
      for (int i = 0; i < kRows; ++i) ++in_file[i % 100 < 80 ? 0 : i % 100 < 97 ? 1 : 2];
      for (const auto& [label, n] : in_file)
        EXPECT_EQ(h.val_per_class[label], std::llround(0.15 * static_cast<double>(n)))
            << "class " << label << ", seed " << split_seed << ", K=" << ranks;
      EXPECT_EQ(g[0].validation_rows_total(), static_cast<std::int64_t>(h.val.size()));
    }
  }
}

TEST_F(DataTest, TestFractionSplitsOneFileDeterministicallyAndStratified) {
  constexpr int kRows = 1003;
  make_imbalanced_csv(kRows).write(dir_ / "train.csv");  // no test.csv at all
  DatasetRef d = ref(dir_, "csv");
  d.test_fraction = 0.25;
  d.validation_fraction = 0.2;
  d.split_seed = 5;
  std::map<int, std::int64_t> in_file;
  for (int i = 0; i < kRows; ++i) ++in_file[i % 100 < 80 ? 0 : i % 100 < 97 ? 1 : 2];
  Held first;
  for (std::uint64_t trial_seed : {1u, 99u})
    for (int ranks : {1, 2, 3}) {
      const std::vector<RankData> g = load_with_trial_seed(d, ranks, trial_seed);
      const Held h = held_rows(g);
      std::int64_t test_total = 0, train_cols = 0;
      for (const auto& [label, n] : in_file) {
        const std::int64_t tests = std::llround(0.25 * static_cast<double>(n));
        EXPECT_EQ(h.test_per_class.at(label), tests) << "class " << label << ", K=" << ranks;
        EXPECT_EQ(h.val_per_class.at(label), std::llround(0.2 * static_cast<double>(n - tests)))
            << "validation is drawn from the rows the test split left";
        test_total += tests;
      }
      for (const RankData& r : g) {
        train_cols += r.train_x.cols();
        EXPECT_EQ(r.train_x.cols(), static_cast<Eigen::Index>(r.train_row_ids.size()));
        EXPECT_EQ(r.test_x.cols(), static_cast<Eigen::Index>(r.test_y.size()));
        EXPECT_EQ(r.test_rows_total, test_total);
        EXPECT_EQ(r.file_rows_total, kRows);
      }
      EXPECT_EQ(train_cols + test_total, kRows) << "every row is in exactly one split";
      for (std::int64_t row : h.test) EXPECT_EQ(h.val.count(row), 0u) << "row " << row;
      if (first.test.empty()) {
        first = h;
      } else {
        EXPECT_EQ(h.test, first.test) << "trial seed " << trial_seed << ", K=" << ranks;
        EXPECT_EQ(h.val, first.val);
      }
    }
}

TEST_F(DataTest, ATestFileAndATestFractionAreRefused) {
  make_imbalanced_csv(100).write(dir_ / "train.csv");
  make_imbalanced_csv(20).write(dir_ / "other.csv");
  DatasetRef d = ref(dir_, "csv");
  d.test = "other.csv";
  d.test_fraction = 0.2;
  const std::string m = read_error(d);
  EXPECT_TRUE(contains(m, "names a test file ('other.csv') and a test_fraction")) << m;

  testing::write_dataset(dir_, testing::make_pattern_data(50, 4, 1),
                         testing::make_pattern_data(10, 4, 2), /*gz=*/false);
  DatasetRef idx = ref(dir_, "idx");
  idx.test_fraction = 0.2;
  EXPECT_TRUE(contains(read_error(idx), "idx datasets come with their test files")) << read_error(idx);
  DatasetRef out_of_range = ref(dir_, "csv");
  out_of_range.test_fraction = 1.0;
  EXPECT_TRUE(contains(read_error(out_of_range), "test_fraction must be in [0, 1)"));
}

// y = 1000 + 50 (x mod 17) on training rows; validation and test rows have y = -500, so a mean
// or std that saw them would be far off.
TEST_F(DataTest, TheTargetIsStandardisedOnTheTrainingSplitForAnyRankCount) {
  constexpr int kRows = 600;
  DatasetRef d = ref(dir_, "csv");
  d.task = "regression";
  d.label = "y";
  d.validation_fraction = 0.2;
  d.test_fraction = 0.1;
  d.split_seed = 3;
  std::set<std::int64_t> held;
  {
    TextFile probe;
    probe.add("x,y");
    for (int i = 0; i < kRows; ++i) probe.add(pad4(i) + ",0000");
    probe.write(dir_ / "train.csv");
    const Held h = held_rows(load_group(d, 1));
    held = h.val;
    held.insert(h.test.begin(), h.test.end());
  }
  ASSERT_EQ(held.size(), 60u + 108u) << "a tenth for test, a fifth of the rest for validation";
  TextFile train;
  train.add("x,y");
  double sum = 0, sum_sq = 0, n = 0;
  for (int i = 0; i < kRows; ++i) {
    const bool out = held.count(i) > 0;
    const double y = out ? -500 : 1000 + 50 * (i % 17);
    if (!out) {
      sum += y;
      sum_sq += y * y;
      ++n;
    }
    train.add(pad4(i) + "," + std::to_string(static_cast<int>(y)));
  }
  train.write(dir_ / "train.csv");
  const double mean = sum / n;
  const double sd = std::sqrt(sum_sq / n - mean * mean);
  double mean_k1 = 0, sd_k1 = 0;
  for (int ranks : {1, 2, 3}) {
    const std::vector<RankData> g = load_group(d, ranks);
    for (const RankData& r : g) {
      EXPECT_NEAR(r.target_mean, mean, 1e-9 * mean) << "K=" << ranks;
      EXPECT_NEAR(r.target_std, sd, 1e-9 * sd) << "K=" << ranks;
      if (ranks == 1) {
        mean_k1 = r.target_mean;
        sd_k1 = r.target_std;
      }
      EXPECT_NEAR(r.target_mean, mean_k1, 1e-12 * mean_k1) << "the same for any rank count";
      EXPECT_NEAR(r.target_std, sd_k1, 1e-12 * sd_k1);
      const std::set<std::int64_t> val(r.val_columns.begin(), r.val_columns.end());
      for (std::size_t c = 0; c < r.train_y.size(); ++c) {
        const double x = r.train_x(0, static_cast<Eigen::Index>(c));
        const double y = val.count(static_cast<std::int64_t>(c)) ? -500 : 1000 + 50 * (static_cast<int>(x) % 17);
        EXPECT_NEAR(r.train_y[c], (y - mean) / sd, 1e-4) << "row " << x;
      }
      for (float y : r.test_y) EXPECT_NEAR(y, (-500 - mean) / sd, 1e-4);
    }
  }
}

}  // namespace
}  // namespace trellis::worker
