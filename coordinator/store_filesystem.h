#pragma once
// Which journal mode a store may use, decided by the filesystem its file lives on.
//
// SQLite's WAL keeps its index in a memory-mapped -shm file that every connection shares, so
// it needs one kernel to see all of them: on a network or cluster filesystem (NFS, Lustre,
// GPFS, BeeGFS, CephFS, SMB) a reader on another host -- `trellis trials` on a login node while
// the coordinator writes -- can read a torn index, and a crash can lose commits that were
// acknowledged. A cluster user's home directory, where `./trellis.db` lands by default, is
// often such a filesystem. There the store uses a rollback journal instead (journal_mode =
// DELETE): with the store's single writer it relies only on the POSIX locks SQLite takes on the
// database file itself, readers keep working (they wait out a commit through the busy
// timeout), and each commit costs a few more fsyncs, once per group-commit batch.
// Known local filesystems (ext4, xfs, btrfs, tmpfs, zfs, overlayfs) run WAL; FUSE (sshfs,
// GlusterFS...) and filesystems whose magic is not known here are treated as network ones,
// since a rollback journal is correct everywhere and only WAL needs the guarantee.

#include <string>

#include "common/status.h"

namespace trellis::coordinator {

struct StoreFilesystem {
  std::string name;      // "ext4", "nfs", ... or "0x1234abcd" when the magic is not known
  bool network = false;  // WAL is unsafe on it
};

// The filesystem of the directory that holds (or will hold) `path`, from statfs(2).
[[nodiscard]] Status DetectStoreFilesystem(const std::string& path, StoreFilesystem* out);

// The same from a name as `DetectStoreFilesystem` reports it ("nfs", "lustre", "ext4"...),
// so tests can open a store as if it were on NFS.
StoreFilesystem StoreFilesystemNamed(const std::string& name);

// "wal" or "delete".
const char* JournalModeFor(const StoreFilesystem& fs);

}  // namespace trellis::coordinator
