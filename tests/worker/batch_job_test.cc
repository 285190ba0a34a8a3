// Slurm's duration formats, as scontrol prints TimeLimit and RunTime.

#include "worker/batch_job.h"

#include <gtest/gtest.h>

namespace trellis::worker {
namespace {

TEST(SlurmDuration, EveryFormatScontrolPrints) {
  std::int64_t s = 0;
  ASSERT_TRUE(parse_slurm_duration("00:01:00", &s));
  EXPECT_EQ(s, 60);
  ASSERT_TRUE(parse_slurm_duration("1-02:03:04", &s));
  EXPECT_EQ(s, 86400 + 2 * 3600 + 3 * 60 + 4);
  ASSERT_TRUE(parse_slurm_duration("05:07", &s));
  EXPECT_EQ(s, 5 * 60 + 7);
  ASSERT_TRUE(parse_slurm_duration("30", &s));  // minutes, as sbatch --time=30
  EXPECT_EQ(s, 30 * 60);
  ASSERT_TRUE(parse_slurm_duration("UNLIMITED", &s));
  EXPECT_EQ(s, -1);
}

TEST(SlurmDuration, AnythingElseIsRefused) {
  std::int64_t s = 0;
  for (const char* bad : {"", "NOT_SET", "1-", "a:b", "1:2:3:4", "-5", "12:-1"})
    EXPECT_FALSE(parse_slurm_duration(bad, &s)) << bad;
}

}  // namespace
}  // namespace trellis::worker
