// The store's durability as its connection actually runs it: fsync at every commit, WAL only on
// a local filesystem, a rollback journal on a network one (store_filesystem.h), and readers
// that keep working while the single writer writes, in both modes.

#include <gtest/gtest.h>

#include <filesystem>

#include "coordinator/experiment_store.h"
#include "coordinator/store_filesystem.h"
#include "tests/coordinator/temp_store.h"

namespace trellis::coordinator {
namespace {

using testing::TempDir;

std::unique_ptr<ExperimentStore> open_as(const std::string& path, const std::string& filesystem,
                                         bool read_only = false) {
  StoreOptions options;
  options.read_only = read_only;
  options.filesystem = filesystem;
  std::unique_ptr<ExperimentStore> store;
  Status s = ExperimentStore::Open(path, options, &store);
  EXPECT_TRUE(s.ok()) << s.message();
  return store;
}

std::int64_t add_experiment(ExperimentStore& store) {
  ExperimentRecord e;
  e.name = "durable";
  e.spec_yaml = "name: durable\n";
  e.spec_hash = "h";
  e.metric = "val_acc";
  Status s = store.create_experiment(&e);
  EXPECT_TRUE(s.ok()) << s.message();
  return e.id;
}

TEST(StoreFilesystemTest, NamesAreClassified) {
  for (const char* local : {"ext4", "xfs", "btrfs", "tmpfs", "zfs", "overlayfs"}) {
    EXPECT_FALSE(StoreFilesystemNamed(local).network) << local;
    EXPECT_STREQ(JournalModeFor(StoreFilesystemNamed(local)), "wal") << local;
  }
  for (const char* network : {"nfs", "lustre", "gpfs", "beegfs", "cephfs", "cifs", "fuse"}) {
    EXPECT_TRUE(StoreFilesystemNamed(network).network) << network;
    EXPECT_STREQ(JournalModeFor(StoreFilesystemNamed(network)), "delete") << network;
  }
  EXPECT_TRUE(StoreFilesystemNamed("0x1234").network) << "unknown filesystems are not trusted";
}

TEST(StoreFilesystemTest, DetectsTheFilesystemOfAFileNotYetCreated) {
  if (!std::filesystem::is_directory("/dev/shm")) GTEST_SKIP() << "no /dev/shm here";
  StoreFilesystem fs;
  ASSERT_TRUE(DetectStoreFilesystem("/dev/shm/not-created-yet.db", &fs).ok());
  EXPECT_EQ(fs.name, "tmpfs");
  EXPECT_FALSE(fs.network);
  EXPECT_FALSE(DetectStoreFilesystem("/no/such/dir/store.db", &fs).ok());
}

TEST(StoreDurabilityTest, DetectedFilesystemDecidesTheJournal) {
  TempDir dir;
  const std::string path = dir.file("store.db");
  StoreFilesystem detected;
  ASSERT_TRUE(DetectStoreFilesystem(path, &detected).ok());
  std::unique_ptr<ExperimentStore> store;
  ASSERT_TRUE(ExperimentStore::Open(path, false, &store).ok());
  Durability d;
  ASSERT_TRUE(store->durability(&d).ok());
  EXPECT_EQ(d.filesystem.name, detected.name);
  EXPECT_EQ(d.journal_mode, JournalModeFor(detected));
  EXPECT_EQ(d.synchronous, 2) << "FULL: an acknowledged commit is on disk";
}

TEST(StoreDurabilityTest, LocalFilesystemRunsWalWithFullSync) {
  TempDir dir;
  const std::string path = dir.file("store.db");
  auto store = open_as(path, "ext4");
  ASSERT_TRUE(store);
  Durability d;
  ASSERT_TRUE(store->durability(&d).ok());
  EXPECT_EQ(d.journal_mode, "wal");
  EXPECT_EQ(d.synchronous, 2);
  add_experiment(*store);
  EXPECT_TRUE(std::filesystem::exists(path + "-wal"));
}

TEST(StoreDurabilityTest, NetworkFilesystemRunsARollbackJournalWithFullSync) {
  TempDir dir;
  const std::string path = dir.file("store.db");
  // A store made on a local disk and moved to NFS is converted, not refused.
  { ASSERT_TRUE(open_as(path, "ext4")); }
  auto store = open_as(path, "nfs");
  ASSERT_TRUE(store);
  Durability d;
  ASSERT_TRUE(store->durability(&d).ok());
  EXPECT_EQ(d.journal_mode, "delete");
  EXPECT_EQ(d.synchronous, 2);
  EXPECT_EQ(d.filesystem.name, "nfs");
  EXPECT_TRUE(d.filesystem.network);
  const std::int64_t experiment = add_experiment(*store);
  EXPECT_FALSE(std::filesystem::exists(path + "-wal")) << "no WAL, no -shm on NFS";
  EXPECT_FALSE(std::filesystem::exists(path + "-shm"));

  // A reader (`trellis trials` on the login node) reads while the writer holds a batch open,
  // and sees only what was committed.
  ASSERT_TRUE(store->begin_batch().ok());
  TrialRecord t;
  t.experiment_id = experiment;
  ASSERT_TRUE(store->add_trial(&t).ok());
  auto reader = open_as(path, "nfs", /*read_only=*/true);
  ASSERT_TRUE(reader);
  std::vector<TrialRecord> seen;
  ASSERT_TRUE(reader->list_trials(experiment, &seen).ok());
  EXPECT_TRUE(seen.empty()) << "the batch is not committed yet";
  ASSERT_TRUE(store->commit_batch().ok());
  ASSERT_TRUE(reader->list_trials(experiment, &seen).ok());
  EXPECT_EQ(seen.size(), 1u);
}

}  // namespace
}  // namespace trellis::coordinator
