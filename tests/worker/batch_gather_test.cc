// Gathering a batch's columns, and the shard's huge pages (worker/data/batch_gather.h).

#include "worker/data/batch_gather.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

namespace trellis::worker {
namespace {

TEST(BatchGather, CopiesTheAskedColumnsInTheirOrderRepeatsIncluded) {
  Eigen::MatrixXf x(37, 500);  // an odd height: columns do not start on cache lines
  std::mt19937 rng(5);
  std::uniform_real_distribution<float> u(-1, 1);
  for (Eigen::Index i = 0; i < x.size(); ++i) x.data()[i] = u(rng);
  const std::vector<std::int64_t> columns = {499, 0, 17, 17, 250, 3, 498, 1};
  Eigen::MatrixXf batch = Eigen::MatrixXf::Constant(37, 10, -7.0f);
  gather_columns(x, columns, &batch);
  for (std::size_t j = 0; j < columns.size(); ++j)
    EXPECT_EQ(std::memcmp(batch.col(static_cast<Eigen::Index>(j)).data(),
                          x.col(columns[j]).data(), 37 * sizeof(float)),
              0)
        << "column " << j;
  EXPECT_EQ(batch(0, 8), -7.0f) << "columns past the batch's are left alone";
  EXPECT_EQ(batch(36, 9), -7.0f);
}

// AnonHugePages of the mapping holding `p`, in bytes; -1 when no mapping holds it.
std::int64_t huge_bytes_around(const void* p) {
  const auto at = reinterpret_cast<std::uintptr_t>(p);
  std::ifstream smaps("/proc/self/smaps");
  std::string line;
  bool inside = false;
  while (std::getline(smaps, line)) {
    std::uintptr_t begin = 0, end = 0;
    char dash = 0;
    std::istringstream head(line);
    if (head >> std::hex >> begin >> dash >> end && dash == '-' &&
        line.find(':') > line.find(' ')) {
      inside = begin <= at && at < end;
      continue;
    }
    std::int64_t kb = 0;
    if (inside && std::sscanf(line.c_str(), "AnonHugePages: %ld kB", &kb) == 1) return kb * 1024;
  }
  return -1;
}

bool kernel_has_thp() {
  std::ifstream f("/sys/kernel/mm/transparent_hugepage/enabled");
  std::string setting((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  return !setting.empty() && setting.find("[never]") == std::string::npos;
}

TEST(BatchGather, AShardIsMovedOntoHugePagesWithItsValuesKept) {
  if (!kernel_has_thp()) GTEST_SKIP() << "this kernel has transparent huge pages off (never)";
  Eigen::MatrixXf x(784, 20000);  // 63 MB, as a rank's Fashion-MNIST shard
  for (Eigen::Index i = 0; i < x.size(); ++i) x.data()[i] = static_cast<float>(i % 9973) * 0.5f;
  EXPECT_EQ(huge_bytes_around(x.data()), 0) << "Debian's madvise setting backs nothing unasked";
  const std::size_t moved = back_with_huge_pages(&x);
  // All but the partial 2 MB pages at the buffer's ends.
  EXPECT_GE(moved, static_cast<std::size_t>(x.size()) * sizeof(float) - (std::size_t{4} << 20));
  EXPECT_GE(huge_bytes_around(x.data() + x.size() / 2), static_cast<std::int64_t>(moved));
  for (Eigen::Index i = 0; i < x.size(); ++i)
    ASSERT_EQ(x.data()[i], static_cast<float>(i % 9973) * 0.5f) << "at " << i;
}

TEST(BatchGather, ABufferSmallerThanAHugePageIsLeftAsItIs) {
  Eigen::MatrixXf x = Eigen::MatrixXf::Ones(784, 100);  // 314 KB
  EXPECT_EQ(back_with_huge_pages(&x), 0u);
  EXPECT_EQ(x.sum(), 784.0f * 100);
}

}  // namespace
}  // namespace trellis::worker
