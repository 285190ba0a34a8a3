#include "worker/data/idx_reader.h"

#include <sys/stat.h>
#include <zlib.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>
#include <new>

namespace trellis::worker {
namespace {

constexpr std::uint32_t kImagesMagic = 0x00000803;  // unsigned bytes, 3 dimensions
constexpr std::uint32_t kLabelsMagic = 0x00000801;  // unsigned bytes, 1 dimension
constexpr int kImagesHeaderBytes = 16;
constexpr int kLabelsHeaderBytes = 8;
// Bounds that no real IDX image set comes near; they stop a corrupt header from asking for an
// absurd allocation before the reader discovers the file is short.
constexpr std::int64_t kMaxSide = 1 << 14;
constexpr std::int64_t kMaxFeatures = 1 << 24;
constexpr std::int64_t kChunkBytes = 1 << 20;

bool file_exists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

// Finds `name` or `name.gz` in `dir`, preferring the raw file: it can be seeked.
Status resolve(const std::string& dir, const std::string& name, std::string* path) {
  std::string base = dir;
  if (!base.empty() && base.back() != '/') base += '/';
  for (const std::string& candidate : {base + name, base + name + ".gz"}) {
    if (file_exists(candidate)) {
      *path = candidate;
      return Status::Ok();
    }
  }
  return Status::Error("missing file: tried " + base + name + " and " + base + name + ".gz");
}

bool is_gzip_name(const std::string& path) {
  return path.size() > 3 && path.compare(path.size() - 3, 3, ".gz") == 0;
}

// A forward-only byte stream over a raw or gzipped file.
class ByteSource {
 public:
  ByteSource() = default;
  ByteSource(const ByteSource&) = delete;
  ByteSource& operator=(const ByteSource&) = delete;
  ~ByteSource() {
    if (raw_ != nullptr) std::fclose(raw_);
    if (gz_ != nullptr) gzclose(gz_);
  }

  Status open(const std::string& path) {
    path_ = path;
    if (is_gzip_name(path)) {
      gz_ = gzopen(path.c_str(), "rb");
      if (gz_ == nullptr) return Status::Error(path + ": cannot open: " + std::strerror(errno));
      gzbuffer(gz_, 1 << 17);
    } else {
      raw_ = std::fopen(path.c_str(), "rb");
      if (raw_ == nullptr) return Status::Error(path + ": cannot open: " + std::strerror(errno));
    }
    return Status::Ok();
  }

  // Reads up to n bytes; *got < n means the file ended.
  Status read(void* dst, std::int64_t n, std::int64_t* got) {
    *got = 0;
    auto* p = static_cast<unsigned char*>(dst);
    while (*got < n) {
      const std::int64_t want = std::min<std::int64_t>(n - *got, kChunkBytes);
      std::int64_t r;
      if (gz_ != nullptr) {
        const int rc = gzread(gz_, p + *got, static_cast<unsigned>(want));
        if (rc < 0) {
          int errnum = 0;
          const char* msg = gzerror(gz_, &errnum);
          return Status::Error(path_ + ": corrupt gzip stream: " + (msg ? msg : "unknown error"));
        }
        r = rc;
      } else {
        r = static_cast<std::int64_t>(std::fread(p + *got, 1, static_cast<std::size_t>(want), raw_));
        if (r < want && std::ferror(raw_))
          return Status::Error(path_ + ": read error: " + std::strerror(errno));
      }
      if (r == 0) break;
      *got += r;
    }
    return Status::Ok();
  }

  // Moves forward by n bytes from the current position; *got < n means the file ended.
  Status skip(std::int64_t n, std::int64_t* got) {
    if (raw_ != nullptr) {
      // Seeking past the end succeeds silently, so compare with the file size first.
      const long here = std::ftell(raw_);
      struct stat st;
      if (here < 0 || ::fstat(fileno(raw_), &st) != 0)
        return Status::Error(path_ + ": cannot stat: " + std::strerror(errno));
      *got = std::min<std::int64_t>(n, static_cast<std::int64_t>(st.st_size) - here);
      if (std::fseek(raw_, static_cast<long>(here + *got), SEEK_SET) != 0)
        return Status::Error(path_ + ": cannot seek: " + std::strerror(errno));
      return Status::Ok();
    }
    // gzip cannot seek; decompress and discard.
    std::vector<unsigned char> scratch(static_cast<std::size_t>(std::min(n, kChunkBytes)));
    *got = 0;
    while (*got < n) {
      std::int64_t part = 0;
      const std::int64_t want = std::min<std::int64_t>(n - *got, kChunkBytes);
      Status s = read(scratch.data(), want, &part);
      if (!s.ok()) return s;
      *got += part;
      if (part < want) break;
    }
    return Status::Ok();
  }

