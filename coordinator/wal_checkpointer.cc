#include "coordinator/wal_checkpointer.h"

#include <chrono>

namespace trellis::coordinator {
namespace {

// A checkpoint runs once this many frames (pages of 4 KiB) were committed since the last one.
constexpr int kCheckpointFrames = 512;
// Past this size (256 MiB) the WAL should be rewound: the writer copies the last frames.
constexpr int kRewindFrames = 65536;
// "Nearly all of it": at most what the writer may have to copy itself (8 MiB).
constexpr int kCatchUpFrames = 2048;
// With commits but fewer than kCheckpointFrames new frames, checkpoint anyway after this long.
constexpr auto kIdleCheckpoint = std::chrono::milliseconds(500);

}  // namespace

Status WalCheckpointer::Start(const std::string& path, sqlite3* writer,
                              std::unique_ptr<WalCheckpointer>* out) {
  sqlite3* own = nullptr;
  if (sqlite3_open_v2(path.c_str(), &own, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX,
                      nullptr) != SQLITE_OK) {
    std::string message = own ? sqlite3_errmsg(own) : "out of memory";
    sqlite3_close(own);
    return Status::Error("checkpointer connection to " + path + ": " + message);
  }
  // A connection learns that the file is in WAL mode when it first reads it; until then a
  // checkpoint on it does nothing at all.
  if (char* err = nullptr;
      sqlite3_exec(own, "PRAGMA schema_version", nullptr, nullptr, &err) != SQLITE_OK) {
    std::string message = err ? err : sqlite3_errmsg(own);
    sqlite3_free(err);
    sqlite3_close(own);
    return Status::Error("checkpointer connection to " + path + ": " + message);
  }
  out->reset(new WalCheckpointer(writer, own));
  return Status::Ok();
}

WalCheckpointer::WalCheckpointer(sqlite3* writer, sqlite3* own) : writer_(writer), own_(own) {
  sqlite3_wal_hook(writer_, &WalCheckpointer::on_commit, this);
  thread_ = std::thread([this] { loop(); });
}

WalCheckpointer::~WalCheckpointer() {
  sqlite3_wal_hook(writer_, nullptr, nullptr);
  {
    std::lock_guard lock(mutex_);
    stop_ = true;
  }
  wake_.notify_one();
  thread_.join();
  sqlite3_close_v2(own_);
}

int WalCheckpointer::on_commit(void* self, sqlite3*, const char*, int frames) {
  auto* me = static_cast<WalCheckpointer*>(self);
  bool wake = false;
  {
    std::lock_guard lock(me->mutex_);
    // Fewer frames than before: the writer rewound the WAL, and this commit wrote `frames`.
    me->pending_ += frames >= me->wal_frames_ ? frames - me->wal_frames_ : frames;
    me->wal_frames_ = frames;
    wake = me->pending_ >= kCheckpointFrames && !me->writer_finishes_;
  }
  if (wake) me->wake_.notify_one();
  return SQLITE_OK;
}

void WalCheckpointer::after_commit() {
  if (!writer_finishes_.load(std::memory_order_relaxed)) return;
  int log = 0, copied = 0;
  const int rc = sqlite3_wal_checkpoint_v2(writer_, nullptr, SQLITE_CHECKPOINT_PASSIVE, &log,
                                           &copied);
  if (rc == SQLITE_BUSY) return;  // this thread is still at it: next commit
  writer_finishes_ = false;
  wake_.notify_one();
}

void WalCheckpointer::loop() {
  std::unique_lock lock(mutex_);
  for (;;) {
    const bool woken = wake_.wait_for(lock, kIdleCheckpoint, [this] {
      return stop_ || (pending_ >= kCheckpointFrames && !writer_finishes_);
    });
    if (stop_) return;
    if (!woken) {
      // Quiet for a while: checkpoint what came, and finish what the writer was to finish.
      if (pending_ == 0 && !writer_finishes_) continue;
      writer_finishes_ = false;
    }
    pending_ = 0;
    lock.unlock();
    int log = 0, copied = 0;
    const int rc =
        sqlite3_wal_checkpoint_v2(own_, nullptr, SQLITE_CHECKPOINT_PASSIVE, &log, &copied);
    lock.lock();
    // Behind by little in a long WAL: the writer copies the rest between two transactions.
    if (rc == SQLITE_OK && log >= kRewindFrames && log - copied < kCatchUpFrames)
      writer_finishes_ = true;
  }
}

}  // namespace trellis::coordinator
