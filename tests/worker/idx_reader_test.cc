#include "worker/data/idx_reader.h"

#include <gtest/gtest.h>

#include <filesystem>

#include "tests/worker/idx_fixture.h"

namespace trellis::worker {
namespace {

namespace fs = std::filesystem;
using testing::IdxData;

bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

IdxData small_data() {
  IdxData d;
  d.height = 3;
  d.width = 4;
  for (int r = 0; r < 30; ++r) {
    d.labels.push_back(static_cast<std::uint8_t>(r % 10));
    for (int i = 0; i < 12; ++i) d.pixels.push_back(static_cast<std::uint8_t>((r * 12 + i) % 256));
  }
  return d;
}

class IdxReaderTest : public ::testing::TestWithParam<bool> {
 protected:
  void SetUp() override {
    gz_ = GetParam();
    dir_ = testing::fresh_dir(gz_ ? "idx-gz" : "idx-raw");
    data_ = small_data();
    testing::write_dataset(dir_, data_, data_, gz_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string file(const std::string& name) const {
    return (dir_ / (name + (gz_ ? ".gz" : ""))).string();
  }

  bool gz_ = false;
  fs::path dir_;
  IdxData data_;
};

TEST_P(IdxReaderTest, ReadsHeader) {
  IdxInfo info;
  ASSERT_TRUE(read_idx_info(dir_.string(), IdxSplit::kTrain, &info).ok());
  EXPECT_EQ(info.rows, 30);
  EXPECT_EQ(info.height, 3);
  EXPECT_EQ(info.width, 4);
  EXPECT_EQ(info.features(), 12);
  EXPECT_EQ(info.images_path, file("train-images-idx3-ubyte"));
  EXPECT_EQ(info.labels_path, file("train-labels-idx1-ubyte"));
}

TEST_P(IdxReaderTest, MiddleRangeEqualsSameRowsOfFullRead) {
  IdxInfo info;
  ASSERT_TRUE(read_idx_info(dir_.string(), IdxSplit::kTest, &info).ok());
  IdxRows all, middle;
  ASSERT_TRUE(read_idx_rows(info, RowRange{0, 30}, &all).ok());
  ASSERT_TRUE(read_idx_rows(info, RowRange{7, 19}, &middle).ok());
  ASSERT_EQ(middle.images.cols(), 12);
  ASSERT_EQ(middle.images.rows(), 12);
  EXPECT_EQ(middle.images, all.images.middleCols(7, 12));
  EXPECT_EQ(middle.labels, std::vector<std::int32_t>(all.labels.begin() + 7, all.labels.begin() + 19));
  // Pixels scaled to [0, 1] from the bytes written.
  EXPECT_FLOAT_EQ(all.images(5, 2), data_.pixels[2 * 12 + 5] / 255.0f);
  EXPECT_EQ(all.labels[13], 3);
  EXPECT_EQ(all.images.maxCoeff(), 1.0f);  // byte 255 is present
}

TEST_P(IdxReaderTest, EmptyRangeAndRangeOutsideFile) {
  IdxInfo info;
  ASSERT_TRUE(read_idx_info(dir_.string(), IdxSplit::kTrain, &info).ok());
  IdxRows rows;
  ASSERT_TRUE(read_idx_rows(info, RowRange{30, 30}, &rows).ok());
  EXPECT_EQ(rows.images.cols(), 0);
  const Status s = read_idx_rows(info, RowRange{20, 31}, &rows);
  ASSERT_FALSE(s.ok());
  EXPECT_TRUE(contains(s.message(), "outside")) << s.message();
}

TEST_P(IdxReaderTest, MissingFileNamesWhatWasTried) {
  fs::remove(file("t10k-labels-idx1-ubyte"));
  IdxInfo info;
  const Status s = read_idx_info(dir_.string(), IdxSplit::kTest, &info);
  ASSERT_FALSE(s.ok());
  const std::string base = (dir_ / "t10k-labels-idx1-ubyte").string();
  EXPECT_TRUE(contains(s.message(), base + " ")) << s.message();
  EXPECT_TRUE(contains(s.message(), base + ".gz")) << s.message();
}

TEST_P(IdxReaderTest, BadMagic) {
  auto bytes = testing::labels_bytes(data_);
  bytes[3] = 0x03;
  testing::write_file(file("train-labels-idx1-ubyte"), bytes, gz_);
  IdxInfo info;
  const Status s = read_idx_info(dir_.string(), IdxSplit::kTrain, &info);
  ASSERT_FALSE(s.ok());
  EXPECT_TRUE(contains(s.message(), file("train-labels-idx1-ubyte"))) << s.message();
  EXPECT_TRUE(contains(s.message(), "bad magic")) << s.message();
}

TEST_P(IdxReaderTest, TruncatedImagesNameTheRow) {
  auto bytes = testing::images_bytes(data_);
  bytes.resize(16 + 12 * 22 + 5);  // row 22 is cut short
  testing::write_file(file("train-images-idx3-ubyte"), bytes, gz_);
  IdxInfo info;
  ASSERT_TRUE(read_idx_info(dir_.string(), IdxSplit::kTrain, &info).ok());  // header is intact
  IdxRows rows;
  ASSERT_TRUE(read_idx_rows(info, RowRange{5, 22}, &rows).ok());  // rows before the cut read
  Status s = read_idx_rows(info, RowRange{10, 30}, &rows);
  ASSERT_FALSE(s.ok());
  EXPECT_TRUE(contains(s.message(), file("train-images-idx3-ubyte"))) << s.message();
  EXPECT_TRUE(contains(s.message(), "truncated at row 22")) << s.message();
  // A range that starts past the end fails while skipping.
  s = read_idx_rows(info, RowRange{25, 30}, &rows);
  ASSERT_FALSE(s.ok());
  EXPECT_TRUE(contains(s.message(), "truncated at row 22")) << s.message();
}

TEST_P(IdxReaderTest, TruncatedHeader) {
  auto bytes = testing::images_bytes(data_);
  bytes.resize(9);
  testing::write_file(file("train-images-idx3-ubyte"), bytes, gz_);
  IdxInfo info;
  const Status s = read_idx_info(dir_.string(), IdxSplit::kTrain, &info);
  ASSERT_FALSE(s.ok());
  EXPECT_TRUE(contains(s.message(), file("train-images-idx3-ubyte"))) << s.message();
  EXPECT_TRUE(contains(s.message(), "truncated")) << s.message();
}

TEST_P(IdxReaderTest, ImageAndLabelCountsDiffer) {
  IdxData fewer = data_;
  fewer.labels.resize(29);
  testing::write_file(file("train-labels-idx1-ubyte"), testing::labels_bytes(fewer), gz_);
  IdxInfo info;
  const Status s = read_idx_info(dir_.string(), IdxSplit::kTrain, &info);
  ASSERT_FALSE(s.ok());
  EXPECT_TRUE(contains(s.message(), file("train-images-idx3-ubyte"))) << s.message();
  EXPECT_TRUE(contains(s.message(), file("train-labels-idx1-ubyte"))) << s.message();
  EXPECT_TRUE(contains(s.message(), "30")) << s.message();
  EXPECT_TRUE(contains(s.message(), "29")) << s.message();
}

TEST_P(IdxReaderTest, LabelOutOfRange) {
  IdxData bad = data_;
  bad.labels[17] = 12;
  testing::write_file(file("t10k-labels-idx1-ubyte"), testing::labels_bytes(bad), gz_);
  IdxInfo info;
  ASSERT_TRUE(read_idx_info(dir_.string(), IdxSplit::kTest, &info).ok());
  IdxRows rows;
  ASSERT_TRUE(read_idx_rows(info, RowRange{0, 17}, &rows).ok());  // row 17 not read
  const Status s = read_idx_rows(info, RowRange{10, 20}, &rows);
  ASSERT_FALSE(s.ok());
  EXPECT_TRUE(contains(s.message(), file("t10k-labels-idx1-ubyte"))) << s.message();
  EXPECT_TRUE(contains(s.message(), "label 12 at row 17")) << s.message();
}

INSTANTIATE_TEST_SUITE_P(RawAndGzip, IdxReaderTest, ::testing::Values(false, true),
                         [](const auto& info) { return info.param ? "Gzip" : "Raw"; });

TEST(IdxReader, PrefersRawFileWhenBothExist) {
  const fs::path dir = testing::fresh_dir("idx-both");
  IdxData d = small_data();
  testing::write_dataset(dir, d, d, /*gz=*/true);
  testing::write_dataset(dir, d, d, /*gz=*/false);
  IdxInfo info;
  ASSERT_TRUE(read_idx_info(dir.string(), IdxSplit::kTrain, &info).ok());
  EXPECT_EQ(info.images_path, (dir / "train-images-idx3-ubyte").string());
  fs::remove_all(dir);
}

TEST(IdxReader, CorruptGzipStreamIsAnErrorNotACrash) {
  const fs::path dir = testing::fresh_dir("idx-corrupt");
  IdxData d = small_data();
  for (int r = 0; r < 200; ++r) {  // enough rows that the damage lands inside deflate data
    d.labels.push_back(static_cast<std::uint8_t>(r % 10));
    for (int i = 0; i < 12; ++i) d.pixels.push_back(static_cast<std::uint8_t>((r * 7 + i * 13) % 256));
  }
  testing::write_dataset(dir, d, d, /*gz=*/true);
  const fs::path images = dir / "train-images-idx3-ubyte.gz";
  IdxInfo info;
  ASSERT_TRUE(read_idx_info(dir.string(), IdxSplit::kTrain, &info).ok());
  // Damage the compressed body and the trailer (CRC), keeping the gzip header.
  std::vector<std::uint8_t> bytes(fs::file_size(images));
  {
    std::FILE* f = std::fopen(images.c_str(), "rb");
    ASSERT_EQ(std::fread(bytes.data(), 1, bytes.size(), f), bytes.size());
    std::fclose(f);
  }
  for (std::size_t i = bytes.size() / 2; i < bytes.size(); ++i) bytes[i] ^= 0x5a;
  testing::write_file(images, bytes, /*gz=*/false);
  IdxRows rows;
  const Status s = read_idx_rows(info, RowRange{0, info.rows}, &rows);
  ASSERT_FALSE(s.ok());
  EXPECT_TRUE(contains(s.message(), images.string())) << s.message();
  fs::remove_all(dir);
}

}  // namespace
}  // namespace trellis::worker
