#pragma once
// LineRangeReader: the lines of a raw text file that START inside a byte range, read without
// touching the rest of the file. CSV and LIBSVM files are sharded this way: the byte ranges of
// consecutive shards tile the file, so every line belongs to exactly one shard whatever the
// rank count, and a line's start offset is a row id that does not depend on the rank count.
//
// A reader seeks to its range; unless the range starts the data or follows a newline, it skips
// the tail of the line the previous range owns; it reads the range and then only the rest of
// its last line. So a rank reads at most one byte before its range plus one line after it:
// bytes_read() proves it. Lines end at '\n'; a '\r' before it is dropped; the file's last line
// need not end with a newline. Header-only: it is small and shared by the two text formats.

#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <string_view>

#include "common/shard_plan.h"
#include "common/status.h"

namespace trellis::worker {

// Bytes [begin, end) of a file.
struct ByteRange {
  std::int64_t begin = 0;
  std::int64_t end = 0;  // exclusive
};

// Part `index` of `parts` of the data region [data_begin, file_size), as even as possible.
inline ByteRange split_bytes(std::int64_t data_begin, std::int64_t file_size, int parts,
                             int index) {
  const RowRange r = split_rows(file_size - data_begin, parts, index);
  return ByteRange{data_begin + r.begin, data_begin + r.end};
}

struct TextLine {
  std::int64_t offset = 0;  // of its first byte in the file: the row id
  std::string_view text;    // valid until the next call to next()
};

class LineRangeReader {
 public:
  LineRangeReader() = default;
  LineRangeReader(const LineRangeReader&) = delete;
  LineRangeReader& operator=(const LineRangeReader&) = delete;
  ~LineRangeReader() {
    if (file_ != nullptr) std::fclose(file_);
  }

  [[nodiscard]] Status open(const std::string& path) {
    path_ = path;
    file_ = std::fopen(path.c_str(), "rb");
    if (file_ == nullptr) return Status::Error(path + ": cannot open: " + std::strerror(errno));
    struct stat st;
    if (::fstat(fileno(file_), &st) != 0)
      return Status::Error(path + ": cannot stat: " + std::strerror(errno));
    if (!S_ISREG(st.st_mode)) return Status::Error(path + ": not a regular file");
    size_ = static_cast<std::int64_t>(st.st_size);
    return Status::Ok();
  }

  const std::string& path() const { return path_; }
  std::int64_t file_size() const { return size_; }
  std::int64_t bytes_read() const { return bytes_read_; }

  // Reads the file's first line (CSV's header); *data_begin is where the next line starts.
  [[nodiscard]] Status read_first_line(std::string* line, std::int64_t* data_begin) {
    // A one-byte range: the reader then reads exactly the first line, not a block.
    Status s = seek(ByteRange{0, 1}, 0);
    if (!s.ok()) return s;
    TextLine first;
    if (!next(&first, &s)) return s.ok() ? Status::Error(path_ + ": file is empty") : s;
    line->assign(first.text);
    *data_begin = base_ + static_cast<std::int64_t>(cursor_);
    return Status::Ok();
  }

  // Positions the reader at the first line starting in `range`; `data_begin` is where the
  // file's lines begin (after any header), a line start by definition.
  [[nodiscard]] Status seek(ByteRange range, std::int64_t data_begin) {
    end_ = range.end;
    buf_.clear();
    cursor_ = scan_from_ = 0;
    eof_ = false;
    std::int64_t at = range.begin;
    if (range.begin > data_begin && range.begin < size_) {
      // The byte before the range says whether the range starts a line.
      if (std::fseek(file_, static_cast<long>(range.begin - 1), SEEK_SET) != 0)
        return Status::Error(path_ + ": cannot seek: " + std::strerror(errno));
      int c = std::getc(file_);
      ++bytes_read_;
      // Else the line under way belongs to the range before: skip to its end.
      while (c != '\n' && c != EOF) {
        c = std::getc(file_);
        if (c != EOF) ++bytes_read_;
        ++at;
      }
      if (std::ferror(file_)) return Status::Error(path_ + ": read error: " + std::strerror(errno));
      if (c == EOF) at = size_;
    } else if (std::fseek(file_, static_cast<long>(std::min(range.begin, size_)), SEEK_SET) != 0) {
      return Status::Error(path_ + ": cannot seek: " + std::strerror(errno));
    }
    base_ = at;
    return Status::Ok();
  }

