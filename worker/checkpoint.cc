#include "worker/checkpoint.h"

#include <zlib.h>

#include <cstring>
#include <fstream>
#include <iterator>

#include "common/atomic_file.h"

namespace trellis::worker {
namespace {

constexpr char kMagic[8] = {'T', 'R', 'L', 'S', 'C', 'K', 'P', 'T'};
// 2 added `compute` after the buffers; version 1 files (no such field) are still read.
constexpr std::uint32_t kVersion = 2;
constexpr std::uint32_t kOldestVersion = 1;
constexpr std::size_t kHeaderBytes = sizeof kMagic + 4 + 4;  // magic, version, crc
// Refuses absurd sizes from a corrupt length field before allocating.
constexpr std::uint64_t kMaxFloats = std::uint64_t{1} << 34;

class Writer {
 public:
  template <class T> void put(T v) {
    static_assert(std::is_trivially_copyable_v<T>);
    const auto* p = reinterpret_cast<const char*>(&v);
    bytes_.insert(bytes_.end(), p, p + sizeof v);
  }
  void put(const std::string& s) {
    put(static_cast<std::uint32_t>(s.size()));
    bytes_.insert(bytes_.end(), s.begin(), s.end());
  }
  void put(const std::vector<float>& v) {
    put(static_cast<std::uint64_t>(v.size()));
    const auto* p = reinterpret_cast<const char*>(v.data());
    bytes_.insert(bytes_.end(), p, p + v.size() * sizeof(float));
  }
  std::vector<char>& bytes() { return bytes_; }

 private:
  std::vector<char> bytes_;
};

class Reader {
 public:
  Reader(const char* data, std::size_t size) : data_(data), size_(size) {}
  template <class T> bool get(T* v) {
    if (size_ - at_ < sizeof(T)) return false;
    std::memcpy(v, data_ + at_, sizeof(T));
    at_ += sizeof(T);
    return true;
  }
  bool get(std::string* s) {
    std::uint32_t n = 0;
    if (!get(&n) || size_ - at_ < n) return false;
    s->assign(data_ + at_, n);
    at_ += n;
    return true;
  }
  bool get(std::vector<float>* v) {
    std::uint64_t n = 0;
    if (!get(&n) || n > kMaxFloats || (size_ - at_) / sizeof(float) < n) return false;
    v->resize(n);
    if (n > 0) std::memcpy(v->data(), data_ + at_, n * sizeof(float));  // data() may be null
    at_ += n * sizeof(float);
    return true;
  }
  bool done() const { return at_ == size_; }

 private:
  const char* data_;
  std::size_t size_;
  std::size_t at_ = 0;
};

std::uint32_t crc_of(const char* data, std::size_t size) {
  uLong crc = crc32(0L, Z_NULL, 0);
  while (size > 0) {
    const uInt chunk = static_cast<uInt>(std::min<std::size_t>(size, 1u << 30));
    crc = crc32(crc, reinterpret_cast<const Bytef*>(data), chunk);
    data += chunk;
    size -= chunk;
  }
  return static_cast<std::uint32_t>(crc);
}

}  // namespace

const std::vector<float>* Checkpoint::find(const std::string& name) const {
  for (const auto& [n, v] : buffers)
    if (n == name) return &v;
  return nullptr;
}

std::string encode_checkpoint(const Checkpoint& c) {
  Writer body;
  body.put(c.trial);
  body.put(c.epoch);
  body.put(c.step);
  body.put(c.partial_loss);
  body.put(c.seed);
  body.put(c.optimizer_steps);
  body.put(c.fingerprint);
  body.put(static_cast<std::uint32_t>(c.metrics.size()));
  for (const auto& [name, value] : c.metrics) {
    body.put(name);
    body.put(value);
  }
  body.put(static_cast<std::uint32_t>(c.buffers.size()));
  for (const auto& [name, values] : c.buffers) {
    body.put(name);
    body.put(values);
  }
  body.put(c.compute);
  Writer file;
  for (char ch : kMagic) file.put(ch);
  file.put(kVersion);
  file.put(crc_of(body.bytes().data(), body.bytes().size()));
  auto& out = file.bytes();
  out.insert(out.end(), body.bytes().begin(), body.bytes().end());
  return std::string(out.begin(), out.end());
}

Status write_checkpoint(const std::string& path, const Checkpoint& c) {
  return write_file_atomically(path, encode_checkpoint(c), "checkpoint " + path);
}

Status read_checkpoint(const std::string& path, Checkpoint* out) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status::Error("checkpoint " + path + ": cannot open");
  const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  return decode_checkpoint(bytes, "checkpoint " + path, out);
}

Status decode_checkpoint(std::string_view bytes, const std::string& what, Checkpoint* out) {
  if (bytes.size() < kHeaderBytes || std::memcmp(bytes.data(), kMagic, sizeof kMagic) != 0)
    return Status::Error(what + ": not a Trellis checkpoint");
  std::uint32_t version = 0, crc = 0;
  std::memcpy(&version, bytes.data() + sizeof kMagic, 4);
  std::memcpy(&crc, bytes.data() + sizeof kMagic + 4, 4);
  if (version < kOldestVersion || version > kVersion)
    return Status::Error(what + ": format version " + std::to_string(version) +
                         ", this build reads " + std::to_string(kOldestVersion) + " to " +
                         std::to_string(kVersion));
  const char* body = bytes.data() + kHeaderBytes;
  const std::size_t size = bytes.size() - kHeaderBytes;
  if (crc_of(body, size) != crc)
    return Status::Error(what + ": checksum mismatch (truncated or corrupt)");
  Reader r(body, size);
  Checkpoint c;
  std::uint32_t count = 0;
  bool ok = r.get(&c.trial) && r.get(&c.epoch) && r.get(&c.step) && r.get(&c.partial_loss) &&
            r.get(&c.seed) && r.get(&c.optimizer_steps) &&
            r.get(&c.fingerprint) && r.get(&count);
  for (std::uint32_t i = 0; ok && i < count; ++i) {
    std::pair<std::string, double> metric;
    ok = r.get(&metric.first) && r.get(&metric.second);
    if (ok) c.metrics.push_back(std::move(metric));
  }
  ok = ok && r.get(&count);
  for (std::uint32_t i = 0; ok && i < count; ++i) {
    std::pair<std::string, std::vector<float>> buffer;
    ok = r.get(&buffer.first) && r.get(&buffer.second);
    if (ok) c.buffers.push_back(std::move(buffer));
  }
  if (version >= 2) ok = ok && r.get(&c.compute);
  if (!ok || !r.done()) return Status::Error(what + ": malformed body");
  *out = std::move(c);
  return Status::Ok();
}

}  // namespace trellis::worker