  const std::string& path() const { return path_; }

 private:
  std::string path_;
  std::FILE* raw_ = nullptr;
  gzFile gz_ = nullptr;
};

std::uint32_t big_endian_u32(const unsigned char* p) {
  return (std::uint32_t{p[0]} << 24) | (std::uint32_t{p[1]} << 16) | (std::uint32_t{p[2]} << 8) |
         std::uint32_t{p[3]};
}

std::string hex(std::uint32_t v) {
  char buf[16];
  std::snprintf(buf, sizeof(buf), "0x%08x", v);
  return buf;
}

struct ImagesHeader {
  std::int64_t rows = 0;
  int height = 0;
  int width = 0;
};

// Reads a whole header into `h` and checks its magic number.
template <std::size_t N>
Status read_header(ByteSource* src, std::uint32_t expected_magic, const char* what,
                   std::array<unsigned char, N>* h) {
  std::int64_t got = 0;
  if (Status s = src->read(h->data(), h->size(), &got); !s.ok()) return s;
  if (got < static_cast<std::int64_t>(h->size()))
    return Status::Error(src->path() + ": truncated header (" + std::to_string(got) + " of " +
                         std::to_string(h->size()) + " bytes)");
  const std::uint32_t magic = big_endian_u32(h->data());
  if (magic != expected_magic)
    return Status::Error(src->path() + ": bad magic " + hex(magic) + ", expected " +
                         hex(expected_magic) + " (" + what + ")");
  return Status::Ok();
}

Status read_images_header(ByteSource* src, ImagesHeader* out) {
  std::array<unsigned char, kImagesHeaderBytes> h{};
  if (Status s = read_header(src, kImagesMagic, "IDX images of unsigned bytes", &h); !s.ok())
    return s;
  out->rows = big_endian_u32(&h[4]);
  const std::int64_t height = big_endian_u32(&h[8]), width = big_endian_u32(&h[12]);
  if (height < 1 || width < 1 || height > kMaxSide || width > kMaxSide ||
      height * width > kMaxFeatures)
    return Status::Error(src->path() + ": implausible image dims " + std::to_string(height) +
                         "x" + std::to_string(width));
  out->height = static_cast<int>(height);
  out->width = static_cast<int>(width);
  return Status::Ok();
}

Status read_labels_header(ByteSource* src, std::int64_t* rows) {
  std::array<unsigned char, kLabelsHeaderBytes> h{};
  if (Status s = read_header(src, kLabelsMagic, "IDX labels of unsigned bytes", &h); !s.ok())
    return s;
  *rows = big_endian_u32(&h[4]);
  return Status::Ok();
}

const char* split_prefix(IdxSplit split) { return split == IdxSplit::kTrain ? "train" : "t10k"; }

// Skips to row range.begin of a file whose rows are `row_bytes` long and the header is read.
Status skip_to(ByteSource* src, RowRange range, std::int64_t row_bytes) {
  std::int64_t got = 0;
  Status s = src->skip(range.begin * row_bytes, &got);
  if (!s.ok()) return s;
  if (got < range.begin * row_bytes)
    return Status::Error(src->path() + ": truncated at row " + std::to_string(got / row_bytes));
  return Status::Ok();
}

Status read_images(const IdxInfo& info, RowRange range, Eigen::MatrixXf* images) {
  ByteSource src;
  Status s = src.open(info.images_path);
  if (!s.ok()) return s;
  ImagesHeader h;
  s = read_images_header(&src, &h);
  if (!s.ok()) return s;
  if (h.rows != info.rows || h.height != info.height || h.width != info.width)
    return Status::Error(info.images_path + ": header changed while reading (" +
                         std::to_string(h.rows) + " rows of " + std::to_string(h.height) + "x" +
                         std::to_string(h.width) + ")");
  const std::int64_t features = info.features();
  s = skip_to(&src, range, features);
  if (!s.ok()) return s;
  images->resize(features, range.size());
  // Read in blocks of whole rows so the byte buffer stays small whatever the range.
  const std::int64_t block_rows = std::max<std::int64_t>(1, kChunkBytes / features);
  std::vector<unsigned char> bytes(static_cast<std::size_t>(block_rows * features));
  constexpr float kScale = 1.0f / 255.0f;
  for (std::int64_t done = 0; done < range.size();) {
    const std::int64_t n = std::min(block_rows, range.size() - done);
    std::int64_t got = 0;
    s = src.read(bytes.data(), n * features, &got);
    if (!s.ok()) return s;
    if (got < n * features)
      return Status::Error(info.images_path + ": truncated at row " +
                           std::to_string(range.begin + done + got / features));
    float* dst = images->data() + done * features;
    for (std::int64_t i = 0; i < n * features; ++i) dst[i] = static_cast<float>(bytes[i]) * kScale;
    done += n;
  }
  return Status::Ok();
}

Status read_labels(const IdxInfo& info, RowRange range, std::vector<std::int32_t>* labels) {
  ByteSource src;
  Status s = src.open(info.labels_path);
  if (!s.ok()) return s;
  std::int64_t rows = 0;
  s = read_labels_header(&src, &rows);
  if (!s.ok()) return s;
  if (rows != info.rows)
    return Status::Error(info.labels_path + ": header changed while reading (" +
                         std::to_string(rows) + " rows)");
  s = skip_to(&src, range, 1);
  if (!s.ok()) return s;
  std::vector<unsigned char> bytes(static_cast<std::size_t>(range.size()));
  std::int64_t got = 0;
  s = src.read(bytes.data(), range.size(), &got);
  if (!s.ok()) return s;
  if (got < range.size())
    return Status::Error(info.labels_path + ": truncated at row " +
                         std::to_string(range.begin + got));
  labels->resize(bytes.size());
  for (std::size_t i = 0; i < bytes.size(); ++i) {
    if (bytes[i] >= kIdxClasses)
      return Status::Error(info.labels_path + ": label " + std::to_string(bytes[i]) + " at row " +
                           std::to_string(range.begin + static_cast<std::int64_t>(i)) +
                           " out of range (" + std::to_string(kIdxClasses) + " classes)");
    (*labels)[i] = bytes[i];
  }
  return Status::Ok();
}

}  // namespace

Status read_idx_info(const std::string& dir, IdxSplit split, IdxInfo* out) {
  IdxInfo info;
  const std::string prefix = split_prefix(split);
  Status s = resolve(dir, prefix + "-images-idx3-ubyte", &info.images_path);
  if (!s.ok()) return s;
  s = resolve(dir, prefix + "-labels-idx1-ubyte", &info.labels_path);
  if (!s.ok()) return s;

  ByteSource images;
  s = images.open(info.images_path);
  if (!s.ok()) return s;
  ImagesHeader h;
  s = read_images_header(&images, &h);
  if (!s.ok()) return s;

  ByteSource labels;
  s = labels.open(info.labels_path);
  if (!s.ok()) return s;
  std::int64_t label_rows = 0;
  s = read_labels_header(&labels, &label_rows);
  if (!s.ok()) return s;

  if (label_rows != h.rows)
    return Status::Error(info.images_path + " holds " + std::to_string(h.rows) + " images but " +
                         info.labels_path + " holds " + std::to_string(label_rows) + " labels");
  info.rows = h.rows;
  info.height = h.height;
  info.width = h.width;
  *out = std::move(info);
  return Status::Ok();
}

Status read_idx_rows(const IdxInfo& info, RowRange range, IdxRows* out) {
  if (range.begin < 0 || range.end < range.begin || range.end > info.rows)
    return Status::Error(info.images_path + ": rows [" + std::to_string(range.begin) + ", " +
                         std::to_string(range.end) + ") outside the file's " +
                         std::to_string(info.rows) + " rows");
  try {
    Status s = read_images(info, range, &out->images);
    if (!s.ok()) return s;
    return read_labels(info, range, &out->labels);
  } catch (const std::bad_alloc&) {
    return Status::Error(info.images_path + ": out of memory reading " +
                         std::to_string(range.size()) + " rows");
  }
}

Status read_idx_images(const std::string& path, Eigen::MatrixXf* images) {
  if (!file_exists(path)) return Status::Error(path + ": no such file");
  IdxInfo info;
  info.images_path = path;
  {
    ByteSource src;
    Status s = src.open(path);
    if (!s.ok()) return s;
    ImagesHeader h;
    s = read_images_header(&src, &h);
    if (!s.ok()) return s;
    info.rows = h.rows;
    info.height = h.height;
    info.width = h.width;
  }
  try {
    return read_images(info, RowRange{0, info.rows}, images);
  } catch (const std::bad_alloc&) {
    return Status::Error(path + ": out of memory reading " + std::to_string(info.rows) + " rows");
  }
}

}  // namespace trellis::worker
