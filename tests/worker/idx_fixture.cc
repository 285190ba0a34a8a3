#include "tests/worker/idx_fixture.h"

#include <unistd.h>
#include <zlib.h>

#include <fstream>
#include <random>
#include <stdexcept>

namespace trellis::worker::testing {
namespace {

void put_u32(std::vector<std::uint8_t>* out, std::uint32_t v) {
  for (int shift : {24, 16, 8, 0}) out->push_back(static_cast<std::uint8_t>(v >> shift));
}

}  // namespace

IdxData make_pattern_data(std::int64_t rows, int side, std::uint64_t seed) {
  IdxData d;
  d.height = d.width = side;
  const int features = side * side;
  std::mt19937_64 proto_rng(12345);  // the patterns are the same for every split
  std::vector<std::vector<bool>> patterns(10, std::vector<bool>(features));
  for (auto& p : patterns)
    for (int i = 0; i < features; ++i) p[i] = (proto_rng() & 1) != 0;
  std::mt19937_64 rng(seed);
  for (std::int64_t r = 0; r < rows; ++r) {
    const int label = static_cast<int>(rng() % 10);
    d.labels.push_back(static_cast<std::uint8_t>(label));
    for (int i = 0; i < features; ++i) {
      bool on = patterns[label][i];
      if (rng() % 5 == 0) on = !on;  // 20% of the pixels flipped
      const int noise = static_cast<int>(rng() % 64);
      d.pixels.push_back(static_cast<std::uint8_t>(on ? 255 - noise : noise));
    }
  }
  return d;
}

std::vector<std::uint8_t> images_bytes(const IdxData& d) {
  std::vector<std::uint8_t> out;
  put_u32(&out, 0x00000803);
  put_u32(&out, static_cast<std::uint32_t>(d.rows()));
  put_u32(&out, static_cast<std::uint32_t>(d.height));
  put_u32(&out, static_cast<std::uint32_t>(d.width));
  out.insert(out.end(), d.pixels.begin(), d.pixels.end());
  return out;
}

std::vector<std::uint8_t> labels_bytes(const IdxData& d) {
  std::vector<std::uint8_t> out;
  put_u32(&out, 0x00000801);
  put_u32(&out, static_cast<std::uint32_t>(d.rows()));
  out.insert(out.end(), d.labels.begin(), d.labels.end());
  return out;
}

void write_file(const std::filesystem::path& path, const std::vector<std::uint8_t>& bytes,
                bool gz) {
  if (gz) {
    gzFile f = gzopen(path.c_str(), "wb");
    if (f == nullptr) throw std::runtime_error("cannot write " + path.string());
    if (!bytes.empty()) gzwrite(f, bytes.data(), static_cast<unsigned>(bytes.size()));
    gzclose(f);
    return;
  }
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  if (!out) throw std::runtime_error("cannot write " + path.string());
}

void write_dataset(const std::filesystem::path& dir, const IdxData& train, const IdxData& test,
                   bool gz) {
  const std::string suffix = gz ? ".gz" : "";
  write_file(dir / ("train-images-idx3-ubyte" + suffix), images_bytes(train), gz);
  write_file(dir / ("train-labels-idx1-ubyte" + suffix), labels_bytes(train), gz);
  write_file(dir / ("t10k-images-idx3-ubyte" + suffix), images_bytes(test), gz);
  write_file(dir / ("t10k-labels-idx1-ubyte" + suffix), labels_bytes(test), gz);
}

std::filesystem::path fresh_dir(const std::string& tag) {
  const auto dir = std::filesystem::temp_directory_path() /
                   ("trellis-test-" + tag + "-" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

}  // namespace trellis::worker::testing