  // The next line starting before the range's end; false at the end of the range or on
  // error (*status says which).
  bool next(TextLine* line, Status* status) {
    *status = Status::Ok();
    for (;;) {
      const std::int64_t start = base_ + static_cast<std::int64_t>(cursor_);
      if (start >= end_ || start >= size_) return false;
      const std::size_t nl = buf_.find('\n', scan_from_);
      if (nl != std::string::npos || (eof_ && cursor_ < buf_.size())) {
        const std::size_t stop = nl != std::string::npos ? nl : buf_.size();
        std::size_t len = stop - cursor_;
        if (len > 0 && buf_[cursor_ + len - 1] == '\r') --len;
        line->offset = start;
        line->text = std::string_view(buf_.data() + cursor_, len);
        cursor_ = scan_from_ = std::min(stop + 1, buf_.size());
        return true;
      }
      if (eof_) return false;
      // Drop consumed lines so the buffer holds at most a block plus one line.
      buf_.erase(0, cursor_);
      base_ += static_cast<std::int64_t>(cursor_);
      cursor_ = 0;
      scan_from_ = buf_.size();
      if (!fill(status)) return false;
    }
  }

  // The 1-based line number of the line starting at `offset`. It counts the newlines before
  // it from the top of the file, so it is for error messages only; it is not in bytes_read().
  std::int64_t line_number(std::int64_t offset) const {
    std::FILE* f = std::fopen(path_.c_str(), "rb");
    if (f == nullptr) return 0;
    std::int64_t line = 1, at = 0;
    char block[1 << 16];
    while (at < offset) {
      const std::size_t want = static_cast<std::size_t>(
          std::min<std::int64_t>(sizeof(block), offset - at));
      const std::size_t got = std::fread(block, 1, want, f);
      if (got == 0) break;
      line += std::count(block, block + got, '\n');
      at += static_cast<std::int64_t>(got);
    }
    std::fclose(f);
    return line;
  }

  // "path:line" for the line starting at `offset`: the prefix of every parse error.
  std::string where(std::int64_t offset) const {
    return path_ + ":" + std::to_string(line_number(offset));
  }

 private:
  static constexpr std::int64_t kBlockBytes = 1 << 16;

  // Appends a block of the range, or past the range's end the rest of the current line byte
  // by byte (stdio buffers it), so reading never runs more than one line past the range.
  bool fill(Status* status) {
    const std::int64_t read_at = base_ + static_cast<std::int64_t>(buf_.size());
    if (read_at < end_) {
      const std::size_t want = static_cast<std::size_t>(std::min(kBlockBytes, end_ - read_at));
      const std::size_t old = buf_.size();
      buf_.resize(old + want);
      const std::size_t got = std::fread(buf_.data() + old, 1, want, file_);
      buf_.resize(old + got);
      bytes_read_ += static_cast<std::int64_t>(got);
      if (got < want) eof_ = true;
    } else {
      int c;
      while ((c = std::getc(file_)) != EOF) {
        ++bytes_read_;
        buf_.push_back(static_cast<char>(c));
        if (c == '\n') break;
      }
      if (c == EOF) eof_ = true;
    }
    if (std::ferror(file_)) {
      *status = Status::Error(path_ + ": read error: " + std::strerror(errno));
      return false;
    }
    return true;
  }

  std::string path_;
  std::FILE* file_ = nullptr;
  std::int64_t size_ = 0;
  std::int64_t end_ = 0;
  std::int64_t base_ = 0;  // file offset of buf_[0]
  std::string buf_;
  std::size_t cursor_ = 0;     // start of the next line in buf_
  std::size_t scan_from_ = 0;  // where to look for its newline
  bool eof_ = false;
  std::int64_t bytes_read_ = 0;
};

}  // namespace trellis::worker
