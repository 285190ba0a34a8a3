#include "worker/checkpoint.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "tests/worker/idx_fixture.h"

namespace trellis::worker {
namespace {

Checkpoint sample() {
  Checkpoint c;
  c.trial = 17;
  c.epoch = 3;
  c.step = 41;
  c.partial_loss = 12.375;
  c.seed = 0xfedcba9876543210ULL;
  c.optimizer_steps = 1234;
  c.fingerprint = "mlp 784-256-10 adam";
  c.metrics = {{"train_loss", 0.125}, {"val_acc", 0.875}};
  c.buffers = {{"params", {1.5f, -2.25f, 3e-8f}}, {"adam.m", {}}, {"adam.v", {0.125f}}};
  c.compute = "onednn 2.6.3 avx2";
  return c;
}

class CheckpointTest : public ::testing::Test {
 protected:
  void SetUp() override { dir_ = testing::fresh_dir("checkpoint"); }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string path(const std::string& name) const { return (dir_ / name).string(); }
  std::filesystem::path dir_;
};

TEST_F(CheckpointTest, RoundTripsEveryFieldBitForBit) {
  const std::string p = path("sub/dir/t.ckpt");  // directories are created
  ASSERT_TRUE(write_checkpoint(p, sample()).ok());
  Checkpoint back;
  const Status s = read_checkpoint(p, &back);
  ASSERT_TRUE(s.ok()) << s.message();
  const Checkpoint want = sample();
  EXPECT_EQ(back.trial, want.trial);
  EXPECT_EQ(back.epoch, want.epoch);
  EXPECT_EQ(back.step, want.step);
  EXPECT_EQ(back.partial_loss, want.partial_loss);
  EXPECT_EQ(back.seed, want.seed);
  EXPECT_EQ(back.optimizer_steps, want.optimizer_steps);
  EXPECT_EQ(back.fingerprint, want.fingerprint);
  EXPECT_EQ(back.buffers, want.buffers);
  EXPECT_EQ(back.metrics, want.metrics);
  EXPECT_EQ(back.compute, want.compute);
  ASSERT_NE(back.find("adam.v"), nullptr);
  EXPECT_EQ(back.find("nope"), nullptr);
  EXPECT_FALSE(std::filesystem::exists(p + ".tmp"));
}

TEST_F(CheckpointTest, ANewCheckpointReplacesTheOld) {
  const std::string p = path("t.ckpt");
  Checkpoint c = sample();
  ASSERT_TRUE(write_checkpoint(p, c).ok());
  c.epoch = 4;
  ASSERT_TRUE(write_checkpoint(p, c).ok());
  Checkpoint back;
  ASSERT_TRUE(read_checkpoint(p, &back).ok());
  EXPECT_EQ(back.epoch, 4);
}

std::vector<char> bytes_of(const std::string& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}
void write_bytes(const std::string& p, const std::vector<char>& b) {
  std::ofstream(p, std::ios::binary).write(b.data(), static_cast<std::streamsize>(b.size()));
}

TEST_F(CheckpointTest, EveryFlippedByteOrTruncationIsDetected) {
  const std::string p = path("t.ckpt");
  ASSERT_TRUE(write_checkpoint(p, sample()).ok());
  const std::vector<char> good = bytes_of(p);
  for (std::size_t i = 0; i < good.size(); ++i) {
    std::vector<char> bad = good;
    bad[i] ^= 0x5a;
    write_bytes(p, bad);
    Checkpoint back;
    const Status s = read_checkpoint(p, &back);
    EXPECT_FALSE(s.ok()) << "flipped byte " << i;
    EXPECT_NE(s.message().find(p), std::string::npos) << s.message();
  }
  for (std::size_t n : {std::size_t{0}, std::size_t{5}, good.size() / 2, good.size() - 1}) {
    write_bytes(p, std::vector<char>(good.begin(), good.begin() + static_cast<long>(n)));
    Checkpoint back;
    EXPECT_FALSE(read_checkpoint(p, &back).ok()) << "truncated to " << n;
  }
}

TEST_F(CheckpointTest, MissingFileNamesThePath) {
  Checkpoint back;
  const Status s = read_checkpoint(path("absent.ckpt"), &back);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("absent.ckpt"), std::string::npos);
}

}  // namespace
}  // namespace trellis::worker
