#pragma once
// WalCheckpointer: copies a store's write-ahead log back into its database file on its own
// thread and SQLite connection, so the writer's commits do not wait for that copy.
//
// By default SQLite checkpoints inside the commit that grows the WAL past 1,000 pages: the
// committing thread copies 4 MB and syncs twice, several milliseconds, every few hundred
// milliseconds under load -- and everything that commit acknowledges waits for it. Here the
// writer's commits only note the WAL's size (sqlite3_wal_hook, which also turns that default
// off) and this thread runs PASSIVE checkpoints, which never block the writer.
//
// SQLite rewinds the WAL only once all of it has been copied, which a checkpoint racing a
// busy writer never achieves; so once the WAL has grown past kRewindFrames (256 MiB) and this
// thread has copied nearly all of it, it leaves the rest to the writer: the next after_commit()
// copies it and syncs (a stall of tens of milliseconds on a slow disk, once per 256 MiB of
// writing; a bigger WAL would make it rarer but the file larger) and the writer's next
// transaction starts the WAL afresh. Idle, this thread finishes the WAL by itself.

#include <sqlite3.h>

#include <atomic>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "common/status.h"

namespace trellis::coordinator {

class WalCheckpointer {
 public:
  // Opens its own connection to `path` (a WAL database) and hooks the commits of `writer`,
  // which must outlive it.
  [[nodiscard]] static Status Start(const std::string& path, sqlite3* writer,
                                    std::unique_ptr<WalCheckpointer>* out);
  ~WalCheckpointer();  // stops the thread and closes its connection
  WalCheckpointer(const WalCheckpointer&) = delete;
  WalCheckpointer& operator=(const WalCheckpointer&) = delete;

  // The writer, after a successful commit: copies the rest of a long WAL when asked to.
  void after_commit();

 private:
  WalCheckpointer(sqlite3* writer, sqlite3* own);
  static int on_commit(void* self, sqlite3* db, const char* schema, int frames);
  void loop();

  sqlite3* writer_;
  sqlite3* own_;
  std::mutex mutex_;
  std::condition_variable wake_;
  int wal_frames_ = 0;  // frames in the WAL after the last commit
  int pending_ = 0;     // frames committed since this thread's last checkpoint
  bool stop_ = false;
  std::atomic<bool> writer_finishes_{false};
  std::thread thread_;
};

}  // namespace trellis::coordinator
